"""Validation of the teacher during training (early stopping), computed across ranks.

Every rank scores an equal share of each chunk of the split (the last chunk is padded by
repeating rows, so all ranks run the same batch size through the sharded model); the logits are
gathered so every rank computes the same metrics and takes the same early-stopping decision.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from recdistill.data.batch import ModelBatch, Targets
from recdistill.metrics.classification import auc, logloss_of_logits
from recdistill.models.teacher import TeacherInputs, teacher_batch
from recdistill.teacher.distributed import DistContext


def binary_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Logloss and AUC of logits against 0/1 labels."""
    z = logits.astype(np.float64)
    y = labels.astype(np.float64)
    auc_value = auc(y, z) if 0 < y.sum() < len(y) else float("nan")
    return {"logloss": logloss_of_logits(y, z), "auc": auc_value}


def evaluate_split(
    dmp: torch.nn.Module,
    inputs: TeacherInputs,
    data: tuple[ModelBatch, Targets],
    eval_batch_size: int,
    ctx: DistContext,
) -> dict[str, float]:
    """Logloss/AUC on a split; every rank scores an equal share of every chunk (padded).

    ``dmp`` is the train task (:class:`~recdistill.models.teacher.TeacherTrainTask`, sharded),
    called on TorchRec ``Batch``es built from ``inputs``' layout.
    """
    batch, targets = data
    n = len(batch)
    ws = ctx.world_size
    per_rank = max(1, eval_batch_size // ws)
    dmp.eval()
    local: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, n, per_rank * ws):
            idx = np.arange(start, min(n, start + per_rank * ws))
            b = math.ceil(len(idx) / ws)
            padded = np.resize(idx, b * ws)  # repeats rows so every rank runs the same batch size
            mine = padded[ctx.rank * b : (ctx.rank + 1) * b]
            _, (_, logits) = dmp(teacher_batch(inputs, batch.take(mine)).to(ctx.device))
            local.append(logits.float().cpu().numpy())
    dmp.train()
    gathered: list[Any] = [None] * ws
    dist.all_gather_object(gathered, local)
    parts = []
    for start_i, start in enumerate(range(0, n, per_rank * ws)):
        m = min(n, start + per_rank * ws) - start
        parts.append(np.concatenate([g[start_i] for g in gathered])[:m])
    logits = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    out = binary_metrics(logits, targets.label)
    if n and np.isfinite(targets.true_ctr).all():  # synthetic data: the Bayes-optimal reference
        p = np.clip(targets.true_ctr.astype(np.float64), 1e-7, 1 - 1e-7)
        bayes = binary_metrics(np.log(p) - np.log1p(-p), targets.label)
        out.update({f"bayes_{k}": v for k, v in bayes.items()})
    return out
