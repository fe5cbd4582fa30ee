"""Train the embedding-MLP student on labels and cached teacher logits; keep the best epoch.

Rows: the labelled training split, plus (``cfg.use_transfer`` with a ``kd`` loss) the
teacher-scored transfer set, whose labels are forced to NaN so only the soft terms read them.
Each epoch shuffles the rows; with a listwise term it shuffles whole requests instead and cuts
batches at request boundaries, so every request in a batch is complete. Adam at ``cfg.lr``;
after each epoch the validation AUC decides early stopping (``patience``, ``min_delta``).

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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from recdistill.config.distill import DistillLossConfig
from recdistill.config.loader import to_mapping
from recdistill.config.students import MlpStudentConfig
from recdistill.data.batch import ModelBatch, Targets
from recdistill.data.preprocess import Preprocessor
from recdistill.errors import ArtefactError
from recdistill.io_utils import atomic_path, atomic_write_json
from recdistill.losses import DistillTargets, build_loss
from recdistill.metrics import auc, logloss
from recdistill.models.student_mlp import (
    CHECKPOINT_FILE,
    StudentInputs,
    StudentMLP,
    checkpoint_dict,
    count_parameters,
)
from recdistill.students import preprocess_fingerprint

Split = tuple[ModelBatch, Targets]


def build_student(pre: Preprocessor, cfg: MlpStudentConfig) -> StudentMLP:
    """A freshly initialised student for ``pre``'s data contract, seeded with ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    inputs = StudentInputs.from_preprocessor(pre, max_rows_per_table=cfg.max_rows_per_table)
    return StudentMLP(inputs, embedding_dim=cfg.embedding_dim, hidden=cfg.hidden, pooling=cfg.pooling)


def epoch_batches(
    n_rows: int, batch_size: int, rng: np.random.Generator, groups: np.ndarray | None = None
) -> list[np.ndarray]:
    """Row indices of one epoch's batches; every row appears exactly once.

    ``groups`` ``[n_rows]`` INT64 request codes: requests are shuffled and kept whole, and a
    batch holds the requests whose first row falls in its ``batch_size`` window (so it has
    about ``batch_size`` rows). ``None``: rows are shuffled freely.
    """
    if n_rows == 0:
        return []
    if groups is None:
        perm = rng.permutation(n_rows)
        return [perm[s : s + batch_size] for s in range(0, n_rows, batch_size)]
    uniq, codes = np.unique(groups, return_inverse=True)
    rank = rng.permutation(uniq.size)[codes.reshape(-1)]  # [n_rows] shuffled position of each row's request
    order = np.argsort(rank, kind="stable")  # rows of one request are now adjacent
    new_request = np.r_[True, rank[order][1:] != rank[order][:-1]]  # [n_rows] first row of a request
    starts = np.flatnonzero(new_request)  # [R] position of each request's first row
    batch_of_row = (starts // batch_size)[np.cumsum(new_request) - 1]
    cuts = np.flatnonzero(np.diff(batch_of_row)) + 1
    return np.split(order, cuts)


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


def evaluate(
    model: StudentMLP, split: Split, teacher: np.ndarray | None, batch_rows: int
) -> dict[str, float]:
    """Validation metrics: AUC and logloss on labelled rows; teacher AUC and logit MSE when known."""
    batch, targets = split
    logits = model.predict_logits(batch, batch_rows=batch_rows)
    lab = ~np.isnan(targets.label)
    probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    out = {"auc": auc(targets.label[lab], logits[lab]), "logloss": logloss(targets.label[lab], probs[lab])}
    if teacher is not None:
        out["teacher_auc"] = auc(targets.label[lab], teacher[lab])
        out["logit_mse_to_teacher"] = float(np.mean((logits - teacher) ** 2))
    return out


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
) -> dict[str, Any]:
    """Train, early-stop on validation AUC, write the best epoch to ``out_dir``; returns the metrics.

    ``soft`` maps a split name (``train``, ``valid``, ``transfer``) to teacher logits FP32 ``[N]``
    aligned with that split (see :func:`recdistill.students.soft_labels.load_soft_labels`);
    ``train`` is required for ``kind="kd"``, ``valid`` is optional (fidelity metrics).
    """
    torch.set_num_threads(cfg.num_threads)
    rng = np.random.default_rng(cfg.seed)
    model = build_student(pre, cfg)
    inputs = model.inputs
    kd = loss_cfg.kind == "kd"
    objective = build_loss(loss_cfg)
    inputs.check_batch(train[0], "train")
    inputs.check_batch(valid[0], "valid")

    parts, labels, teacher, groups = [train[0]], [train[1].label], [], [train[1].request_id]
    t_train = _soft(soft, "train", len(train[0]), required=kd)
    teacher.append(t_train if t_train is not None else np.zeros(len(train[0]), np.float32))
    use_transfer = kd and cfg.use_transfer and transfer is not None and len(transfer[0]) > 0
    if use_transfer:
        assert transfer is not None
        inputs.check_batch(transfer[0], "transfer")
        t_transfer = _soft(soft, "transfer", len(transfer[0]), required=True)
        assert t_transfer is not None
        parts.append(transfer[0])
        labels.append(np.full(len(transfer[0]), np.nan, np.float32))  # soft terms only
        teacher.append(t_transfer)
        groups.append(transfer[1].request_id)
    rows = _Rows(parts)
    y_all = np.concatenate(labels).astype(np.float32)
    t_all = np.concatenate(teacher).astype(np.float32)
    # request codes unique across sources (a transfer request id may repeat a training one)
    source = np.concatenate([np.full(len(p), k, np.int64) for k, p in enumerate(parts)])
    g_all = np.unique(np.stack([source, np.concatenate(groups)], 1), axis=0, return_inverse=True)[1]
    g_all = g_all.reshape(-1).astype(np.int64)
    whole_requests = loss_cfg.listwise > 0 and bool((np.concatenate(groups) >= 0).any())
    n_rows = len(y_all)
    t_valid = _soft(soft, "valid", len(valid[0]), required=False)

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    stale, train_seconds, seen = 0, 0.0, 0
    for epoch in range(cfg.epochs):
        model.train()
        batches = epoch_batches(n_rows, cfg.batch_size, rng, g_all if whole_requests else None)
        t0 = time.perf_counter()
        loss_sum, steps = 0.0, 0
        with tqdm(
            total=n_rows, desc=f"mlp epoch {epoch}", unit="samples", disable=not progress, leave=False
        ) as bar:
            for idx in batches:
                o = rows.order(idx)  # source by source, the order take() returns
                dense, ids, multi = rows.take(o)
                targets = DistillTargets(
                    torch.from_numpy(y_all[o]), torch.from_numpy(t_all[o]), torch.from_numpy(g_all[o])
                )
                loss = objective(model(dense, ids, multi), targets)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach())
                steps += 1
                bar.update(len(idx))
                if steps % 10 == 0:
                    bar.set_postfix(loss=f"{loss_sum / steps:.4f}", refresh=False)
        secs = time.perf_counter() - t0
        train_seconds += secs
        seen += n_rows
        val = evaluate(model, valid, t_valid, cfg.eval_batch_size)
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / max(steps, 1),
            "samples_per_s": n_rows / secs,
            **val,
        }
        history.append(record)
        if progress:
            print(
                f"mlp epoch {epoch}: loss {record['train_loss']:.4f}  valid auc {val['auc']:.4f}  "
                f"logloss {val['logloss']:.4f}  {record['samples_per_s']:,.0f} samples/s",
                flush=True,
            )
        improved = best is None or (not math.isnan(val["auc"]) and val["auc"] > best["auc"] + cfg.min_delta)
        if improved or best is None or math.isnan(best["auc"]):
            best, best_state, stale = record, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    assert best is not None and best_state is not None
    model.load_state_dict(best_state)
    model.eval()

    fingerprint = preprocess_fingerprint(pre)
    metrics: dict[str, Any] = {
        "objective": str(objective),
        "loss_kind": loss_cfg.kind,
        "params": count_parameters(model),
        "rows": {
            "train": len(train[0]),
            "transfer": len(parts[1]) if use_transfer else 0,
            "valid": len(valid[0]),
        },
        "whole_request_batches": whole_requests,
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "valid": {k: v for k, v in best.items() if k not in ("epoch", "train_loss", "samples_per_s")},
        "train_seconds": train_seconds,
        "samples_per_s": seen / train_seconds if train_seconds else 0.0,
        "history": history,
    }
    config = {
        "student_mlp": to_mapping(cfg),
        "distill": to_mapping(loss_cfg),
        "objective": str(objective),
        "inputs": inputs.to_dict(),
        "preprocess_fingerprint": fingerprint,
    }
    ckpt = checkpoint_dict(model, embedding_dim=cfg.embedding_dim, hidden=cfg.hidden, fingerprint=fingerprint)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        torch.save(ckpt, tmp / CHECKPOINT_FILE)
        atomic_write_json(tmp / "config.json", config)
        atomic_write_json(tmp / "metrics.json", metrics)
    return metrics
