"""Batch order of one training epoch: which rows each optimiser step reads.

One function for both trainers, whose options keep each trainer's exact row order:

* the teacher: ``epoch_batches(n, batch_size, epoch_rng(seed, epoch), drop_last=True)``. A
  fresh generator per epoch, so a resumed run repeats the interrupted epoch's order exactly;
  every step has ``batch_size`` rows, which the distributed trainer splits evenly over ranks.
* the MLP student: ``epoch_batches(n, batch_size, rng, groups=request_codes or None)`` with one
  generator for the whole run. The last partial batch is kept (small training sets lose no
  rows); with ``groups`` whole requests are shuffled and kept together (listwise losses).

The two differ (per-epoch seeding and ``drop_last``) on purpose: making either follow the other
would change that trainer's row order, and the resumable teacher needs a per-epoch stream.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Rows = npt.NDArray[np.int64]


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The teacher's generator for ``epoch``: depends on ``(seed, epoch)`` only, not on earlier epochs."""
    return np.random.default_rng([seed, epoch])


def epoch_batches(
    n_rows: int,
    batch_size: int,
    rng: np.random.Generator,
    *,
    groups: npt.NDArray[np.int64] | None = None,
    drop_last: bool = False,
) -> list[Rows]:
    """Row indices of one epoch's batches, in training order; ``rng`` draws one permutation.

    ``groups=None``: rows shuffled freely, batches of ``batch_size`` rows; the last one is
    shorter, or dropped with ``drop_last`` (then every batch has exactly ``batch_size`` rows and
    ``n_rows % batch_size`` rows sit the epoch out).

    ``groups`` ``[n_rows]`` INT64 request codes: requests are shuffled and kept whole, and a
    batch holds the requests whose first row falls in its ``batch_size`` window (so it has about
    ``batch_size`` rows). Every row appears exactly once; ``drop_last`` is refused (no batch
    has a fixed size to fall short of).

    Example::

        epoch_batches(5, 2, np.random.default_rng(0))  # [array([2, 4]), array([3, 0]), array([1])]
        epoch_batches(5, 2, np.random.default_rng(0), drop_last=True)  # the first two of those
    """
    if groups is not None and drop_last:
        raise ValueError("epoch_batches: drop_last applies to free row batches, not to whole-request groups")
    if n_rows == 0:
        return []
    if groups is None:
        perm = rng.permutation(n_rows)
        stop = n_rows - n_rows % batch_size if drop_last else n_rows
        return [perm[s : s + batch_size] for s in range(0, stop, batch_size)]
    uniq, codes = np.unique(groups, return_inverse=True)
    rank = rng.permutation(uniq.size)[codes.reshape(-1)]  # [n_rows] shuffled position of each row's request
    order = np.argsort(rank, kind="stable")  # rows of one request are now adjacent
    new_request = np.r_[True, rank[order][1:] != rank[order][:-1]]  # [n_rows] first row of a request
    starts = np.flatnonzero(new_request)  # [R] position of each request's first row
    batch_of_row = (starts // batch_size)[np.cumsum(new_request) - 1]
    cuts = np.flatnonzero(np.diff(batch_of_row)) + 1
    return list(np.split(order, cuts))
