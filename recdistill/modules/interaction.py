"""Explicit interactions shared by the teacher and the MLP student: pairwise dots and history matches.

Both blocks build their index tensors once in ``__init__`` as non-persistent buffers (as
TorchRec's ``InteractionArch`` builds its ``triu_indices``): they follow the module across
devices, never enter a ``state_dict`` (so checkpoints hold weights only) and export to ONNX as
plain ``Gather``/``MatMul``/``Equal``/``ReduceSum``/``Log`` nodes, no ``Loop``/``Scan``/``If``.

* :class:`PairwiseDots`: the DLRM dot interaction, every pair of ``F`` vectors,
  ``B x F x D -> B x F(F-1)/2`` in upper-triangle order ``(0,1), (0,2), .., (F-2,F-1)``.
* :class:`HistoryMatch`: for multi-valued features, ``log1p(list length)``; for (multi-valued,
  categorical) pairs that share an embedding table, ``log1p(how often the candidate's row occurs
  in the list)``. Padding (``PAD_ROW``) is not counted in a length and out-of-vocabulary
  (``OOV_ROW``) never matches: every unknown id shares one row, so equal rows say nothing.

Each model picks its columns and their order (the teacher by :class:`SparseFeature` order,
the student table by table), so the modules take those columns, not a feature list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from recdistill.data.batch import OOV_ROW, PAD_ROW

if TYPE_CHECKING:  # the student imports this module without TorchRec
    from recdistill.modules.sparse import SparseFeature


def _index(values: Sequence[int]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.int64)


class PairwiseDots(nn.Module):
    """Dot products of every pair of ``num_vectors`` vectors: ``B x F x D -> B x F(F-1)/2``.

    One batched ``Gram = X X^T`` (``B x F x F``), then its strict upper triangle, read through a
    flat index buffer built once here. ``F < 2`` gives ``B x 0``.

    Example::

        dots = PairwiseDots(3)
        dots(torch.ones(2, 3, 4))  # tensor([[4., 4., 4.], [4., 4., 4.]]): pairs (0,1), (0,2), (1,2)
    """

    triu_flat: torch.Tensor  # INT64 [F(F-1)/2]: i * F + j for every i < j

    def __init__(self, num_vectors: int) -> None:
        super().__init__()
        F = num_vectors
        i, j = torch.triu_indices(F, F, offset=1)
        self.register_buffer("triu_flat", (i * F + j).to(torch.int64), persistent=False)
        self.num_vectors = F

    @property
    def out_dim(self) -> int:
        return self.num_vectors * (self.num_vectors - 1) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """FP32 ``B x F x D`` -> ``B x F(F-1)/2``."""
        gram = torch.bmm(x, x.transpose(1, 2))  # B x F x F
        return gram.flatten(1).index_select(1, self.triu_flat)


class HistoryMatch(nn.Module):
    """Target-aware counts over multi-valued features (no parameters).

    ``length_columns``: multi columns whose ``log1p(#non-padding entries)`` is an output.
    ``pairs``: ``(multi column, categorical column)``; output ``log1p(#entries of the list equal
    to the categorical row)``, 0 when that row is padding/missing or out-of-vocabulary.
    ``forward(ids B x C, multi B x M x L) -> FP32 B x (len(length_columns) + len(pairs))``:
    lengths first, then pairs, each in the given order. The counts are exact integers and
    ``log1p`` works element by element, so one ``log1p`` over all columns gives the bits of one
    per column (the teacher's old layout; ``tests/test_student_interactions.py`` checks it).

    Example::

        match = HistoryMatch(length_columns=[0], pairs=[(0, 0)])
        ids = torch.tensor([[5], [1]])                    # candidate rows; 1 = out-of-vocabulary
        multi = torch.tensor([[[5, 5, 7, 0]], [[1, 1, 0, 0]]])
        match(ids, multi)  # log1p of [[3, 2], [2, 0]]: the lengths, then the candidate's hits
    """

    length_index: torch.Tensor  # INT64 [Mm]: multi columns whose length is counted
    pair_multi: torch.Tensor  # INT64 [P]: the multi column of every pair
    pair_cat: torch.Tensor  # INT64 [P]: the categorical column of every pair

    def __init__(self, length_columns: Sequence[int], pairs: Sequence[tuple[int, int]]) -> None:
        super().__init__()
        self.length_columns = tuple(length_columns)
        self.pairs = tuple((int(m), int(c)) for m, c in pairs)
        self.register_buffer("length_index", _index(self.length_columns), persistent=False)
        self.register_buffer("pair_multi", _index([m for m, _ in self.pairs]), persistent=False)
        self.register_buffer("pair_cat", _index([c for _, c in self.pairs]), persistent=False)

    @classmethod
    def shared_tables(cls, features: Sequence[SparseFeature]) -> HistoryMatch:
        """Every multi column's length, and every (multi, categorical) pair reading one table.

        Order: multi features as listed; pairs multi-major, then categorical as listed.
        """
        cats = [f for f in features if f.kind == "categorical"]
        multis = [f for f in features if f.kind == "multi"]
        pairs = [(m.column, c.column) for m in multis for c in cats if m.table == c.table]
        return cls([m.column for m in multis], pairs)

    @property
    def out_dim(self) -> int:
        return len(self.length_columns) + len(self.pairs)

    def forward(self, ids: torch.Tensor, multi: torch.Tensor) -> torch.Tensor:
        """Padded lists: INT64 ``B x C`` and ``B x M x L`` -> FP32 ``B x (Mm + P)``."""
        lengths = (multi.index_select(1, self.length_index) != PAD_ROW).sum(2)  # B x Mm
        hist = multi.index_select(1, self.pair_multi)  # B x P x L
        target = ids.index_select(1, self.pair_cat).unsqueeze(2)  # B x P x 1
        known = target > OOV_ROW  # B x P x 1: a real id (PAD_ROW and OOV_ROW are below FIRST_ID_ROW)
        hits = ((hist == target) & known).sum(2)  # B x P
        return torch.log1p(torch.cat([lengths, hits], dim=1).to(torch.float32))

    def jagged(self, ids: torch.Tensor, lengths: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Jagged lists (a ``KeyedJaggedTensor``'s layout): the same numbers as :meth:`forward`.

        ``ids`` INT64 ``B x C``; ``lengths`` INT64 ``M x B`` (entries of list ``m`` in row ``b``, no
        padding); ``values`` INT64, every entry, list-major then row-major (``lengths.sum()`` of
        them). One comparison of every entry with its row's candidate per pair, summed per row:
        no padding, no host synchronisation. -> FP32 ``B x (Mm + P)``.

        Example::

            match = HistoryMatch(length_columns=[0], pairs=[(0, 0)])
            match.jagged(torch.tensor([[5], [1]]), torch.tensor([[3, 2]]), torch.tensor([5, 5, 7, 1, 1]))
            # log1p of [[3, 2], [2, 0]], as in the class example
        """
        M, B = lengths.shape
        E, dev = values.shape[0], values.device
        # every entry's row and list, without host synchronisation (output sizes are known)
        row = torch.repeat_interleave(
            torch.arange(B, device=dev).repeat(M), lengths.reshape(-1), output_size=E
        )
        column = torch.repeat_interleave(torch.arange(M, device=dev), lengths.sum(1), output_size=E)
        target = ids.index_select(1, self.pair_cat).index_select(0, row)  # E x P: the entry's row's candidate
        hit = (values.unsqueeze(1) == target) & (column.unsqueeze(1) == self.pair_multi)
        hit &= target > OOV_ROW  # a real id (PAD_ROW and OOV_ROW are below FIRST_ID_ROW)
        # counts are small integers, exact in FP32: the same bits as counting in INT64 first
        hits = torch.zeros((B, len(self.pairs)), device=dev).index_add_(
            0, row, hit.to(torch.float32)
        )  # B x P
        lists = lengths.index_select(0, self.length_index).t().to(torch.float32)  # B x Mm
        return torch.log1p(torch.cat([lists, hits], dim=1))
