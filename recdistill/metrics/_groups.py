"""Vectorised group-by helpers: sort rows by (group id, score), find groups and runs of tied scores.

All metrics that work per user or per request (GAUC, NDCG, MRR, fidelity) build on one
:class:`SortedGroups`: ``n`` rows sorted by group id, then by score, with a stable tie-break
(rows with equal scores keep their input order). Group ``g`` is the ``g``-th smallest id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recdistill.metrics._checks import F64, I64


@dataclass(frozen=True)
class SortedGroups:
    """Rows sorted by (group id, score); ``n`` rows in ``G`` groups.

    ``order``     ``[n]`` input row at each sorted position
    ``group``     ``[n]`` group index (``0..G-1``) of each sorted position
    ``position``  ``[n]`` 0-based position of each sorted row inside its group
    ``starts``    ``[G]`` first sorted position of each group
    ``sizes``     ``[G]`` rows per group
    ``keys``      ``[n]`` the sort key (score, negated when descending) at each sorted position
    """

    order: I64
    group: I64
    position: I64
    starts: I64
    sizes: I64
    keys: F64

    @property
    def n_groups(self) -> int:
        return len(self.starts)


def sort_in_groups(
    group_ids: npt.NDArray[np.generic] | None, scores: F64, *, descending: bool
) -> SortedGroups:
    """Sort rows by group id, then by score (descending if asked); ties keep their input order.

    ``group_ids=None`` puts every row in one group.
    """
    n = len(scores)
    keys = -scores if descending else scores
    if group_ids is None:
        order = np.argsort(keys, kind="stable").astype(np.int64, copy=False)
        new_group = np.zeros(n, dtype=bool)
    else:
        order = np.lexsort((keys, group_ids)).astype(np.int64, copy=False)
        sorted_ids = group_ids[order]
        new_group = np.empty(n, dtype=bool)
        new_group[1:] = sorted_ids[1:] != sorted_ids[:-1]
    if n:
        new_group[0] = True
    group = np.cumsum(new_group, dtype=np.int64) - 1
    starts = np.flatnonzero(new_group).astype(np.int64, copy=False)
    sizes = np.diff(np.append(starts, n)).astype(np.int64, copy=False)
    position = np.arange(n, dtype=np.int64) - starts[group] if n else np.zeros(0, dtype=np.int64)
    return SortedGroups(order, group, position, starts, sizes, keys[order])


def tie_runs(groups: SortedGroups) -> tuple[I64, I64]:
    """Runs of equal scores inside each group, in sorted order.

    Returns ``(run, run_starts)``: ``run`` ``[n]`` is the run index of each sorted position and
    ``run_starts`` ``[R]`` the first sorted position of each run. A run never crosses groups.
    """
    n = len(groups.order)
    new_run = np.empty(n, dtype=bool)
    if n:
        new_run[0] = True
        new_run[1:] = (groups.group[1:] != groups.group[:-1]) | (groups.keys[1:] != groups.keys[:-1])
    run = np.cumsum(new_run, dtype=np.int64) - 1
    return run, np.flatnonzero(new_run).astype(np.int64, copy=False)


def average_ranks(groups: SortedGroups) -> F64:
    """1-based rank of each row inside its group, ties given their average rank.

    Returns ``[n]`` in input row order (not sorted order). Ranks follow the sort direction.
    """
    n = len(groups.order)
    run, run_starts = tie_runs(groups)
    run_sizes = np.diff(np.append(run_starts, n))
    run_rank = groups.position[run_starts] + (run_sizes + 1) / 2.0  # [R]
    ranks = np.empty(n, dtype=np.float64)
    ranks[groups.order] = run_rank[run]
    return ranks
