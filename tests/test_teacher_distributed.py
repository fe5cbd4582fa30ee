"""Two CPU processes (gloo) train the row-wise sharded teacher; it must match unsharded training.

The workers run the real training loop (``train_teacher``) under a process group of two, as
``torchrun --nproc_per_node 2`` would. The reference is plain PyTorch on one process (no
TorchRec sharding, no fused kernels) over the same global batches with the same schedule.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from teacher_util import TINY_CFG, reference_train, tiny_inputs, tiny_split

from recdistill.teacher.checkpoint import epoch_dir, load_teacher
from recdistill.teacher.train import train_teacher

CFG = dataclasses.replace(
    TINY_CFG,
    sparse_optimizer="sgd",
    lr_sparse=0.5,
    sharding="row_wise",
    ensemble_size=2,
    epochs=2,
    patience=5,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world_size),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    result = train_teacher(CFG, tiny_inputs(), tiny_split(256, 0), tiny_split(100, 1), out, progress=False)
    Path(out, f"result_{rank}.json").write_text(
        json.dumps(
            {
                "best_epoch": result.best_epoch,
                "sharding": result.sharding,
                "world_size": result.world_size,
                "metrics": result.metrics,
            }
        )
    )


@pytest.mark.slow
def test_two_process_row_wise_sharding_matches_unsharded(tmp_path: Path) -> None:
    out = tmp_path / "teacher"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    r0, r1 = (json.loads((out / f"result_{r}.json").read_text()) for r in (0, 1))
    assert r0["world_size"] == 2 and r0 == r1  # both ranks agree on metrics and early stopping
    assert set(r0["sharding"].values()) == {"row_wise"} and len(r0["sharding"]) == 6  # 3 tables x 2 members

    inputs, train = tiny_inputs(), tiny_split(256, 0)
    expected = reference_train(CFG, inputs, train, epochs=2)
    sharded = load_teacher(epoch_dir(out, 2)).model.state_dict()  # DCP from 2 ranks -> one process
    diff = max(float((sharded[k] - expected[k]).abs().max()) for k in expected)
    print(f"max abs diff, 2-rank row-wise vs unsharded after 2 epochs: {diff:.2e}")
    assert diff < 1e-5

    best = load_teacher(out).model.state_dict()  # model.pt, written by rank 0
    expected_best = expected if r0["best_epoch"] == 2 else reference_train(CFG, inputs, train, epochs=1)
    assert max(float((best[k] - expected_best[k]).abs().max()) for k in expected) < 1e-5
    assert torch.equal(
        best["members.0.sparse.ebc.embedding_bags.item_id.weight"],
        load_teacher(epoch_dir(out, r0["best_epoch"])).model.state_dict()[
            "members.0.sparse.ebc.embedding_bags.item_id.weight"
        ],
    )
