"""Fold assignment: a fixed hash of each row's group id, so rows of one user or request share a fold.

Used wherever a row must be scored or encoded by something fitted without it: cross-fitted
teacher soft labels (:mod:`recdistill.teacher.cross_fit`) and the GBDT student's out-of-fold
target encodings.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

from recdistill.data.preprocess import mix64
from recdistill.errors import DataError

I64 = npt.NDArray[np.int64]


def assign_folds(groups: I64 | None, n_rows: int, n_folds: int, *, seed: int = 0) -> I64:
    """Fold ``[N]`` in ``[0, n_folds)`` of each row: a fixed hash of its group id, else of its position.

    ``groups`` ``[N]`` INT64 (user or request ids); rows with group -1 (unknown) are assigned by
    position. ``seed`` 0 gives the historical assignment; another seed reshuffles the groups.

    Example::

        assign_folds(np.array([7, 7, 3, -1]), 4, 2)  # rows 0 and 1 (user 7) share a fold
    """
    if n_folds < 1:
        raise DataError(f"n_folds must be >= 1, got {n_folds}")
    position = np.arange(n_rows, dtype=np.int64)
    if groups is None:
        key = position
    else:
        if groups.shape != (n_rows,):
            raise DataError(f"groups: expected shape [{n_rows}], got {list(groups.shape)}")
        key = np.where(groups >= 0, groups, position + np.int64(1 << 40))
    h = mix64(key)
    if seed:
        h = mix64((h ^ mix64(np.array([seed], dtype=np.int64))).view(np.int64))
    return (h % np.uint64(n_folds)).astype(np.int64)


def assignment_digest(folds: I64) -> str:
    """sha256 of a fold assignment (to prove two stages used the same one)."""
    return hashlib.sha256(np.ascontiguousarray(folds, dtype="<i8").tobytes()).hexdigest()
