"""Teacher training speed: recdistill's trainer against a bare TorchRec loop, measured side by side.

Shape (the issue's): 26 categorical features, one table each of 100,000 rows x 16 dims, 13 dense
columns, batch 2,048, 2 threads; synthetic batches (uniform ids, a learnable label). Three
trainers, interleaved round by round so machine load hits them alike:

* ``reference``: a bare ``DistributedModelParallel`` + fused TBE loop written here on TorchRec's
  API alone (planner, ``apply_optimizer_in_backward`` with row-wise Adagrad, fused Adam on the
  dense parameters, ``zero_grad / forward / backward / step``) over pre-built ``Batch``es (KJT
  already built, no data path at all), on the same model as ``ours`` (the teacher's arms and
  over-arch, one member);
* ``ours``: ``recdistill.teacher.train.train_teacher`` on the same rows (padded model tensors ->
  prefetched ``Batch``es -> ``TrainPipelineSparseDist``, learning-rate schedule, progress
  accounting);
* ``dlrm_dcn`` (context, not a target): a DCN-style model from TorchRec's blocks only
  (EBC -> ``LowRankCrossNet`` over ``[dense, embeddings]`` -> ``MLP`` over-arch), the kind of
  model behind the ~37k samples/s measured on this machine before; it shows what the teacher's
  extra arms (towers, deep MLP, pairwise dots) cost;
* ``ours_no_prefetch``: ``ours`` with ``prefetch_batches: 0`` (each batch built when the pipeline
  asks), to show whether the background batch builder pays.

Each rate is steady state: a batch over the median time of the steps after the first ``WARMUP``
(the median, because other jobs share the 2 cores in bursts; the mean-based rates and the
trainer's own whole-epoch figure, with start-up, are reported beside it). Also: the
default ``TeacherConfig()`` (and the demo's teacher section) on the demo data (``configs/demo.yaml``,
its ``data`` and ``preprocess`` stages run or reused under ``runs/bench_teacher_speed``), a fixed
number of steps each. Writes ``benchmarks/results/teacher_speed.json``.

    python benchmarks/bench_teacher_speed.py [--rounds 3] [--steps 40]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _common import ROOT, machine, write_result
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
from torchrec.datasets.utils import Batch
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
from torchrec.distributed.types import ShardingEnv
from torchrec.modules.crossnet import LowRankCrossNet
from torchrec.modules.mlp import MLP
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from recdistill.config.teacher import TeacherConfig
from recdistill.data.batch import ModelBatch, Targets
from recdistill.models.teacher import TeacherInputs, build_teacher, teacher_batch
from recdistill.modules.sparse import SparseFeature
from recdistill.teacher.distributed import distributed_context
from recdistill.teacher.train import train_teacher

SHAPE = {"tables": 26, "rows_per_table": 100_000, "dim": 16, "dense": 13, "batch": 2048, "threads": 2}
WARMUP = 5  # steps left out of every steady-state rate (first-call allocations, the pipeline's fx trace)
GROUPS = ("user",) * 9 + ("item",) * 9 + ("context",) * 8  # feature groups of the 26 tables (teacher towers)
DENSE_GROUPS = ("user",) * 4 + ("item",) * 5 + ("context",) * 4
# The teacher on this shape: the demo's / benchmark teacher's arms and over-arch, one member.
CFG = TeacherConfig(
    embedding_dim=SHAPE["dim"],
    tower_dims=(128, 64),
    cross_layers=2,
    cross_low_rank=32,
    deep_dims=(256, 128),
    over_dims=(128,),
    ensemble_size=1,
    batch_size=SHAPE["batch"],
    epochs=1,
    num_threads=SHAPE["threads"],
)
CFG_SHOWN = ("embedding_dim", "tower_dims", "cross_layers", "cross_low_rank", "deep_dims", "over_dims",
             "ensemble_size", "sparse_optimizer", "lr_sparse", "lr_dense")  # fmt: skip


def shape_inputs() -> TeacherInputs:
    T, R = SHAPE["tables"], SHAPE["rows_per_table"]
    return TeacherInputs(
        sparse=tuple(SparseFeature(f"c{i}", "categorical", i, f"c{i}", R, GROUPS[i]) for i in range(T)),
        dense_groups=DENSE_GROUPS,
        n_categorical=T,
        n_multi=0,
        max_len=1,
    )


def synthetic_rows(steps: int, seed: int = 0) -> tuple[ModelBatch, Targets]:
    """``steps`` batches of rows: uniform ids (rows 2.. of every table), normal dense values, clicks
    that depend on one id and one dense column (so the loss moves)."""
    rng = np.random.default_rng(seed)
    n, T, R = steps * SHAPE["batch"], SHAPE["tables"], SHAPE["rows_per_table"]
    ids = rng.integers(2, R, size=(n, T), dtype=np.int64)
    dense = rng.normal(size=(n, SHAPE["dense"])).astype(np.float32)
    z = dense[:, 0] + np.where(ids[:, 0] % 2 == 0, 1.0, -1.0) - 2.0
    label = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.float32)
    nan = np.full(n, np.nan, np.float32)
    keys = np.arange(n, dtype=np.int64)
    return ModelBatch(dense, ids, np.zeros((n, 0, 1), np.int64)), Targets(keys, label, keys, keys, nan)


# -- the reference: a bare DMP + fused TBE loop on TorchRec's API ---------------------------------------
class _BceTask(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        logits = self.model(batch.dense_features, batch.sparse_features)
        return nn.functional.binary_cross_entropy_with_logits(logits, batch.labels)


def bare_dmp_loop(model: nn.Module, batches: list[Batch], lr_sparse: float, lr_dense: float) -> list[float]:
    """Shard ``model`` with DMP (fused TBE, row-wise Adagrad in backward), train one step per batch;
    returns the time after every step."""
    task = _BceTask(model)
    ebcs = [m for m in task.modules() if isinstance(m, EmbeddingBagCollection)]
    for ebc in ebcs:
        apply_optimizer_in_backward(RowWiseAdagrad, ebc.parameters(), {"lr": lr_sparse, "eps": 1e-8})
    pg = torch.distributed.GroupMember.WORLD
    assert pg is not None
    sharders = [EmbeddingBagCollectionSharder()]
    plan = EmbeddingShardingPlanner(topology=Topology(world_size=1, compute_device="cpu")).collective_plan(
        task, sharders, pg
    )
    dmp = DistributedModelParallel(
        task, env=ShardingEnv.from_process_group(pg), device=torch.device("cpu"), plan=plan, sharders=sharders
    )
    dense = [p for _, p in in_backward_optimizer_filter(dmp.named_parameters())]
    adam = torch.optim.Adam(dense, lr=lr_dense, fused=True)
    stamps = []
    for b in batches:
        adam.zero_grad()
        dmp(b).backward()
        adam.step()  # the tables were updated in backward by the fused kernel
        stamps.append(time.perf_counter())
    return stamps


class DlrmDcn(nn.Module):
    """Context model from TorchRec's blocks: ``[dense, pooled embeddings] -> LowRankCrossNet -> MLP -> logit``."""

    def __init__(self, inputs: TeacherInputs, cfg: TeacherConfig) -> None:
        super().__init__()
        T, R, D = SHAPE["tables"], SHAPE["rows_per_table"], SHAPE["dim"]
        tables = [EmbeddingBagConfig(name=f"t{i}", embedding_dim=D, num_embeddings=R, feature_names=[f"c{i}"])
                  for i in range(T)]  # fmt: skip
        self.ebc = EmbeddingBagCollection(tables=tables, device=torch.device("meta"))
        n0 = SHAPE["dense"] + T * D
        self.cross = LowRankCrossNet(in_features=n0, num_layers=cfg.cross_layers, low_rank=cfg.cross_low_rank)
        self.over = MLP(n0, [*cfg.deep_dims, *cfg.over_dims])
        self.logit = nn.Linear(cfg.over_dims[-1], 1)

    def forward(self, dense: torch.Tensor, sparse: Any) -> torch.Tensor:
        x = torch.cat([dense, self.ebc(sparse).values()], dim=1)
        return self.logit(self.over(self.cross(x))).squeeze(-1)


# -- measurements -----------------------------------------------------------------------------------
def rates(stamps: list[float], rows_per_step: int) -> dict[str, float]:
    """Samples/s of the steps after the first ``WARMUP``: ``median_step`` = rows / median step time
    (robust to bursts of other jobs on a shared machine: the headline), ``mean`` = rows / mean."""
    steps = np.diff(stamps[WARMUP:])
    return {
        "median_step": rows_per_step / float(np.median(steps)),
        "mean": rows_per_step / float(np.mean(steps)),
    }


def measure_reference(kind: str, batches: list[Batch]) -> dict[str, float]:
    inputs = shape_inputs()
    if kind == "reference":
        model: nn.Module = build_teacher(inputs, CFG, table_device="meta")
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(CFG.seed)
            model = DlrmDcn(inputs, CFG)
    return rates(bare_dmp_loop(model, batches, CFG.lr_sparse, CFG.lr_dense), SHAPE["batch"])


def measure_trainer(
    cfg: TeacherConfig, inputs: TeacherInputs, train: tuple[ModelBatch, Targets]
) -> dict[str, float]:
    """``rates`` of recdistill's trainer from per-step times, plus its own whole-epoch samples/s (``epoch``)."""
    stamps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-teacher-") as d:
        res = train_teacher(cfg, inputs, train, None, d, progress=False,
                            on_step=lambda e, s: stamps.append(time.perf_counter()))  # fmt: skip
    return {**rates(stamps, cfg.batch_size), "epoch": res.train_samples_per_s}


def demo_teachers(steps: int) -> dict[str, Any]:
    """The default TeacherConfig() and the demo's teacher section on the demo data, ``steps`` steps each."""
    from recdistill.config import load_config
    from recdistill.data.preprocess import Preprocessor, load_split
    from recdistill.data.splits import split_path
    from recdistill.pipeline.context import RunContext
    from recdistill.pipeline.runner import run_pipeline

    path = ROOT / "configs" / "demo.yaml"
    run_cfg = dataclasses.replace(load_config(path), run_dir=str(ROOT / "runs" / "bench_teacher_speed"))
    ctx = RunContext(run_cfg, config_path=str(path))
    run_pipeline(ctx, until="preprocess")
    pre = Preprocessor.load(ctx.preprocess_dir)
    inputs = TeacherInputs.from_preprocessor(pre)
    batch, targets = load_split(split_path(ctx.data_dir, "train"), pre)
    out: dict[str, Any] = {"train_rows": len(batch)}
    for name, cfg in (("default", TeacherConfig()), ("demo", run_cfg.teacher)):
        rows = np.arange(min(len(batch), steps * cfg.batch_size))
        r = measure_trainer(
            dataclasses.replace(cfg, epochs=1), inputs, (batch.take(rows), targets.take(rows))
        )
        out[name] = {"samples_per_s": r["median_step"], "rates": r, "steps": len(rows) // cfg.batch_size,
                     "batch_size": cfg.batch_size, "embedding_dim": cfg.embedding_dim, "ensemble_size": cfg.ensemble_size}  # fmt: skip
        print(f"{name} teacher on the demo data: {r['median_step']:,.0f} samples/s", flush=True)
    return out


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every trainer")
    ap.add_argument("--steps", type=int, default=40, help="training steps per measurement")
    ap.add_argument("--demo-steps", type=int, default=60, help="steps of each teacher on the demo data")
    args = ap.parse_args()
    torch.set_num_threads(SHAPE["threads"])
    with distributed_context():  # one process group, reused by every trainer below
        measure_all(args)


def measure_all(args: argparse.Namespace) -> None:
    inputs = shape_inputs()
    train = synthetic_rows(args.steps)
    B = SHAPE["batch"]
    batches = [teacher_batch(inputs, train[0].slice(s, s + B), train[1].label[s : s + B])
               for s in range(0, len(train[0]), B)]  # fmt: skip
    measures: dict[str, Callable[[], dict[str, float]]] = {
        "reference": lambda: measure_reference("reference", batches),
        "ours": lambda: measure_trainer(CFG, inputs, train),
        "ours_no_prefetch": lambda: measure_trainer(
            dataclasses.replace(CFG, prefetch_batches=0), inputs, train
        ),
        "dlrm_dcn": lambda: measure_reference("dlrm_dcn", batches),
    }
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in measures}
    loads = [load()]
    for r in range(args.rounds):
        for name, measure in measures.items():
            runs[name].append(measure())
            print(
                f"round {r + 1}: {name} {runs[name][-1]['median_step']:,.0f} samples/s (load {load()[0]})",
                flush=True,
            )
        loads.append(load())
    median = {k: statistics.median(x["median_step"] for x in v) for k, v in runs.items()}
    median_of_means = {k: statistics.median(x["mean"] for x in v) for k, v in runs.items()}
    demo = demo_teachers(args.demo_steps)
    loads.append(load())
    ratio = median["ours"] / median["reference"]
    result = {
        "shape": SHAPE,
        "reference_samples_per_s": median["reference"],
        "ours_samples_per_s": median["ours"],
        "default_teacher_samples_per_s": demo["default"]["samples_per_s"],
        "machine": machine(),
        "rate": "batch / median step time of the steps after the first warmup_steps_left_out; median over rounds",
        "ours_over_reference": ratio,
        "ours_no_prefetch_samples_per_s": median["ours_no_prefetch"],
        "dlrm_dcn_samples_per_s": median["dlrm_dcn"],
        "median_of_mean_rates": median_of_means,
        "ours_trainer_epoch_samples_per_s": statistics.median(x["epoch"] for x in runs["ours"]),
        "rounds": runs,
        "steps_per_measurement": args.steps,
        "warmup_steps_left_out": WARMUP,
        "teacher_config": {k: getattr(CFG, k) for k in CFG_SHOWN},
        "demo_data": demo,
        "load_average_1min": [x[0] for x in loads],
        "targets": {
            "ours_at_least_0.8x_reference": {"value": ratio, "target": ">= 0.8", "passed": ratio >= 0.8},
            "reference_at_least_10k": {
                "value": median["reference"],
                "target": ">= 10000",
                "passed": median["reference"] >= 10_000,
            },
        },
    }
    write_result("teacher_speed", result)


if __name__ == "__main__":
    main()
