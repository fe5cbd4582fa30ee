"""The embedding-MLP student: small tables, serving-time features only, exports to ONNX without loops.

Named parts::

    dense B x N ── index_select(student columns) ──────────────────────────► B x Nd ──────┐
    ids   B x C ── per table: index_select, fold, nn.Embedding ──┐                          │
    multi B x M x L ── per table: index_select, fold,            ├─► V: B x F x D ─► B x F*D ┤
                       nn.Embedding, padding -> zero row, mean ──┘     │                    │
                       (dot_interaction) PairwiseDots of V ────────────┴─► B x F(F-1)/2 ───┤
    ids, multi ── (history_match) HistoryMatch: log1p(list length), log1p(#hits of candidate) ┤
                                           FeedForward(hidden) ─► Linear ─► logit B ◄───────┘

``forward`` takes the FULL preprocessed tensors of the data contract (``recdistill/data/batch.py``,
teacher-only columns included) and selects the student's columns with registered index
buffers, so serving passes ``Preprocessor.transform`` output straight in and the student can
never read a ``teacher_only`` column. Multi-valued features use ``nn.Embedding`` over the padded
``B x k x L`` ids (padding slots read an all-zero extra row) and a sum, not ``nn.EmbeddingBag``, which ONNX exports as a ``Loop``
(see ``docs/stack.md``). ``PairwiseDots`` and ``HistoryMatch`` are the teacher's blocks too
(``recdistill.modules.interaction``).

Folding: a table with more preprocessed rows than ``max_rows`` keeps rows 0 (padding/missing)
and 1 (out-of-vocabulary) and maps row ``r >= 2`` to ``2 + (r - 2) % (max_rows - 2)``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from recdistill.data.batch import OOV_ROW, PAD_ROW, ModelBatch, check_model_batch
from recdistill.data.preprocess import Preprocessor
from recdistill.errors import ArtefactError, DataError
from recdistill.modules.interaction import HistoryMatch, PairwiseDots
from recdistill.modules.mlp import FeedForward

_SAFE = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class StudentTable:
    """One embedding table: the preprocessed rows it receives and the rows it stores.

    ``cat_columns`` index ``ModelBatch.ids``, ``multi_columns`` index ``ModelBatch.multi``:
    the student features that read this table (shared vocabularies have several).
    """

    name: str
    source_rows: int
    rows: int
    cat_columns: tuple[int, ...]
    multi_columns: tuple[int, ...]

    @property
    def folded(self) -> bool:
        return self.rows < self.source_rows


@dataclass(frozen=True)
class StudentInputs:
    """Which columns of the full model tensors the student reads, and the full tensor shapes."""

    dense_columns: tuple[int, ...]
    tables: tuple[StudentTable, ...]
    dense_dim: int  # full widths of the contract, teacher-only columns included
    n_categorical: int
    n_multi: int
    max_len: int

    @classmethod
    def from_preprocessor(cls, pre: Preprocessor, *, max_rows_per_table: int | None) -> StudentInputs:
        """The student's view of ``pre``: ``teacher_only`` features left out, big tables folded."""
        s = pre.schema
        # (kind, column, feature name) of every student id feature, categorical first
        feats = [
            ("categorical", j, s.categorical[j].name) for j in pre.id_columns("categorical", student=True)
        ]
        feats += [("multi", j, s.multi[j].name) for j in pre.id_columns("multi", student=True)]
        order = list(dict.fromkeys(pre.table_name(name) for _, _, name in feats))
        tables = []
        for t in order:
            users = [(kind, j, name) for kind, j, name in feats if pre.table_name(name) == t]
            src = pre.table_rows(users[0][2])
            rows = src if max_rows_per_table is None else min(src, max_rows_per_table)
            cat_cols = tuple(j for kind, j, _ in users if kind == "categorical")
            multi_cols = tuple(j for kind, j, _ in users if kind == "multi")
            tables.append(StudentTable(t, src, rows, cat_cols, multi_cols))
        return cls(
            dense_columns=tuple(pre.dense_columns(student=True)),
            tables=tuple(tables),
            dense_dim=pre.dense_dim,
            n_categorical=len(s.categorical),
            n_multi=len(s.multi),
            max_len=pre.max_len,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudentInputs:
        tables = tuple(
            StudentTable(
                t["name"],
                int(t["source_rows"]),
                int(t["rows"]),
                tuple(t["cat_columns"]),
                tuple(t["multi_columns"]),
            )
            for t in d["tables"]
        )
        return cls(
            dense_columns=tuple(d["dense_columns"]),
            tables=tables,
            dense_dim=int(d["dense_dim"]),
            n_categorical=int(d["n_categorical"]),
            n_multi=int(d["n_multi"]),
            max_len=int(d["max_len"]),
        )

    @property
    def n_cat_features(self) -> int:
        return sum(len(t.cat_columns) for t in self.tables)

    @property
    def n_multi_features(self) -> int:
        return sum(len(t.multi_columns) for t in self.tables)

    def check_batch(self, batch: ModelBatch, where: str) -> None:
        """Raise :class:`DataError` unless ``batch`` has the full contract shapes this student expects."""
        check_model_batch(
            batch,
            dense_dim=self.dense_dim,
            n_categorical=self.n_categorical,
            n_multi=self.n_multi,
            max_len=self.max_len,
            where=where,
            reader="the student",
        )


def fold_rows(rows: torch.Tensor, table_rows: int) -> torch.Tensor:
    """Map embedding rows into ``table_rows`` rows: 0 and 1 stay, ``r >= 2`` -> ``2 + (r-2) % (table_rows-2)``.

    INT64 any shape -> same shape. Exports to ONNX as ``Sub``/``Mod``/``Where`` (no loop).
    """
    hashed = torch.remainder(rows - 2, table_rows - 2) + 2
    return torch.where(rows <= OOV_ROW, rows, hashed)


class StudentMLP(nn.Module):
    """Embedding-MLP student (see the module docstring).

    ``forward(dense B x N, ids B x C, multi B x M x L) -> logits B`` on the full preprocessed
    tensors. Two optional interaction blocks feed the MLP beside the embeddings:

    * ``dot_interaction`` (:class:`PairwiseDots`): dot products of every pair of the ``F``
      feature vectors (one per categorical feature, one pooled per multi-valued feature),
      ``B x F(F-1)/2``: e.g. the pooled recent-history embedding against the candidate item,
      the history's categories against the candidate's category (shared tables), the context
      against the category.
    * ``history_match`` (:class:`HistoryMatch`): for every multi-valued feature
      ``log1p(length)``, and for every (multi-valued, categorical) pair that share a table
      ``log1p(#entries equal to the candidate's id)`` (candidate item in the recent history,
      recent items of its category), table by table, on the unfolded rows (out-of-vocabulary
      never matches).

    Example::

        inputs = StudentInputs.from_preprocessor(pre, max_rows_per_table=20_000)
        model = StudentMLP(inputs, embedding_dim=8, hidden=(64, 32), dot_interaction=True)
        mb = pre.transform(raw)
        logits = model(torch.from_numpy(mb.dense), torch.from_numpy(mb.ids), torch.from_numpy(mb.multi))
    """

    dense_index: torch.Tensor  # buffer: student columns of the dense block

    def __init__(
        self,
        inputs: StudentInputs,
        *,
        embedding_dim: int,
        hidden: tuple[int, ...],
        pooling: str = "mean",
        dot_interaction: bool = False,
        history_match: bool = False,
        id_bias: bool = False,
        id_bias_max_rows: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "sum"):
            raise ValueError(f"pooling must be 'mean' or 'sum', got {pooling!r}")
        self.inputs = inputs
        self.pooling = pooling
        self.dot_interaction = dot_interaction
        self.history_match = history_match
        self.id_bias = id_bias
        self.id_bias_max_rows = id_bias_max_rows
        self.dropout = dropout
        self.embedding_dim = D = embedding_dim
        self.register_buffer("dense_index", torch.tensor(inputs.dense_columns, dtype=torch.int64))
        self.keys: list[str] = []
        self.embeddings = nn.ModuleDict()
        for k, t in enumerate(inputs.tables):
            key = f"t{k}_{_SAFE.sub('_', t.name)}"
            self.keys.append(key)
            # a table read by multi-valued features gets one extra all-zero row (index t.rows) that
            # padding slots look up, so pooling is a plain sum: no B x L x D mask multiply
            emb = (
                nn.Embedding(t.rows + 1, D, padding_idx=t.rows)
                if t.multi_columns
                else nn.Embedding(t.rows, D)
            )
            with torch.no_grad():
                nn.init.normal_(emb.weight, std=0.05)
                if t.multi_columns:
                    emb.weight[t.rows].zero_()
            self.embeddings[key] = emb
            self.register_buffer(f"{key}_cat", torch.tensor(t.cat_columns, dtype=torch.int64))
            self.register_buffer(f"{key}_multi", torch.tensor(t.multi_columns, dtype=torch.int64))
        # id_bias: one scalar per id of every categorical feature, folded only above id_bias_max_rows
        self.biases = nn.ModuleDict()
        self.bias_rows: dict[str, int] = {}
        for key, t in zip(self.keys, inputs.tables, strict=True):
            if id_bias and t.cat_columns:
                rows = t.source_rows if id_bias_max_rows is None else min(t.source_rows, id_bias_max_rows)
                bias = nn.Embedding(rows, 1)
                nn.init.zeros_(bias.weight)
                self.biases[key] = bias
                self.bias_rows[key] = rows
        F = inputs.n_cat_features + inputs.n_multi_features  # feature vectors
        # interaction blocks: index buffers only, none of them persistent (see load_student)
        self.dots = PairwiseDots(F) if dot_interaction else None
        self.history = (
            HistoryMatch(
                length_columns=[m for t in inputs.tables for m in t.multi_columns],
                pairs=[(m, c) for t in inputs.tables for m in t.multi_columns for c in t.cat_columns],
            )
            if history_match
            else None
        )
        in_dim = len(inputs.dense_columns) + D * F
        for block in (self.dots, self.history):
            in_dim += block.out_dim if block is not None else 0
        if id_bias:
            in_dim += inputs.n_cat_features
        if in_dim == 0:
            raise DataError("student: no serving-time feature left; every feature is teacher_only")
        self.mlp = FeedForward(in_dim, hidden, dropout=dropout)
        self.logit = nn.Linear(self.mlp.out_dim, 1)

    def _lookup(self, k: int, rows: torch.Tensor) -> torch.Tensor:
        """INT64 rows of table ``k`` (any shape S) -> FP32 ``S x D``, folded if the table is."""
        t = self.inputs.tables[k]
        if t.folded:
            rows = fold_rows(rows, t.rows)
        out: torch.Tensor = self.embeddings[self.keys[k]](rows)
        return out

    def feature_vectors(self, ids: torch.Tensor, multi: torch.Tensor) -> torch.Tensor:
        """INT64 ``B x C``, ``B x M x L`` -> FP32 ``B x F x D``: table by table, categorical then pooled multi."""
        vecs: list[torch.Tensor] = []
        for k, key in enumerate(self.keys):
            t = self.inputs.tables[k]
            if t.cat_columns:
                rows = ids.index_select(1, getattr(self, f"{key}_cat"))  # B x kc
                vecs.append(self._lookup(k, rows))  # B x kc x D
            if t.multi_columns:
                rows = multi.index_select(1, getattr(self, f"{key}_multi"))  # B x km x L
                pad = rows == PAD_ROW  # B x km x L
                folded = fold_rows(rows, t.rows) if t.folded else rows
                look = torch.where(pad, torch.full_like(rows, t.rows), folded)  # padding -> the zero row
                pooled = self.embeddings[key](look).sum(2)  # B x km x L x D -> B x km x D
                if self.pooling == "mean":
                    count = (~pad).sum(2, keepdim=True).clamp(min=1)  # B x km x 1
                    pooled = pooled / count.to(pooled.dtype)
                vecs.append(pooled)
        if not vecs:  # dense features only
            return torch.zeros(ids.shape[0], 0, self.embedding_dim)
        return torch.cat(vecs, dim=1)

    def forward(self, dense: torch.Tensor, ids: torch.Tensor, multi: torch.Tensor) -> torch.Tensor:
        """FP32 ``B x N``, INT64 ``B x C``, INT64 ``B x M x L`` (full contract widths) -> FP32 logits ``B``."""
        B = dense.shape[0]
        parts: list[torch.Tensor] = []
        if self.inputs.dense_columns:
            parts.append(dense.index_select(1, self.dense_index))  # B x Nd
        vecs = self.feature_vectors(ids, multi)  # B x F x D
        parts.append(vecs.reshape(B, -1))  # B x F*D
        if self.dots is not None:
            parts.append(self.dots(vecs))  # B x F(F-1)/2
        if self.history is not None:
            parts.append(self.history(ids, multi))  # B x (Mm + P)
        for k, key in enumerate(self.keys):
            if key in self.biases:  # B x kc scalars
                rows = ids.index_select(1, getattr(self, f"{key}_cat"))
                if self.bias_rows[key] < self.inputs.tables[k].source_rows:
                    rows = fold_rows(rows, self.bias_rows[key])
                parts.append(self.biases[key](rows).squeeze(-1))
        x = torch.cat(parts, dim=1)
        out: torch.Tensor = self.logit(self.mlp(x)).squeeze(-1)
        return out

    def predict_logits(self, batch: ModelBatch, *, batch_rows: int = 16_384) -> np.ndarray:
        """FP32 logits ``[B]`` for a numpy batch, in eval mode and chunks of ``batch_rows``."""
        was_training = self.training
        self.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(batch), batch_rows):
                b = batch.slice(start, start + batch_rows)
                out.append(self(*batch_tensors(b)).numpy())
        self.train(was_training)
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, dtype=np.float32)


def batch_tensors(b: ModelBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dense, ids, multi)`` torch views of a numpy :class:`ModelBatch` (no copy when contiguous)."""
    return (
        torch.from_numpy(np.ascontiguousarray(b.dense)),
        torch.from_numpy(np.ascontiguousarray(b.ids)),
        torch.from_numpy(np.ascontiguousarray(b.multi)),
    )


# -- checkpoint -------------------------------------------------------------------------------------
CHECKPOINT_FILE = "model.pt"
CHECKPOINT_FORMAT = "recdistill.student_mlp/3"
# /1: embeddings + MLP only (no interaction blocks); still loads, as a model without them
# /2: the interaction blocks' index buffers were stored in the weights; still loads, ignoring them
# /3: those buffers are derived from the inputs when the model is built, not stored
READABLE_FORMATS = ("recdistill.student_mlp/1", "recdistill.student_mlp/2", CHECKPOINT_FORMAT)
# entries of a /2 state_dict that /3 rebuilds from the inputs instead of loading
_DERIVED_IN_V2 = ("dot_index", "match_multi", "match_cat", "length_multi")


def checkpoint_dict(
    model: StudentMLP, *, embedding_dim: int, hidden: tuple[int, ...], fingerprint: str
) -> dict[str, Any]:
    """What ``model.pt`` holds: the architecture, the preprocessing fingerprint and the weights."""
    return {
        "format": CHECKPOINT_FORMAT,
        "inputs": model.inputs.to_dict(),
        "architecture": {
            "embedding_dim": embedding_dim,
            "hidden": list(hidden),
            "pooling": model.pooling,
            "dot_interaction": model.dot_interaction,
            "history_match": model.history_match,
            "id_bias": model.id_bias,
            "id_bias_max_rows": model.id_bias_max_rows,
            "dropout": model.dropout,
        },
        "preprocess_fingerprint": fingerprint,
        "state_dict": model.state_dict(),
    }


def load_student(path: str | Path) -> tuple[StudentMLP, str]:
    """``(model in eval mode, preprocess fingerprint)`` from a ``model.pt`` (a file or its folder).

    Reads formats ``recdistill.student_mlp/1`` (no interaction blocks), ``/2`` (index buffers
    stored with the weights) and ``/3``.
    """
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_FILE
    if not p.is_file():
        raise ArtefactError(f"{p}: student checkpoint not found; run `recdistill distill-mlp` first")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a truncated or foreign file
        raise ArtefactError(f"{p}: not a readable student checkpoint ({e})") from e
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if fmt not in READABLE_FORMATS:
        raise ArtefactError(
            f"{p}: not a recdistill MLP student checkpoint this version reads (format {fmt!r}, "
            f"expected one of {list(READABLE_FORMATS)}); retrain it with `recdistill distill-mlp`"
        )
    arch = ckpt["architecture"]
    model = StudentMLP(
        StudentInputs.from_dict(ckpt["inputs"]),
        embedding_dim=int(arch["embedding_dim"]),
        hidden=tuple(int(h) for h in arch["hidden"]),
        pooling=str(arch["pooling"]),
        dot_interaction=bool(arch.get("dot_interaction", False)),
        history_match=bool(arch.get("history_match", False)),
        id_bias=bool(arch.get("id_bias", False)),
        id_bias_max_rows=None if arch.get("id_bias_max_rows") is None else int(arch["id_bias_max_rows"]),
        dropout=float(arch.get("dropout", 0.0)),
    )
    state = ckpt["state_dict"]
    if fmt != CHECKPOINT_FORMAT:  # /1 lacks the /2 index buffers, /2 has them: both rebuild them
        state = {k: v for k, v in state.items() if k not in _DERIVED_IN_V2}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ArtefactError(f"{p}: weights do not fit the stored architecture ({e})") from e
    model.eval()
    return model, str(ckpt["preprocess_fingerprint"])
