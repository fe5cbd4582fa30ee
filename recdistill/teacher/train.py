"""Teacher training: single process or ``torchrun`` with sharded tables, through TorchRec's train pipeline.

``run_train_teacher`` reads the data and preprocessing artefacts and calls :func:`train_teacher`,
which works on in-memory splits. Per epoch: shuffle (seeded by ``seed`` and the epoch, so a
resumed run repeats the interrupted one exactly), stream the epoch's batches (TorchRec
``Batch``: dense block, the teacher's ``KeyedJaggedTensor`` built once per batch, labels;
prefetched, :mod:`recdistill.teacher.batches`) through ``TrainPipelineSparseDist``
(:func:`~recdistill.teacher.distributed.train_pipeline`) with a progress bar (loss, samples/s),
evaluate on the validation split (logloss, AUC), write a checkpoint atomically, stop early after
``patience`` epochs without improvement. The best epoch becomes ``model.pt`` (unsharded).

Distributed: run the same command under ``torchrun --nproc_per_node N -m recdistill train-teacher``.
Every rank reads the splits; each global batch of ``batch_size`` rows is cut into N equal parts.

Online distillation: a :class:`TeacherCompanion` (``companion=``) is told the rows and the
teacher's logits of every step (computed before that step's update, detached) and may train on
them (:mod:`recdistill.students.mlp.online`); the teacher's training is the same with or without
one. One process only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torchrec.datasets.utils import Batch
from tqdm import tqdm

from recdistill.config.loader import to_mapping
from recdistill.config.teacher import TeacherConfig
from recdistill.data.batch import ModelBatch, Targets
from recdistill.data.batching import epoch_batches, epoch_rng
from recdistill.errors import ArtefactError, ConfigError, DataError
from recdistill.models.params import count_parameters
from recdistill.models.teacher import TeacherInputs, TeacherTrainTask, build_teacher, teacher_batch
from recdistill.teacher import checkpoint as ckpt
from recdistill.teacher.batches import BatchStream, Rows
from recdistill.teacher.distributed import (
    DistContext,
    distributed_context,
    make_optimizer,
    set_learning_rates,
    shard_model,
    sharding_summary,
    train_pipeline,
)
from recdistill.teacher.validation import evaluate_split

Split = tuple[ModelBatch, Targets]
StepHook = Callable[[int, int], None]


class TeacherCompanion(Protocol):
    """A model trained in the teacher's loop, on the teacher's batches (online distillation).

    ``start(dmp, epochs_done)`` once before the first step (``epochs_done``: epochs a resumed run
    already has; the companion restores its state of that epoch); ``after_step(epoch, step, rows,
    logits)`` after every optimiser step, with the training-split rows of that step (INT64
    ``[B]``) and the teacher's ensemble logits for them (FP32 ``[B]``, detached, from that step's
    forward: before its update); ``end_epoch(epoch)`` after the epoch's validation, before its
    checkpoint is written. The time it takes is not counted in the teacher's samples/s.
    """

    def start(self, dmp: torch.nn.Module, epochs_done: int) -> None: ...
    def after_step(self, epoch: int, step: int, rows: Rows, logits: torch.Tensor) -> None: ...
    def end_epoch(self, epoch: int) -> None: ...


@dataclass
class TrainResult:
    """What a training run produced (rank 0 has it complete; other ranks return the same numbers)."""

    out_dir: Path
    best_epoch: int
    epochs_run: int
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    params: dict[str, int] = field(default_factory=dict)
    train_samples_per_s: float = 0.0
    teacher_hash: str = ""
    world_size: int = 1
    sharding: dict[str, str] = field(default_factory=dict)


def lr_factor(cfg: TeacherConfig, step: int, total_steps: int) -> float:
    """Learning-rate multiplier at ``step`` (0-based): linear warm-up, then the schedule."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, total_steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio
    if cfg.schedule == "linear":
        return 1.0 - (1.0 - floor) * t
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def _check_labels(data: Split, name: str) -> None:
    y = data[1].label
    if np.isnan(y).any():
        raise DataError(
            f"{name} split: {int(np.isnan(y).sum())} rows have no label; the teacher trains on labelled rows"
        )
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError(f"{name} split: labels must be 0 or 1")


def train_teacher(
    cfg: TeacherConfig,
    inputs: TeacherInputs,
    train: Split,
    valid: Split | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    on_step: StepHook | None = None,
    companion: TeacherCompanion | None = None,
) -> TrainResult:
    """Train (or resume) the teacher on in-memory splits and write ``out_dir`` (see module doc).

    ``on_step(epoch, step)`` is called after every optimiser step (logging, tests);
    ``companion`` trains beside the teacher (see :class:`TeacherCompanion`).
    """
    out = Path(out_dir)
    _check_labels(train, "train")
    inputs.check_batch(train[0], "train split")
    if valid is not None:
        _check_labels(valid, "valid")
        inputs.check_batch(valid[0], "valid split")
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.num_threads)
    try:
        with distributed_context() as ctx:
            return _train(
                cfg, inputs, train, valid, out, ctx, resume=resume, progress=progress, on_step=on_step,
                companion=companion,
            )  # fmt: skip
    finally:
        torch.set_num_threads(threads)


def _train(
    cfg: TeacherConfig,
    inputs: TeacherInputs,
    train: Split,
    valid: Split | None,
    out: Path,
    ctx: DistContext,
    *,
    resume: bool,
    progress: bool,
    on_step: StepHook | None,
    companion: TeacherCompanion | None = None,
) -> TrainResult:
    ws = ctx.world_size
    if companion is not None and ws != 1:
        raise ConfigError(
            f"online distillation trains the student in the teacher's process: run it in one process, "
            f"not {ws} (distill.mode: online)"
        )
    if cfg.batch_size % ws:
        raise DataError(f"batch_size {cfg.batch_size} must be divisible by the number of processes ({ws})")
    n = len(train[0])
    if n < cfg.batch_size:
        raise DataError(f"train split has {n} rows, fewer than one batch (batch_size={cfg.batch_size})")
    local_b = cfg.batch_size // ws
    steps_per_epoch = n // cfg.batch_size
    total_steps = steps_per_epoch * cfg.epochs

    model = build_teacher(inputs, cfg, table_device="meta")  # each rank materialises its shards only
    params = count_parameters(model)
    dmp = shard_model(TeacherTrainTask(model), cfg, ctx)
    opt = make_optimizer(dmp, cfg)
    fp = ckpt.fingerprint(cfg, inputs)

    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "best_epoch": 0,
        "best_logloss": math.inf,
        "bad_epochs": 0,
        "history": [],
        "stopped_early": False,
    }
    latest = ckpt.latest_checkpoint(out)
    if latest is not None and not resume:
        raise ArtefactError(
            f"{out}: holds checkpoints of an earlier run ({latest.name}); pass --resume to continue it "
            "or choose an empty output directory"
        )
    if latest is not None:
        stored = ckpt.read_trainer_state(latest)
        ckpt.check_fingerprint(stored["fingerprint"], cfg, inputs, where=str(latest), keys=ckpt.RESUME_KEYS)
        opt.init_state()
        sd = {"model": dmp.state_dict(), "optim": opt.state_dict()}
        ckpt.load_epoch_into(latest, sd)
        dmp.load_state_dict(sd["model"])
        opt.load_state_dict(sd["optim"])
        state = {k: stored.get(k, v) for k, v in state.items()}
        if ctx.is_main:
            print(f"resuming from {latest} (epoch {state['epoch']} done)", flush=True)

    def make_batch(rows: Rows) -> Batch:
        b = teacher_batch(inputs, train[0].take(rows), train[1].label[rows])
        return b.pin_memory() if ctx.device.type == "cuda" else b  # the pipeline copies it to the device

    if companion is not None:
        companion.start(dmp, state["epoch"])
    t_train = 0.0
    rows_trained = 0
    dmp.train()
    while state["epoch"] < cfg.epochs and not state["stopped_early"]:
        epoch = state["epoch"] + 1
        torch.manual_seed(cfg.seed * 1000 + epoch)
        batches = epoch_batches(n, cfg.batch_size, epoch_rng(cfg.seed, epoch), drop_last=True)
        mine = [rows[ctx.rank * local_b : (ctx.rank + 1) * local_b] for rows in batches]
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"teacher epoch {epoch}/{cfg.epochs}",
            unit="batch",
            disable=not (progress and ctx.is_main),
            leave=False,
        )
        t0 = time.perf_counter()
        t_companion = 0.0
        loss_sum = torch.zeros((), device=ctx.device)  # summed on the device: no sync per step
        pipe = train_pipeline(dmp, opt, ctx.device)
        with BatchStream(make_batch, mine, depth=cfg.prefetch_batches) as stream:
            try:
                for i in range(steps_per_epoch):
                    set_learning_rates(opt, cfg, lr_factor(cfg, state["step"], total_steps))
                    loss, logits = pipe.progress(stream)  # zero_grad, forward, backward, step
                    state["step"] += 1
                    loss_sum += loss
                    if companion is not None:  # the logits of mine[i]: the pipeline keeps the order
                        tc = time.perf_counter()
                        companion.after_step(epoch, i, mine[i], logits)
                        t_companion += time.perf_counter() - tc
                    if bar.disable is False and (i % 10 == 0 or i == steps_per_epoch - 1):
                        rate = (i + 1) * cfg.batch_size / (time.perf_counter() - t0)
                        bar.set_postfix(loss=f"{float(loss_sum) / (i + 1):.4f}", samples_s=f"{rate:,.0f}")
                    bar.update(1)
                    if on_step is not None:
                        on_step(epoch, i)
            finally:
                pipe.detach()  # the model's own forward again (validation, the next epoch's pipeline)
        bar.close()
        dt = time.perf_counter() - t0 - t_companion
        t_train += dt
        rows_trained += steps_per_epoch * cfg.batch_size
        train_loss = (loss_sum / steps_per_epoch).reshape(1)
        dist.all_reduce(train_loss)
        record: dict[str, float] = {
            "epoch": epoch,
            "train_loss": float(train_loss) / ws,
            "samples_per_s": steps_per_epoch * cfg.batch_size / dt,
        }
        if valid is not None:
            record.update(
                {
                    f"valid_{k}": v
                    for k, v in evaluate_split(dmp, inputs, valid, cfg.eval_batch_size, ctx).items()
                }
            )
            # lower is better: the logloss, or minus the AUC
            current = record["valid_logloss"] if cfg.monitor == "logloss" else -record["valid_auc"]
        else:
            current = -epoch  # no validation split: the last epoch is the best
        if current < state["best_logloss"] - cfg.min_delta:
            state["best_logloss"], state["best_epoch"], state["bad_epochs"] = current, epoch, 0
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        state["history"].append(record)
        state["stopped_early"] = state["bad_epochs"] > cfg.patience
        if companion is not None:
            companion.end_epoch(epoch)
        if ctx.is_main:
            shown = ", ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in record.items()
                if k != "epoch"
            )
            print(f"teacher epoch {epoch}: {shown}", flush=True)
        ckpt.save_epoch(
            out,
            epoch,
            {"model": dmp.state_dict(), "optim": opt.state_dict()},
            {**state, "fingerprint": fp, "world_size": ws},
            rank=ctx.rank,
            barrier=ctx.barrier,
        )
        if ctx.is_main:
            ckpt.prune_checkpoints(out, keep={epoch, state["best_epoch"]})
        ctx.barrier()

    result = TrainResult(
        out_dir=out,
        best_epoch=state["best_epoch"],
        epochs_run=state["epoch"],
        metrics={},
        history=state["history"],
        params=params,
        train_samples_per_s=rows_trained / t_train if t_train else 0.0,
        world_size=ws,
        sharding=sharding_summary(dmp),
    )
    best: dict[str, float] = next((h for h in state["history"] if h["epoch"] == state["best_epoch"]), {})
    result.metrics = {k: v for k, v in best.items() if k.startswith("valid_")}
    if ctx.is_main:
        result.teacher_hash = _finalise(out, cfg, fp, state, result)
    ctx.barrier()
    return result


def _finalise(
    out: Path, cfg: TeacherConfig, fp: dict[str, Any], state: dict[str, Any], result: TrainResult
) -> str:
    """Rank 0: load the best epoch's distributed checkpoint unsharded; write model.pt + teacher.json."""
    model, _ = ckpt.teacher_from_epoch_checkpoint(ckpt.epoch_dir(out, state["best_epoch"]))
    meta = {
        "fingerprint": fp,
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"],
        "metrics": result.metrics,
        "history": state["history"],
        "params": result.params,
    }
    digest = ckpt.save_model(out, model, meta)
    ckpt.write_meta(
        out,
        {
            **meta,
            "config": to_mapping(cfg),
            "teacher_hash": digest,
            "train_samples_per_s": result.train_samples_per_s,
            "world_size": result.world_size,
        },
    )
    return digest


def run_train_teacher(
    data_dir: str | Path,
    preprocess_dir: str | Path,
    out_dir: str | Path,
    cfg: TeacherConfig,
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """``recdistill train-teacher``: train on ``<data>/train``, validate on ``<data>/valid``."""
    from recdistill.data.preprocess import Preprocessor, load_split
    from recdistill.data.splits import find_split, split_path
    from recdistill.teacher.score import check_data_schema

    pre = Preprocessor.load(preprocess_dir)
    check_data_schema(data_dir, pre.schema)
    inputs = TeacherInputs.from_preprocessor(pre)
    train = load_split(split_path(data_dir, "train"), pre)
    valid_path = find_split(data_dir, "valid")
    valid = load_split(valid_path, pre) if valid_path is not None else None
    return train_teacher(cfg, inputs, train, valid, out_dir, resume=resume, progress=progress)
