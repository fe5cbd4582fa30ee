"""Preprocessing fitted on the training split, saved as an artefact, loaded by training and serving.

Fit (streaming Polars over the training file):
  * id features: a vocabulary of ids seen at least ``min_count`` times (sorted, so the same input
    always gives the same rows), or ``hash_buckets`` rows reached through a fixed 64-bit mix.
    Features with ``vocab_from`` share the owner's table; their ids count towards its vocabulary.
    Embedding rows: 0 = missing/padding, 1 = out-of-vocabulary, 2.. = ids.
  * dense features: signed log1p (``transform: log1p``) then standardisation with the training
    mean and standard deviation; a missing value (NaN/null) becomes 0 and, for features that had
    missing values in training, sets a missing-indicator column appended after the dense block.

``transform`` works on numpy raw tensors only (no Polars, no torch), which is what the Triton
Python backend runs. At 128 rows a per-feature chain of small numpy calls costs more in call
overhead than in work, so ``transform`` maps each whole id tensor with ONE gather from tables built
at load time (:class:`_GatherPlan`: the direct tables of every vocabulary's
:class:`~recdistill.data.idmap.IdMap`, side by side); :meth:`Preprocessor._transform_reference`
is the plain per-feature definition it must equal bit for bit (tests check it; it also produces
the error messages for bad ids). Artefact layout (``preprocess/``): ``preprocessor.json`` +
``vocab/<table>.npy`` (the sorted ids of each IdMap); the gather tables are derived from it,
never saved.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recdistill.data.batch import MISSING_ID, PAD_ROW, ModelBatch, RawBatch, Targets
from recdistill.data.idmap import IdMap, table_index, table_size
from recdistill.data.raw import id_series, max_multi_len, raw_batch_from_frame, targets_from_frame
from recdistill.data.readers import Format, iter_frames, read_frame, scan
from recdistill.data.schema import FeatureSpec, Schema
from recdistill.errors import ArtefactError, DataError
from recdistill.io_utils import atomic_path

PREPROCESSOR_FILE = "preprocessor.json"
ARTEFACT_VERSION = 1
# Every vocabulary whose ids are below idmap.TABLE_MAX_ID gets a direct table (int64, <= 32 MiB),
# however sparse: no density bound, unlike the GBDT featurizer's (its tables exist per encoder and
# per history feature). Both policies are kept as they were; the lookup is the same IdMap.
_MAX_SLOTS_PER_KEY: int | None = None
_MIX_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_MUL2 = np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fixed, well-spread hash of int64 ids (as uint64)."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _MIX_MUL1
        z = (z ^ (z >> np.uint64(27))) * _MIX_MUL2
    return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class DenseStats:
    mean: float
    std: float
    has_missing: bool


class Preprocessor:
    """Fitted preprocessing; see the module docstring. Build with :meth:`fit` or :meth:`load`."""

    def __init__(
        self,
        schema: Schema,
        dense_stats: dict[str, DenseStats],
        vocabs: dict[str, np.ndarray],
        hash_buckets: dict[str, int],
    ) -> None:
        self.schema = schema
        self.dense_stats = dense_stats
        self.vocabs = vocabs  # table name -> sorted int64 raw ids
        self.hash_buckets = hash_buckets  # table name -> buckets
        self.max_len = max_multi_len(schema)
        dense = schema.dense
        self._mean = np.array([dense_stats[f.name].mean for f in dense], dtype=np.float32)
        self._std = np.array([dense_stats[f.name].std for f in dense], dtype=np.float32)
        self._log1p = np.array([f.transform == "log1p" for f in dense], dtype=bool)
        self._indicator_cols = [j for j, f in enumerate(dense) if dense_stats[f.name].has_missing]
        self._log1p_cols = np.flatnonzero(self._log1p)
        self._dense, self._categorical, self._multi = dense, schema.categorical, schema.multi
        self.id_maps: dict[str, IdMap] = {}  # table name -> its lookup (direct tables: views into _rows)
        self._segments: dict[str, tuple[int, int]] = {}  # vocabulary -> (start, last) in _rows
        self._rows = self._build_row_table()  # also fills id_maps and _segments
        self._plans = {
            (kind, student): self._plan(kind, student=student)
            for kind in ("categorical", "multi")
            for student in (False, True)
        }

    # -- shape facts models need ------------------------------------------------------------
    @property
    def dense_dim(self) -> int:
        return len(self.schema.dense) + len(self._indicator_cols)

    def table_name(self, feature: str) -> str:
        f = self.schema.feature(feature)
        return f.vocab_from or f.name

    def table_rows(self, feature: str) -> int:
        t = self.table_name(feature)
        if t in self.hash_buckets:
            return 2 + self.hash_buckets[t]
        return self.id_maps[t].n_rows

    def dense_columns(self, *, student: bool = False) -> list[int]:
        """Indices into ``ModelBatch.dense`` of the (student-visible) values and indicators."""
        dense = self.schema.dense
        keep = [j for j, f in enumerate(dense) if not (student and f.teacher_only)]
        ind = [
            len(dense) + k
            for k, j in enumerate(self._indicator_cols)
            if not (student and dense[j].teacher_only)
        ]
        return keep + ind

    def id_columns(self, kind: str, *, student: bool = False) -> list[int]:
        """Indices into ``ModelBatch.ids`` (kind ``categorical``) or ``.multi`` (``multi``)."""
        feats = self.schema.by_kind(kind)
        return [j for j, f in enumerate(feats) if not (student and f.teacher_only)]

    # -- transform ----------------------------------------------------------------------------
    def transform(self, raw: RawBatch, *, student_only: bool = False) -> ModelBatch:
        """Raw request tensors -> model tensors (numpy only; used by training and serving).

        ``raw``: dense FP32 ``[B, n_dense]``, ids INT64 ``[B, n_categorical]``, multi INT64
        ``[B, n_multi, max_len]``; returns dense FP32 ``[B, dense_dim]``, ids and multi INT64 of
        the input shapes (see :mod:`recdistill.data.batch`). ``student_only`` skips the lookups of
        ``teacher_only`` id features (their columns come back as padding rows), which a served
        student never reads: same output for the student.

        Bit for bit equal to :meth:`_transform_reference`; inputs the fast path does not take
        (ids below -1, other id dtypes) go through the reference, which raises the same errors.
        """
        self._check_shapes(raw)
        if not raw.ids_well_formed():
            return self._transform_reference(raw, student_only=student_only)
        dense = self._dense_block(raw.dense)
        ids = self._gather(raw.ids, self._plans["categorical", student_only])
        multi = self._gather(raw.multi, self._plans["multi", student_only])
        return ModelBatch(dense=dense, ids=ids, multi=multi)

    def _check_shapes(self, raw: RawBatch) -> None:
        n = len(raw)
        _check_shape("dense", raw.dense, (n, len(self._dense)))
        _check_shape("ids", raw.ids, (n, len(self._categorical)))
        _check_shape("multi", raw.multi, (n, len(self._multi), self.max_len))

    def _dense_block(self, raw_dense: np.ndarray) -> np.ndarray:
        """FP32 ``[B, dense_dim]``: the reference's dense arithmetic (same ops on the same operand
        layouts, so the same bits), written into one output array instead of concatenated."""
        x = raw_dense.astype(np.float32, copy=True)
        missing = np.isnan(x)
        if np.isinf(x).any():
            raise DataError("dense: holds inf values; expected finite numbers or NaN for missing")
        if self._log1p_cols.size:
            v = x[:, self._log1p_cols]  # [B, n_log1p] contiguous, as x[:, mask] in the reference
            x[:, self._log1p_cols] = np.sign(v) * np.log1p(np.abs(v))
        d = x.shape[1]
        out = np.empty((x.shape[0], d + len(self._indicator_cols)), dtype=np.float32)
        xs = out[:, :d]
        np.subtract(x, self._mean, out=xs)
        np.divide(xs, self._std, out=xs)
        xs[missing] = 0.0
        if self._indicator_cols:
            out[:, d:] = missing[:, self._indicator_cols]
        return out

    def _gather(self, x: np.ndarray, plan: _GatherPlan) -> np.ndarray:
        """Embedding rows of a whole id tensor ``[B, C]`` / ``[B, C, L]`` in one gather:
        ``rows[..., j, ...] = table[min(start_j + id, last_j)]`` (see :meth:`_build_row_table`;
        id -1 -> the segment's PAD_ROW slot, unseen and huge ids -> its OOV_ROW slot)."""
        rows = self._rows[table_index(x, plan.start, plan.last)]
        for j, f in plan.fallback:
            rows[:, j] = self._lookup(f, x[:, j])
        return rows

    def _transform_reference(self, raw: RawBatch, *, student_only: bool = False) -> ModelBatch:
        """The per-feature definition of :meth:`transform` (kept as its reference and error path)."""
        self._check_shapes(raw)
        x = raw.dense.astype(np.float32, copy=True)
        missing = np.isnan(x)
        if np.isinf(x).any():
            raise DataError("dense: holds inf values; expected finite numbers or NaN for missing")
        x[:, self._log1p] = np.sign(x[:, self._log1p]) * np.log1p(np.abs(x[:, self._log1p]))
        x = (x - self._mean) / self._std
        x[missing] = 0.0
        dense = np.concatenate([x, missing[:, self._indicator_cols].astype(np.float32)], axis=1)
        ids = np.empty_like(raw.ids)
        for j, f in enumerate(self._categorical):
            ids[:, j] = PAD_ROW if (student_only and f.teacher_only) else self._lookup(f, raw.ids[:, j])
        multi = np.empty_like(raw.multi)
        for j, f in enumerate(self._multi):
            multi[:, j, :] = (
                PAD_ROW if (student_only and f.teacher_only) else self._lookup(f, raw.multi[:, j, :])
            )
        return ModelBatch(dense=np.ascontiguousarray(dense, dtype=np.float32), ids=ids, multi=multi)

    def _build_row_table(self) -> np.ndarray:
        """One INT64 table: a first 1-slot segment ``[PAD_ROW]`` for columns that are all padding,
        then per vocabulary with a direct table its :class:`IdMap` table ``[PAD_ROW, row of id 0,
        ..., row of the largest id, OOV_ROW]`` (indexed by id + 1). Fills ``self.id_maps`` with
        maps whose own table is their segment (``_lookup`` reads them), so the tables exist once
        in memory, and ``_segments``."""
        maps = {name: IdMap(v) for name, v in self.vocabs.items()}
        sizes = {name: table_size(m, max_slots_per_key=_MAX_SLOTS_PER_KEY) for name, m in maps.items()}
        table = np.empty(1 + sum(s for s in sizes.values() if s is not None), dtype=np.int64)
        table[0] = PAD_ROW
        at = 1
        for name, m in maps.items():
            size = sizes[name]
            if size is None:
                self.id_maps[name] = m  # sorted search
                continue
            self.id_maps[name] = m.with_table(out=table[at : at + size], max_slots_per_key=_MAX_SLOTS_PER_KEY)
            self._segments[name] = (at + 1, at + size - 1)
            at += size
        return table

    def _plan(self, kind: str, *, student: bool) -> _GatherPlan:
        """Per column of the ``kind`` id tensor: where its segment starts and ends in the row table;
        hashed and large-id vocabularies are mapped column by column (``fallback``)."""
        feats = self.schema.by_kind(kind)
        start = np.ones(len(feats), dtype=np.int64)  # default: the all-padding segment [0]
        last = np.zeros(len(feats), dtype=np.uint64)
        fallback = []
        for j, f in enumerate(feats):
            if student and f.teacher_only:
                continue
            seg = self._segments.get(self.table_name(f.name))
            if seg is None:
                fallback.append((j, f))
            else:
                start[j], last[j] = seg[0], seg[1]
        if kind == "multi":  # [M, max_len]: a contiguous operand broadcasts fast over [B, M, L]
            start = np.ascontiguousarray(np.repeat(start[:, None], self.max_len, axis=1))
            last = np.ascontiguousarray(np.repeat(last[:, None], self.max_len, axis=1))
        return _GatherPlan(start, last, tuple(fallback))

    def _lookup(self, f: FeatureSpec, x: np.ndarray) -> np.ndarray:
        if (x < MISSING_ID).any():
            bad = x[x < MISSING_ID]
            raise DataError(
                f"feature {f.name!r}: {bad.size} negative ids (e.g. {int(bad[0])}); ids must be >= 0, -1 = missing"
            )
        table = f.vocab_from or f.name
        if table not in self.hash_buckets:
            return self.id_maps[table].lookup(x)
        rows = 2 + (mix64(x) % np.uint64(self.hash_buckets[table])).astype(np.int64)
        return np.where(x == MISSING_ID, PAD_ROW, rows).astype(np.int64, copy=False)

    # -- fit ------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, train_path: str | Path, schema: Schema, *, fmt: Format | None = None) -> Preprocessor:
        lf = scan(train_path, fmt=fmt)
        stats = _fit_dense(lf, schema, str(train_path))
        vocabs: dict[str, np.ndarray] = {}
        buckets: dict[str, int] = {}
        for f in schema.features:
            if not f.is_id or f.vocab_from is not None:
                continue
            if f.hash_buckets is not None:
                buckets[f.name] = f.hash_buckets
                continue
            users = [f, *[g for g in schema.features if g.vocab_from == f.name]]
            vocabs[f.name] = _fit_vocab(lf, users, f.min_count, str(train_path))
        return cls(schema, stats, vocabs, buckets)

    # -- save / load ----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        out = Path(directory)
        with atomic_path(out) as tmp:
            (tmp / "vocab").mkdir(parents=True)
            for name, v in self.vocabs.items():
                np.save(tmp / "vocab" / f"{name}.npy", v)
            meta: dict[str, Any] = {
                "artefact_version": ARTEFACT_VERSION,
                "schema": self.schema.to_dict(),
                "dense_stats": {k: vars(v) for k, v in self.dense_stats.items()},
                "vocab_sizes": {k: int(v.shape[0]) for k, v in self.vocabs.items()},
                "hash_buckets": self.hash_buckets,
            }
            (tmp / PREPROCESSOR_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Preprocessor:
        d = Path(directory)
        meta_path = d / PREPROCESSOR_FILE
        if not meta_path.exists():
            raise ArtefactError(f"{d}: no {PREPROCESSOR_FILE}; run `recdistill preprocess` first")
        meta = json.loads(meta_path.read_text())
        if meta.get("artefact_version") != ARTEFACT_VERSION:
            raise ArtefactError(
                f"{meta_path}: artefact version {meta.get('artefact_version')} != {ARTEFACT_VERSION}; refit preprocessing"
            )
        schema = Schema.from_dict(meta["schema"], source=str(meta_path))
        vocabs = {}
        for name, size in meta["vocab_sizes"].items():
            v = np.load(d / "vocab" / f"{name}.npy")
            if v.shape != (size,) or v.dtype != np.int64:
                raise ArtefactError(
                    f"{d}/vocab/{name}.npy: expected int64[{size}], got {v.dtype}{list(v.shape)}"
                )
            if size > 1 and not bool((v[1:] > v[:-1]).all()):
                raise ArtefactError(
                    f"{d}/vocab/{name}.npy: ids are not sorted and distinct; refit preprocessing"
                )
            vocabs[name] = v
        stats = {k: DenseStats(**v) for k, v in meta["dense_stats"].items()}
        return cls(schema, stats, vocabs, {k: int(v) for k, v in meta["hash_buckets"].items()})


@dataclass(frozen=True)
class _GatherPlan:
    """How one id tensor maps to embedding rows with one gather: for column ``j`` (shape ``[C]``
    for ids, ``[C, max_len]`` for multi) ``start`` is the row-table index of id 0 and ``last`` the
    index of the segment's OOV slot; ``fallback`` columns are looked up one by one afterwards."""

    start: np.ndarray  # int64
    last: np.ndarray  # uint64
    fallback: tuple[tuple[int, FeatureSpec], ...]


def _check_shape(name: str, a: np.ndarray, expected: tuple[int, ...]) -> None:
    if a.shape != expected:
        raise DataError(f"{name}: expected shape {list(expected)}, got {list(a.shape)}")


def _fit_dense(lf: pl.LazyFrame, schema: Schema, source: str) -> dict[str, DenseStats]:
    if not schema.dense:
        return {}
    exprs = []
    for f in schema.dense:
        c = pl.col(f.name).cast(pl.Float64)
        c = c.fill_nan(None)
        if f.transform == "log1p":
            c = c.sign() * c.abs().log1p()
        exprs += [
            c.mean().alias(f"{f.name}__mean"),
            c.std().alias(f"{f.name}__std"),
            c.null_count().alias(f"{f.name}__nulls"),
        ]
    row = lf.select(exprs).collect().row(0, named=True)
    out = {}
    for f in schema.dense:
        mean, std = row[f"{f.name}__mean"], row[f"{f.name}__std"]
        if mean is None:
            raise DataError(f"{source}: dense column {f.name!r} has no values in the training split")
        std = std if std is not None and std > 1e-12 else 1.0
        out[f.name] = DenseStats(mean=float(mean), std=float(std), has_missing=row[f"{f.name}__nulls"] > 0)
    return out


def _fit_vocab(lf: pl.LazyFrame, feats: list[FeatureSpec], min_count: int, source: str) -> np.ndarray:
    parts = []
    for f in feats:
        col = pl.col(f.name)
        if f.kind == "multi":
            col = col.list.tail(f.max_len).explode()
        parts.append(lf.select(col.alias("id")))
    ids = pl.concat(parts).collect()
    series = id_series(ids.get_column("id"), f"{source}: column {feats[0].name!r}").drop_nulls()
    # null is "missing" here, and nulls are gone: count every value left (a literal -1 in a file
    # `validate` never saw included, as before)
    return IdMap.fit(series.to_numpy(), min_count=min_count, missing=None).keys


def load_split(
    path: str | Path, pre: Preprocessor, *, fmt: Format | None = None
) -> tuple[ModelBatch, Targets]:
    """A whole split in memory, preprocessed (training and evaluation on demo-sized data)."""
    df = read_frame(path, fmt=fmt)
    raw = raw_batch_from_frame(df, pre.schema, source=str(path))
    return pre.transform(raw), targets_from_frame(df, pre.schema, source=str(path))


def iter_split(
    path: str | Path, pre: Preprocessor, *, batch_rows: int, fmt: Format | None = None
) -> Iterator[tuple[ModelBatch, Targets]]:
    """A split in chunks of ``batch_rows`` rows with bounded memory (scoring, large evaluation)."""
    for df in iter_frames(path, batch_rows=batch_rows, fmt=fmt):
        raw = raw_batch_from_frame(df, pre.schema, source=str(path))
        yield pre.transform(raw), targets_from_frame(df, pre.schema, source=str(path))


def preprocess_fingerprint(pre: Preprocessor) -> str:
    """sha256 of everything :meth:`Preprocessor.transform` depends on (schema, stats, vocabularies).

    Equal for a fitted preprocessor and the same one after ``save``/``load``; different as soon
    as one vocabulary id, hash size or dense statistic differs.
    """
    h = hashlib.sha256()
    meta = {
        "schema": pre.schema.to_dict(),
        "dense_stats": {k: vars(v) for k, v in sorted(pre.dense_stats.items())},
        "hash_buckets": dict(sorted(pre.hash_buckets.items())),
        "vocab_sizes": {k: int(v.shape[0]) for k, v in sorted(pre.vocabs.items())},
    }
    h.update(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(pre.vocabs):
        h.update(name.encode())
        h.update(pre.vocabs[name].astype("<i8", copy=False).tobytes())
    return h.hexdigest()
