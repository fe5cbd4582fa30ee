"""Train the embedding-MLP student on labels and cached teacher logits; keep the best epoch.

Rows: the labelled training split, plus (``cfg.use_transfer`` with a ``kd`` loss) the
teacher-scored transfer set, whose labels are forced to NaN so only the soft terms read them.
Each epoch shuffles the rows; with a listwise term it shuffles whole requests instead and cuts
batches at request boundaries, so every request in a batch is complete. Adam at ``cfg.lr``
(embedding and bias tables at ``cfg.embedding_lr`` when set), multiplied by ``cfg.lr_decay``
after every epoch; after each epoch the validation AUC decides early stopping (``patience``,
``min_delta``).

The best epoch is written atomically as one folder (``out_dir``, e.g. ``students/mlp``)::

    model.pt       architecture, preprocessing fingerprint, weights (see ``load_student``)
    config.json    the student and distillation configs, the objective as a formula
    metrics.json   parameters, rows, per-epoch history, best validation metrics

The hard-label twin is the same call with ``DistillLossConfig(kind="hard")``: same model, same
seed, labels only, no transfer rows.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from recdistill.config.distill import DistillLossConfig
from recdistill.config.loader import to_mapping
from recdistill.config.students import MlpStudentConfig
from recdistill.data.batch import ModelBatch, Targets
from recdistill.data.batching import epoch_batches
from recdistill.data.preprocess import Preprocessor, preprocess_fingerprint
from recdistill.errors import ArtefactError
from recdistill.io_utils import atomic_path, atomic_write_json
from recdistill.losses import DistillTargets, WeightedSum, build_loss
from recdistill.metrics import auc, logloss
from recdistill.models.params import count_parameters
from recdistill.models.student_mlp import CHECKPOINT_FILE, StudentInputs, StudentMLP, checkpoint_dict
from recdistill.probability import sigmoid

Split = tuple[ModelBatch, Targets]


def build_student(pre: Preprocessor, cfg: MlpStudentConfig) -> StudentMLP:
    """A freshly initialised student for ``pre``'s data contract, seeded with ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    inputs = StudentInputs.from_preprocessor(pre, max_rows_per_table=cfg.max_rows_per_table)
    return StudentMLP(
        inputs,
        embedding_dim=cfg.embedding_dim,
        hidden=cfg.hidden,
        pooling=cfg.pooling,
        dot_interaction=cfg.dot_interaction,
        history_match=cfg.history_match,
        id_bias=cfg.id_bias,
        id_bias_max_rows=cfg.max_bias_rows_per_table,
        dropout=cfg.dropout,
    )


def student_optimizer(model: StudentMLP, cfg: MlpStudentConfig) -> torch.optim.Adam:
    """Adam at ``cfg.lr`` for the dense layers and ``cfg.embedding_lr`` (or ``lr``) for the tables."""
    sparse = [p for n, p in model.named_parameters() if n.startswith(("embeddings.", "biases."))]
    dense = [p for n, p in model.named_parameters() if not n.startswith(("embeddings.", "biases."))]
    groups: list[dict[str, Any]] = [{"params": dense}, {"params": sparse, "lr": cfg.embedding_lr or cfg.lr}]
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


class _Rows:
    """Training rows from one or two sources (train, transfer) gathered per batch without concatenating."""

    def __init__(self, parts: list[ModelBatch]) -> None:
        self.parts = parts
        self.offsets = np.cumsum([0, *[len(p) for p in parts]])

    def take(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pieces = []
        for k, part in enumerate(self.parts):
            sel = idx[(idx >= self.offsets[k]) & (idx < self.offsets[k + 1])] - self.offsets[k]
            if sel.size:
                pieces.append(part.take(sel))
        dense = np.concatenate([p.dense for p in pieces])
        ids = np.concatenate([p.ids for p in pieces])
        multi = np.concatenate([p.multi for p in pieces])
        return torch.from_numpy(dense), torch.from_numpy(ids), torch.from_numpy(multi)

    def order(self, idx: np.ndarray) -> np.ndarray:
        """The order ``take`` returns rows in (source by source), so targets can follow it."""
        return np.concatenate(
            [idx[(idx >= self.offsets[k]) & (idx < self.offsets[k + 1])] for k in range(len(self.parts))]
        )


def _soft(soft: Mapping[str, np.ndarray] | None, split: str, n: int, *, required: bool) -> np.ndarray | None:
    logits = None if soft is None else soft.get(split)
    if logits is None:
        if required:
            raise ArtefactError(f"distillation needs teacher logits for the {split} split; none were given")
        return None
    if logits.shape != (n,):
        raise ArtefactError(f"teacher logits for {split}: expected shape [{n}], got {list(logits.shape)}")
    return np.asarray(logits, dtype=np.float32)


def validation_metrics(
    model: StudentMLP, split: Split, teacher: np.ndarray | None, batch_rows: int
) -> dict[str, float]:
    """Validation metrics: AUC and logloss on labelled rows; teacher AUC and logit MSE when known."""
    batch, targets = split
    logits = model.predict_logits(batch, batch_rows=batch_rows)
    lab = ~np.isnan(targets.label)
    probs = sigmoid(logits)
    out = {"auc": auc(targets.label[lab], logits[lab]), "logloss": logloss(targets.label[lab], probs[lab])}
    if teacher is not None:
        out["teacher_auc"] = auc(targets.label[lab], teacher[lab])
        out["logit_mse_to_teacher"] = float(np.mean((logits - teacher) ** 2))
    return out


@dataclass(frozen=True)
class _TrainSet:
    """Every training row: features from one or two sources, and aligned targets ``[N]``."""

    rows: _Rows
    labels: np.ndarray  # FP32, NaN for transfer rows
    teacher: np.ndarray  # FP32 teacher logits (zeros for the hard twin)
    groups: np.ndarray  # INT64 request codes, unique across sources
    whole_requests: bool  # batches keep requests whole (listwise term on, request ids known)
    n_transfer: int

    def __len__(self) -> int:
        return len(self.labels)


def _training_set(
    train: Split,
    transfer: Split | None,
    soft: Mapping[str, np.ndarray] | None,
    cfg: MlpStudentConfig,
    loss_cfg: DistillLossConfig,
    inputs: StudentInputs,
) -> _TrainSet:
    kd = loss_cfg.kind == "kd"
    t_train = _soft(soft, "train", len(train[0]), required=kd)
    parts, labels, groups = [train[0]], [train[1].label], [train[1].request_id]
    teacher = [t_train if t_train is not None else np.zeros(len(train[0]), np.float32)]
    n_transfer = 0
    if kd and cfg.use_transfer and transfer is not None and len(transfer[0]) > 0:
        inputs.check_batch(transfer[0], "transfer")
        t_transfer = _soft(soft, "transfer", len(transfer[0]), required=True)
        assert t_transfer is not None
        n_transfer = len(transfer[0])
        parts.append(transfer[0])
        labels.append(np.full(n_transfer, np.nan, np.float32))  # soft terms only
        teacher.append(t_transfer)
        groups.append(transfer[1].request_id)
    request_ids = np.concatenate(groups)
    source = np.concatenate([np.full(len(p), k, np.int64) for k, p in enumerate(parts)])
    codes = np.unique(np.stack([source, request_ids], 1), axis=0, return_inverse=True)[1]
    return _TrainSet(
        rows=_Rows(parts),
        labels=np.concatenate(labels).astype(np.float32),
        teacher=np.concatenate(teacher).astype(np.float32),
        groups=codes.reshape(-1).astype(np.int64),
        whole_requests=loss_cfg.listwise > 0 and bool((request_ids >= 0).any()),
        n_transfer=n_transfer,
    )


def _run_epoch(
    model: StudentMLP, opt: torch.optim.Optimizer, objective: WeightedSum, ts: _TrainSet,
    batches: list[np.ndarray], *, desc: str, progress: bool,
) -> float:  # fmt: skip
    """One pass over ``batches``; returns the mean training loss."""
    model.train()
    loss_sum, steps = 0.0, 0
    with tqdm(total=len(ts), desc=desc, unit="samples", disable=not progress, leave=False) as bar:
        for idx in batches:
            o = ts.rows.order(idx)  # source by source, the order take() returns rows in
            targets = DistillTargets(
                torch.from_numpy(ts.labels[o]),
                torch.from_numpy(ts.teacher[o]),
                torch.from_numpy(ts.groups[o]),
            )
            loss = objective(model(*ts.rows.take(o)), targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach())
            steps += 1
            bar.update(len(idx))
            if steps % 10 == 0:
                bar.set_postfix(loss=f"{loss_sum / steps:.4f}", refresh=False)
    return loss_sum / max(steps, 1)


def _better(new: float, best: float, min_delta: float) -> bool:
    """Early-stopping test on validation AUC; a NaN best (one-class validation) is always replaced."""
    return math.isnan(best) or (not math.isnan(new) and new > best + min_delta)


def train_mlp(
    *,
    pre: Preprocessor,
    train: Split,
    valid: Split,
    soft: Mapping[str, np.ndarray] | None,
    cfg: MlpStudentConfig,
    loss_cfg: DistillLossConfig,
    transfer: Split | None = None,
    out_dir: str | Path,
    progress: bool = True,
    start_from: StudentMLP | None = None,
) -> dict[str, Any]:
    """Train, early-stop on validation AUC, write the best epoch to ``out_dir``; returns the metrics.

    ``start_from``: continue training this model (built for ``pre`` and ``cfg``, e.g. by the
    online joint loop) with a fresh optimiser, instead of a freshly initialised one.

    ``soft`` maps a split name (``train``, ``valid``, ``transfer``) to teacher logits FP32 ``[N]``
    aligned with that split (see :func:`recdistill.students.soft_labels.load_soft_labels`);
    ``train`` is required for ``kind="kd"`` (and ``transfer`` when transfer rows are used),
    ``valid`` is optional (fidelity metrics). The hard twin ignores ``transfer``.
    """
    torch.set_num_threads(cfg.num_threads)
    rng = np.random.default_rng(cfg.seed)
    model = build_student(pre, cfg) if start_from is None else start_from
    model.inputs.check_batch(train[0], "train")
    model.inputs.check_batch(valid[0], "valid")
    objective = build_loss(loss_cfg)
    ts = _training_set(train, transfer, soft, cfg, loss_cfg, model.inputs)
    t_valid = _soft(soft, "valid", len(valid[0]), required=False)

    opt = student_optimizer(model, cfg)
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    best_state: dict[str, torch.Tensor] = {}
    stale, train_seconds = 0, 0.0
    for epoch in range(cfg.epochs):
        batches = epoch_batches(len(ts), cfg.batch_size, rng, groups=ts.groups if ts.whole_requests else None)
        t0 = time.perf_counter()
        train_loss = _run_epoch(
            model, opt, objective, ts, batches, desc=f"mlp epoch {epoch}", progress=progress
        )
        schedule.step()
        secs = time.perf_counter() - t0
        train_seconds += secs
        val = validation_metrics(model, valid, t_valid, cfg.eval_batch_size)
        record = {"epoch": epoch, "train_loss": train_loss, "samples_per_s": len(ts) / secs, **val}
        history.append(record)
        if progress:
            print(
                f"mlp epoch {epoch}: loss {train_loss:.4f}  valid auc {val['auc']:.4f}  "
                f"logloss {val['logloss']:.4f}  {record['samples_per_s']:,.0f} samples/s",
                flush=True,
            )
        if best is None or _better(val["auc"], best["auc"], cfg.min_delta):
            best, best_state, stale = record, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    assert best is not None
    model.load_state_dict(best_state)
    model.eval()

    metrics: dict[str, Any] = {
        "objective": str(objective),
        "loss_kind": loss_cfg.kind,
        "params": count_parameters(model),
        "rows": {"train": len(train[0]), "transfer": ts.n_transfer, "valid": len(valid[0])},
        "whole_request_batches": ts.whole_requests,
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "valid": {k: v for k, v in best.items() if k not in ("epoch", "train_loss", "samples_per_s")},
        "train_seconds": train_seconds,
        "samples_per_s": len(ts) * len(history) / train_seconds if train_seconds else 0.0,
        "history": history,
    }
    _write_student(Path(out_dir), model, pre, cfg, loss_cfg, metrics)
    return metrics


def _write_student(
    out_dir: Path, model: StudentMLP, pre: Preprocessor, cfg: MlpStudentConfig,
    loss_cfg: DistillLossConfig, metrics: dict[str, Any],
) -> None:  # fmt: skip
    """``model.pt``, ``config.json`` and ``metrics.json``, renamed into ``out_dir`` together."""
    fingerprint = preprocess_fingerprint(pre)
    config = {
        "student_mlp": to_mapping(cfg),
        "distill": to_mapping(loss_cfg),
        "objective": metrics["objective"],
        "inputs": model.inputs.to_dict(),
        "preprocess_fingerprint": fingerprint,
    }
    ckpt = checkpoint_dict(model, embedding_dim=cfg.embedding_dim, hidden=cfg.hidden, fingerprint=fingerprint)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        torch.save(ckpt, tmp / CHECKPOINT_FILE)
        atomic_write_json(tmp / "config.json", config)
        atomic_write_json(tmp / "metrics.json", metrics)
