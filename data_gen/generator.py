"""``generate``: draw the world, calibrate the base CTR, stream blocks of requests into Parquet."""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from data_gen.sampler import block_requests, calibrate_base_logit, draw_labels, sample_block
from data_gen.schema_def import build_schema
from data_gen.stats import log_loss, roc_auc
from data_gen.world import World, build_world
from data_gen.writer import arrow_schema, block_table, split_writer
from recdistill.config import GeneratorConfig
from recdistill.data.schema import Schema

SPLITS = ("train", "valid", "test")
TRANSFER = "transfer"
LABELLED_STREAM, TRANSFER_STREAM, CALIBRATION_STREAM = 1, 2, 3
CALIBRATION_ROWS = 65_536


def _block_rng(cfg: GeneratorConfig, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, stream, index])


def _blocks(n_requests: int, per_block: int) -> list[tuple[int, int]]:
    """``(first_request_offset, n_requests)`` of each rng block.

    Every block is sampled whole (``per_block`` requests) and the last one truncated to ``n``, so
    request ``r`` has the same content whatever the total: a small data set is a prefix of a large one.
    """
    return [(s, min(per_block, n_requests - s)) for s in range(0, n_requests, per_block)]


def base_logit_for(world: World, cfg: GeneratorConfig) -> float:
    """Base logit that makes the mean true CTR equal ``cfg.base_ctr`` on a calibration sample."""
    per_block = block_requests(cfg)
    n_req = math.ceil(CALIBRATION_ROWS / cfg.candidates_per_request)
    z = [
        sample_block(world, cfg, _block_rng(cfg, CALIBRATION_STREAM, i), s, per_block).z
        for i, (s, _) in enumerate(_blocks(n_req, per_block))
    ]
    return calibrate_base_logit(np.concatenate(z), cfg.base_ctr)


def generate(cfg: GeneratorConfig, out_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Write ``{train,valid,test}.parquet`` (+ ``transfer.parquet``) and ``schema.json`` to ``out_dir``.

    ``cfg.rows`` is rounded up to whole requests of ``cfg.candidates_per_request`` rows. Returns a
    JSON-able summary: rows and requests per file, seconds, rows_per_s, observed CTR, the
    Bayes-optimal AUC/log loss on the test split (true_ctr as the score), features and config.
    A ``transfer.parquet`` left from an earlier run is removed when ``cfg.transfer_rows == 0``.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    schema = build_schema(cfg)
    world = build_world(cfg)
    base_logit = base_logit_for(world, cfg)
    N = cfg.candidates_per_request
    per_block = block_requests(cfg)
    n_labelled = math.ceil(cfg.rows / N)
    n_transfer = math.ceil(cfg.transfer_rows / N) if cfg.transfer_rows > 0 else 0
    split_edges = np.cumsum(cfg.split)[:-1]

    names = [*SPLITS, *([TRANSFER] if n_transfer else [])]
    clicks = dict.fromkeys(SPLITS, 0)
    ctr_sum = dict.fromkeys(names, 0.0)
    requests = dict.fromkeys(names, 0)
    test_ctr: list[npt.NDArray[np.float32]] = []
    test_click: list[npt.NDArray[np.int8]] = []
    bar = tqdm(total=(n_labelled + n_transfer) * N, unit="row", unit_scale=True, disable=not progress,
               desc=f"data_gen -> {out}")  # fmt: skip
    with ExitStack() as stack:
        stack.enter_context(bar)
        target = arrow_schema(schema)
        writers = {
            n: stack.enter_context(split_writer(out / f"{n}.parquet", target, cfg.chunk_rows)) for n in names
        }
        for i, (s, n) in enumerate(_blocks(n_labelled, per_block)):
            rng = _block_rng(cfg, LABELLED_STREAM, i)
            block = sample_block(world, cfg, rng, s, per_block)  # always whole: see _blocks
            true_ctr, click = draw_labels(block, base_logit, rng)
            keep = n * N
            table = block_table(block, schema, N, true_ctr, click).slice(0, keep)
            true_ctr, click = true_ctr[:keep], click[:keep]
            split_of_row = np.repeat(np.searchsorted(split_edges, block.split_u[:n], side="right"), N)
            for j, name in enumerate(SPLITS):
                mask = split_of_row == j
                if not mask.any():
                    continue
                writers[name].write(table.filter(mask))
                requests[name] += int(mask.sum()) // N
                clicks[name] += int(click[mask].sum())
                ctr_sum[name] += float(true_ctr[mask].sum(dtype=np.float64))
                if name == "test":
                    test_ctr.append(true_ctr[mask])
                    test_click.append(click[mask])
            bar.update(keep)
        for i, (s, n) in enumerate(_blocks(n_transfer, per_block)):
            rng = _block_rng(cfg, TRANSFER_STREAM, i)
            block = sample_block(world, cfg, rng, n_labelled + s, per_block)
            true_ctr, _ = draw_labels(block, base_logit, rng)
            keep = n * N
            writers[TRANSFER].write(block_table(block, schema, N, true_ctr, None).slice(0, keep))
            requests[TRANSFER] += n
            ctr_sum[TRANSFER] += float(true_ctr[:keep].sum(dtype=np.float64))
            bar.update(keep)
        for w in writers.values():
            w.flush()
        rows = {name: w.rows for name, w in writers.items()}
    if not n_transfer:
        (out / f"{TRANSFER}.parquet").unlink(missing_ok=True)
    schema.save(out)  # last: a schema.json beside the data means the data is complete

    seconds = time.perf_counter() - t0
    y = np.concatenate(test_click) if test_click else np.zeros(0, np.int8)
    p = np.concatenate(test_ctr) if test_ctr else np.zeros(0, np.float32)
    labelled_rows = sum(rows[n] for n in SPLITS)
    return {
        "out_dir": str(out),
        "rows": rows,
        "requests": requests,
        "seconds": round(seconds, 3),
        "rows_per_s": round(sum(rows.values()) / seconds, 1),
        "base_ctr_target": cfg.base_ctr,
        "base_logit": base_logit,
        "ctr_observed": _ratio(sum(clicks.values()), labelled_rows),
        "ctr_observed_by_split": {n: _ratio(clicks[n], rows[n]) for n in SPLITS},
        "mean_true_ctr_by_file": {n: _ratio(ctr_sum[n], rows[n]) for n in names},
        "bayes_auc": roc_auc(y, p),
        "bayes_logloss": log_loss(y, p),
        "features": _feature_summary(schema),
        "teacher_only": [f.name for f in schema.features if f.teacher_only],
        "config": dataclasses.asdict(cfg),
    }


def _ratio(num: float, den: int) -> float | None:
    return float(num) / den if den else None


def _feature_summary(schema: Schema) -> list[dict[str, Any]]:
    return [
        {"name": f.name, "kind": f.kind, "group": f.group, "teacher_only": f.teacher_only}
        for f in schema.features
    ]
