"""How much the teacher memorised its own training rows, read off its training history.

In the first epoch every training row's loss is computed before the teacher has stepped on that
row (progressive validation), so epoch 1's mean training loss is a held-out figure. After that, a
fall in training loss that the validation loss does not share comes from rows the teacher has
already seen: their scores drift towards their clicks, and in-sample soft labels say little beyond
the clicks themselves. Measured (``docs/experiments/real_data.md``): MovieLens-100k keeps epoch 2
with memorisation 0.12-0.16 and out-of-fold soft labels validate better; the synthetic click logs
keep epoch 1 (memorisation 0) and in-sample soft labels validate better.

``soft_labels.method: auto`` cross-fits when :func:`memorisation` exceeds
``soft_labels.memorisation_threshold``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from recdistill.config.soft_labels import SoftLabelConfig


def memorisation(history: Sequence[Mapping[str, Any]], best_epoch: int) -> float | None:
    """``((train_1 - train_b) - (valid_1 - valid_b)) / valid_b`` for the kept epoch ``b`` (losses
    are loglosses; 0.0 when ``b`` is the first epoch); ``None`` without validation losses."""
    by_epoch = {int(h["epoch"]): h for h in history}
    first, best = by_epoch.get(1), by_epoch.get(best_epoch)
    if first is None or best is None or "valid_logloss" not in first or "valid_logloss" not in best:
        return None
    if best_epoch == 1:
        return 0.0
    train_drop = float(first["train_loss"]) - float(best["train_loss"])
    valid_drop = float(first["valid_logloss"]) - float(best["valid_logloss"])
    return (train_drop - valid_drop) / max(float(best["valid_logloss"]), 1e-12)


def choose_method(cfg: SoftLabelConfig, teacher_meta: Mapping[str, Any] | None) -> tuple[str, str]:
    """``(method, why)``: the configured method, or for ``auto`` the one the teacher's history
    calls for (``teacher_meta``: the teacher's ``teacher.json``; ``None`` before it exists)."""
    if cfg.method != "auto":
        return cfg.method, f"soft_labels.method: {cfg.method}"
    if teacher_meta is None:
        raise ValueError("soft_labels.method auto needs the trained teacher's history (teacher.json)")
    kept = int(teacher_meta.get("best_epoch", 1))
    m = memorisation(teacher_meta.get("history", []), kept)
    if m is None:
        return "in_sample", "auto: no validation split to measure the teacher's memorisation"
    verdict = "above" if m > cfg.memorisation_threshold else "not above"
    why = (
        f"auto: the teacher's memorisation at its kept epoch {kept} is {m:.3f}, {verdict} "
        f"the threshold {cfg.memorisation_threshold:g}"
    )
    return ("out_of_fold" if m > cfg.memorisation_threshold else "in_sample"), why
