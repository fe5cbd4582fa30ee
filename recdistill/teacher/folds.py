"""Which fold teacher scores which training row (``fold_teachers/folds.json``), shared by the
``cross-fit`` stage that trains the fold teachers and the ``score`` stage that uses them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recdistill.config.soft_labels import SoftLabelConfig
from recdistill.data.batch import Targets
from recdistill.data.folds import assign_folds, assignment_digest
from recdistill.data.schema import Schema
from recdistill.errors import ArtefactError, ConfigError
from recdistill.io_utils import read_json

FOLDS_FILE = "folds.json"


def fold_dir(folds_dir: Path, k: int) -> Path:
    return Path(folds_dir) / f"fold_{k}"


def fold_groups(targets: Targets, schema: Schema, group_by: str) -> tuple[np.ndarray | None, str]:
    """The group ids rows are folded by, and the name of the grouping actually used.

    ``user`` falls back to ``request`` when the schema has no user id, ``request`` to ``row``.
    """
    if group_by == "user" and schema.user_id is not None:
        return targets.user_id, "user"
    if group_by in ("user", "request") and schema.request_id is not None:
        return targets.request_id, "request"
    return None, "row"


def fold_assignment(
    targets: Targets, schema: Schema, cfg: SoftLabelConfig, *, where: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fold ``[N]`` of every training row and a summary; refuses more folds than groups.

    Raises :class:`ConfigError` (before any training) when the split has fewer users, requests
    or rows than ``cfg.folds``, or when a fold would be empty.
    """
    groups, used = fold_groups(targets, schema, cfg.group_by)
    n = len(targets)
    n_groups = int(np.unique(groups[groups >= 0]).size + (groups < 0).sum()) if groups is not None else n
    if n_groups < cfg.folds:
        raise ConfigError(
            f"{where}: soft_labels.folds is {cfg.folds}, but the train split has only {n_groups} "
            f"{used}s to spread over the folds; lower soft_labels.folds or use soft_labels.method: in_sample"
        )
    folds = assign_folds(groups, n, cfg.folds, seed=cfg.seed)
    rows = np.bincount(folds, minlength=cfg.folds)
    if (rows == 0).any():
        raise ConfigError(
            f"{where}: with {n_groups} {used}s, fold(s) {np.flatnonzero(rows == 0).tolist()} of "
            f"soft_labels.folds={cfg.folds} would be empty; lower soft_labels.folds or change soft_labels.seed"
        )
    info = {
        "folds": cfg.folds,
        "group_by": used,
        "groups": n_groups,
        "seed": cfg.seed,
        "rows": n,
        "rows_per_fold": rows.tolist(),
        "digest": assignment_digest(folds),
    }
    return folds, info


def read_folds(folds_dir: Path) -> dict[str, Any]:
    """``folds.json`` of finished fold teachers (an :class:`ArtefactError` naming the fix if absent)."""
    path = Path(folds_dir) / FOLDS_FILE
    if not path.is_file():
        raise ArtefactError(
            f"{path}: not found; the fold teachers are missing or unfinished (run the cross-fit stage)"
        )
    info: dict[str, Any] = read_json(path)
    return info
