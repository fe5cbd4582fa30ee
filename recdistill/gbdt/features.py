"""Raw request tensors -> the GBDT student's feature matrix, fitted on the training split.

``GbdtFeaturizer.transform(raw) -> X`` FP32 ``[B, n_features]`` is numpy only and deterministic;
training and serving run the same code from the same saved artefact. ``teacher_only`` features
are never read. Columns, in this order (names in :attr:`GbdtFeaturizer.feature_names`):

  dense ``d``         ``d``                 raw value (trees need no scaling), NaN = missing
  categorical ``c``   ``c__freq``           share of training rows with this id (0 unseen, NaN missing)
                      ``c__cat``            small vocabularies (<= ``max_cat_levels`` ids): a LightGBM
                                            native categorical code 0..K-1 (NaN missing/unseen)
                      ``c__te_click``       larger ones: smoothed click mean of the id
                      ``c__te_teacher``     ... and teacher-probability mean (distilled students only)
  multi ``m``         ``m__len``            number of ids in the list
                      ``m__te_click``       mean over the list of each member id's click encoding
                                            (click rate of rows whose list holds the id): affinity
                      ``m__te_teacher``     same with the teacher probability (distilled only)
                      ``m__has_<c>``        times the row's ``c`` id is in the list, when ``m`` shares
                                            ``c``'s vocabulary (``vocab_from``): "candidate in history"
                      ``m__same_<a>``       list members whose attribute ``a`` equals the row's ``a``,
                                            where ``a`` is a near-function of ``c`` learned on training
                                            rows (item -> category): "history of this category"

Mean encodings of training rows are out of fold (by request, see :mod:`.encoding`): fit with
:meth:`GbdtFeaturizer.fit_transform`, which returns the training matrix with those columns.
Artefact: ``gbdt_featurizer.json`` + ``arrays/*.npy`` (:meth:`save` / :meth:`load`).

Speed: a served request has ~128 rows, where a chain of small numpy calls per feature costs more
in call overhead than in work. ``transform`` therefore reads precomputed tables (:class:`_FastTables`,
derived from the encoders whenever a featurizer is built or loaded, never saved): every column of
a categorical depends only on the id's state (missing / unseen / key ``k``), so all categorical
columns come from one gather. :meth:`GbdtFeaturizer._transform_reference` is the per-feature
definition; the fast path equals it bit for bit (tests check it) and hands it the inputs it does
not take (ids below -1, non-int64 ids), so errors are the reference's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recdistill.config.gbdt import GbdtStudentConfig
from recdistill.data.batch import F32, MISSING_ID, RawBatch
from recdistill.data.raw import max_multi_len
from recdistill.data.schema import Schema
from recdistill.errors import ArtefactError, DataError
from recdistill.gbdt import encoding as enc
from recdistill.gbdt.encoding import F64, I64, MeanEncoding
from recdistill.io_utils import atomic_path

FEATURIZER_FILE = "gbdt_featurizer.json"
ARTEFACT_VERSION = 1
TARGETS: tuple[str, ...] = ("click", "teacher")


@dataclass(frozen=True)
class CategoricalEncoder:
    """One student categorical, read from ``raw.ids[:, column]``; ``keys`` sorted training ids."""

    name: str
    column: int
    native: bool
    keys: I64
    freq: F64
    means: dict[str, MeanEncoding]  # "click" / "teacher" -> encoding over keys (empty when native)


@dataclass(frozen=True)
class AttributeMap:
    """``attribute`` (a categorical at ``raw.ids[:, column]``) of each id in ``keys``: ``values``."""

    attribute: str
    column: int
    keys: I64
    values: I64


@dataclass(frozen=True)
class MultiEncoder:
    """One student multi-valued feature, read from ``raw.multi[:, column, :max_len]``."""

    name: str
    column: int
    max_len: int
    keys: I64
    means: dict[str, MeanEncoding]
    match: tuple[str, int] | None  # (categorical sharing the vocabulary, its raw.ids column)
    attributes: tuple[AttributeMap, ...]


class GbdtFeaturizer:
    """Fitted featurizer; see the module docstring. Build with :meth:`fit_transform` or :meth:`load`."""

    def __init__(
        self,
        schema: Schema,
        dense: tuple[tuple[str, int], ...],
        categorical: tuple[CategoricalEncoder, ...],
        multi: tuple[MultiEncoder, ...],
    ) -> None:
        self.schema = schema
        self.dense = dense  # (name, raw.dense column)
        self.categorical = categorical
        self.multi = multi
        self.max_len = max_multi_len(schema)
        names = [n for n, _ in dense]
        for c in categorical:
            names += [f"{c.name}__freq"] + (
                [f"{c.name}__cat"] if c.native else [f"{c.name}__te_{t}" for t in c.means]
            )
        for m in multi:
            names += [f"{m.name}__len"] + [f"{m.name}__te_{t}" for t in m.means]
            names += [f"{m.name}__has_{m.match[0]}"] if m.match else []
            names += [f"{m.name}__same_{a.attribute}" for a in m.attributes]
        self.feature_names: list[str] = names
        te = [f"{c.name}__te_{t}" for c in categorical for t in c.means]
        te += [f"{m.name}__te_{t}" for m in multi for t in m.means]
        self._te_cols = {n: i for i, n in enumerate(names) if n in te}  # out-of-fold overrides
        width = max((m.max_len for m in multi), default=0)  # the widest history read
        self._widths = (len(schema.dense), len(schema.categorical), len(schema.multi), width)
        self._fast = _FastTables(self)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def categorical_features(self) -> list[int]:
        """Indices of the native LightGBM categorical columns."""
        return [i for i, n in enumerate(self.feature_names) if n.endswith("__cat")]

    # -- transform ----------------------------------------------------------------------------
    def transform(self, raw: RawBatch) -> F32:
        """Raw request tensors -> ``X`` FP32 ``[B, n_features]`` with full-training encodings."""
        return self._transform(raw, oof=None)

    def _check_shapes(self, raw: RawBatch) -> None:
        n = len(raw)
        n_dense, n_cat, n_multi, width = self._widths
        for name, a, shape in (("dense", raw.dense, (n, n_dense)), ("ids", raw.ids, (n, n_cat))):
            if a.shape != shape:
                raise DataError(f"{name}: expected shape {list(shape)}, got {list(a.shape)}")
        # multi: [B, n_multi, >= max_len read]; a schema without multi features may send width 0 or 1
        if raw.multi.ndim != 3 or raw.multi.shape[:2] != (n, n_multi) or raw.multi.shape[2] < width:
            raise DataError(
                f"multi: expected shape [{n}, {n_multi}, {self.max_len}], got {list(raw.multi.shape)}"
            )

    def _transform(self, raw: RawBatch, oof: dict[str, F64] | None) -> F32:
        """``X [B, n_features]`` from the precomputed tables; ``oof`` replaces encoding columns."""
        self._check_shapes(raw)
        if not (_gatherable(raw.ids) and _gatherable(raw.multi)):
            return self._transform_reference(raw, oof)
        n = len(raw)
        fast = self._fast
        out = np.empty((n, self.n_features), dtype=np.float32)
        if self.dense:  # the reference stacks with float64 columns: the same round trip
            v = raw.dense[:, fast.dense_cols]
            out[:, : len(self.dense)] = v.astype(np.float64) if fast.dense_via_f64 else v
        if fast.src.size:
            pos = raw.ids + fast.start  # [B, C]; id -1 -> slot 0 of the column's segment
            upos = pos.view(np.uint64)  # ids past the table (and wrapped ones near 2**63) -> last
            np.minimum(upos, fast.last, out=upos)
            vals = np.take(fast.values, fast.states[pos], axis=0)  # [B, C, W]
            out[:, fast.dest] = np.take(vals.reshape(n, fast.width * raw.ids.shape[1]), fast.src, axis=1)
        for block, cols, keys, column in fast.cat_fallback:
            out[:, cols] = block[enc.id_states(keys, raw.ids[:, column])]
        for m in fast.multi:
            m.fill(out, raw)
        for key, values in (oof or {}).items():
            if key in self._te_cols:
                out[:, self._te_cols[key]] = values
        return out

    def _transform_reference(self, raw: RawBatch, oof: dict[str, F64] | None) -> F32:
        """The per-feature definition of :meth:`_transform` (its reference and error path)."""
        self._check_shapes(raw)
        n = len(raw)
        cols: list[np.ndarray] = [raw.dense[:, j] for _, j in self.dense]
        for c in self.categorical:
            ids = raw.ids[:, c.column]
            enc.check_ids(c.name, ids)
            idx = enc.lookup(c.keys, ids)
            missing = ids == MISSING_ID
            cols.append(np.where(missing, np.nan, np.where(idx >= 0, c.freq[np.maximum(idx, 0)], 0.0)))
            if c.native:
                cols.append(np.where(idx >= 0, idx, np.nan))
            for t, m in c.means.items():
                key = f"{c.name}__te_{t}"
                cols.append(oof[key] if oof is not None and key in oof else m.apply(idx, missing))
        for mf in self.multi:
            members = raw.multi[:, mf.column, : mf.max_len]  # [B, L]
            enc.check_ids(mf.name, members)
            present = members != MISSING_ID
            length = present.sum(axis=1)
            cols.append(length.astype(np.float64))
            idx = enc.lookup(mf.keys, members)
            for t, m in mf.means.items():
                key = f"{mf.name}__te_{t}"
                if oof is not None and key in oof:
                    cols.append(oof[key])
                    continue
                vals = np.where(present, m.apply(idx, ~present), 0.0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    cols.append(np.where(length > 0, vals.sum(axis=1) / length, np.nan))
            if mf.match is not None:
                cand = raw.ids[:, mf.match[1]]
                hit = present & (members == cand[:, None]) & (cand[:, None] != MISSING_ID)
                cols.append(hit.sum(axis=1).astype(np.float64))
            for amap in mf.attributes:
                pos = enc.lookup(amap.keys, members)
                attr = np.where(pos >= 0, amap.values[np.maximum(pos, 0)], MISSING_ID - 1)
                row_attr = raw.ids[:, amap.column]
                same = (attr == row_attr[:, None]) & (row_attr[:, None] != MISSING_ID)
                cols.append(same.sum(axis=1).astype(np.float64))
        if not cols:
            return np.zeros((n, 0), dtype=np.float32)
        return np.ascontiguousarray(np.stack(cols, axis=1), dtype=np.float32)

    # -- fit ------------------------------------------------------------------------------------
    @classmethod
    def fit_transform(
        cls,
        schema: Schema,
        raw: RawBatch,
        *,
        labels: F32,
        teacher_probs: F32 | None,
        groups: I64 | None,
        cfg: GbdtStudentConfig,
    ) -> tuple[GbdtFeaturizer, F32]:
        """Fit on ``N`` training rows and return ``(featurizer, X [N, n_features])`` (out of fold).

        ``labels [N]`` 0/1 or NaN (unlabelled transfer rows), ``teacher_probs [N]`` or None (hard
        baseline: no teacher encodings), ``groups [N]`` request ids deciding the folds (or None).
        """
        n = len(raw)
        targets: dict[str, F64] = {"click": labels.astype(np.float64)}
        if labels.shape != (n,):
            raise DataError(f"labels: expected shape [{n}], got {list(labels.shape)}")
        if teacher_probs is not None:
            if teacher_probs.shape != (n,):
                raise DataError(f"teacher_probs: expected shape [{n}], got {list(teacher_probs.shape)}")
            targets["teacher"] = teacher_probs.astype(np.float64)
        fold = enc.assign_folds(groups, n, cfg.oof_folds)
        oof: dict[str, F64] = {}
        dense = tuple((f.name, j) for j, f in enumerate(schema.dense) if not f.teacher_only)
        cat_col = {f.name: j for j, f in enumerate(schema.categorical)}
        student_cats = {f.name for f in schema.by_kind("categorical", student=True)}
        categorical = []
        for f in schema.by_kind("categorical", student=True):
            j = cat_col[f.name]
            ids = raw.ids[:, j]
            enc.check_ids(f.name, ids)
            keys, counts = enc.fit_keys(ids, cfg.min_id_count)
            native = keys.size <= cfg.max_cat_levels
            means: dict[str, MeanEncoding] = {}
            if not native:
                rows = ids != MISSING_ID
                idx = enc.lookup(keys, ids[rows])
                for t, values in targets.items():
                    m, o = enc.fit_mean_encoding(
                        idx, values[rows], fold[rows], keys.size, cfg.oof_folds, cfg.smoothing
                    )
                    means[t] = m
                    oof[f"{f.name}__te_{t}"] = _scatter(o, rows)
            freq = counts / max(n, 1)
            categorical.append(CategoricalEncoder(f.name, j, native, keys, freq.astype(np.float64), means))
        multi = []
        for j, f in enumerate(schema.multi):
            if f.teacher_only:
                continue
            members = raw.multi[:, j, : f.max_len]
            enc.check_ids(f.name, members)
            keys, _ = enc.fit_keys(members.ravel(), cfg.min_id_count)
            row, slot = np.nonzero(members != MISSING_ID)
            idx = enc.lookup(keys, members[row, slot])
            length = np.bincount(row, minlength=n)
            means = {}
            for t, values in targets.items():
                m, o = enc.fit_mean_encoding(
                    idx, values[row], fold[row], keys.size, cfg.oof_folds, cfg.smoothing
                )
                means[t] = m
                with np.errstate(invalid="ignore", divide="ignore"):
                    oof[f"{f.name}__te_{t}"] = np.where(
                        length > 0, np.bincount(row, weights=o, minlength=n) / length, np.nan
                    )
            match: tuple[str, int] | None = None
            attributes: tuple[AttributeMap, ...] = ()
            if cfg.history_match and f.vocab_from in student_cats:
                x = raw.ids[:, cat_col[f.vocab_from]]
                match = (f.vocab_from, cat_col[f.vocab_from])
                attributes = _attribute_maps(schema, raw, f.vocab_from, x, student_cats, cfg)
            multi.append(MultiEncoder(f.name, j, f.max_len, keys, means, match, attributes))
        feat = cls(schema, dense, tuple(categorical), tuple(multi))
        return feat, feat._transform(raw, oof)

    # -- save / load ----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``gbdt_featurizer.json`` + ``arrays/*.npy`` into ``directory`` (atomically)."""
        out = Path(directory)
        arrays: dict[str, np.ndarray] = {}

        def put(name: str, a: np.ndarray) -> str:
            arrays[name] = a
            return name

        def means_meta(prefix: str, means: dict[str, MeanEncoding]) -> dict[str, Any]:
            return {t: {"full": put(f"{prefix}_te_{t}", m.full), "prior": m.prior} for t, m in means.items()}

        cats = [
            {
                "name": c.name,
                "column": c.column,
                "native": c.native,
                "keys": put(f"cat{i}_keys", c.keys),
                "freq": put(f"cat{i}_freq", c.freq),
                "means": means_meta(f"cat{i}", c.means),
            }
            for i, c in enumerate(self.categorical)
        ]
        multis = [
            {
                "name": m.name,
                "column": m.column,
                "max_len": m.max_len,
                "keys": put(f"multi{i}_keys", m.keys),
                "means": means_meta(f"multi{i}", m.means),
                "match": list(m.match) if m.match else None,
                "attributes": [
                    {
                        "attribute": a.attribute,
                        "column": a.column,
                        "keys": put(f"multi{i}_attr{k}_keys", a.keys),
                        "values": put(f"multi{i}_attr{k}_values", a.values),
                    }
                    for k, a in enumerate(m.attributes)
                ],
            }
            for i, m in enumerate(self.multi)
        ]
        meta = {
            "artefact_version": ARTEFACT_VERSION,
            "schema": self.schema.to_dict(),
            "feature_names": self.feature_names,
            "dense": [list(d) for d in self.dense],
            "categorical": cats,
            "multi": multis,
            "arrays": {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()},
        }
        with atomic_path(out) as tmp:
            (tmp / "arrays").mkdir(parents=True)
            for name, a in arrays.items():
                np.save(tmp / "arrays" / f"{name}.npy", a, allow_pickle=False)
            (tmp / FEATURIZER_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | Path) -> GbdtFeaturizer:
        d = Path(directory)
        path = d / FEATURIZER_FILE
        if not path.is_file():
            raise ArtefactError(
                f"{d}: no {FEATURIZER_FILE}; train the GBDT student (`recdistill distill-gbdt`)"
            )
        meta = json.loads(path.read_text())
        if meta.get("artefact_version") != ARTEFACT_VERSION:
            raise ArtefactError(
                f"{path}: artefact version {meta.get('artefact_version')} != {ARTEFACT_VERSION}"
            )

        def arr(name: str) -> np.ndarray:
            dtype, shape = meta["arrays"][name]
            a = np.load(d / "arrays" / f"{name}.npy", allow_pickle=False)
            if str(a.dtype) != dtype or list(a.shape) != shape:
                raise ArtefactError(
                    f"{d}/arrays/{name}.npy: expected {dtype}{shape}, got {a.dtype}{list(a.shape)}"
                )
            return a

        def means(raw: dict[str, Any]) -> dict[str, MeanEncoding]:
            return {t: MeanEncoding(arr(v["full"]), float(v["prior"])) for t, v in raw.items()}

        schema = Schema.from_dict(meta["schema"], source=str(path))
        cats = tuple(
            CategoricalEncoder(
                c["name"], c["column"], c["native"], arr(c["keys"]), arr(c["freq"]), means(c["means"])
            )
            for c in meta["categorical"]
        )
        multis = tuple(
            MultiEncoder(
                m["name"],
                m["column"],
                m["max_len"],
                arr(m["keys"]),
                means(m["means"]),
                (m["match"][0], int(m["match"][1])) if m["match"] else None,
                tuple(
                    AttributeMap(a["attribute"], a["column"], arr(a["keys"]), arr(a["values"]))
                    for a in m["attributes"]
                ),
            )
            for m in meta["multi"]
        )
        feat = cls(schema, tuple((n, int(j)) for n, j in meta["dense"]), cats, multis)
        if feat.feature_names != meta["feature_names"]:
            raise ArtefactError(
                f"{path}: feature names do not match the encoders; the artefact is inconsistent"
            )
        return feat


NO_ATTRIBUTE = MISSING_ID - 1  # attribute of a history id that has none (never equals a row's)


def _gatherable(x: np.ndarray) -> bool:
    """INT64 ids all >= -1 (MISSING_ID): what the table path takes."""
    return x.dtype == np.int64 and (x.size == 0 or int(x.min()) >= MISSING_ID)


def _first(a: F64, k: int, what: str, *, empty: float | None = None) -> F64:
    """``a[:k]`` (what the reference reads for keys 0..k-1); ``empty`` fills an empty ``a``."""
    if a.size == 0 and empty is not None:
        return np.full(k, empty)
    if a.size < k:
        raise ArtefactError(f"featurizer {what}: {a.size} values for {k} keys; the artefact is inconsistent")
    return a[:k].astype(np.float64)


class _FastTables:
    """Tables built at load time so :meth:`GbdtFeaturizer.transform` makes few numpy calls.

    Categorical: encoder ``c`` with ``K`` keys becomes a block ``[K + 2, n_cols]`` (rows: missing,
    unseen, key 0..K-1) of ``values [R, W]`` (float64, NaN-padded to the widest encoder). ``states``
    holds per ``raw.ids`` column ``j`` a segment of direct lookups "id -> its row in ``values``",
    read as ``states[min(id + start[j], last[j])]`` (uint64 compare: wrapped huge ids land on
    ``last``, the "unseen" slot), so one gather maps all columns; ``src`` picks the encoders'
    columns out of ``[B, C * W]`` into ``out[:, dest]``. Multi: see :class:`_MultiTables`.
    Encoders whose ids are too large or too sparse for a direct table
    (:func:`~recdistill.gbdt.encoding.lut_size`: at most 32 int32 slots per key, or 64Ki) are
    searched instead, so the tables stay small next to the encoders themselves.
    """

    def __init__(self, feat: GbdtFeaturizer) -> None:
        n_cols = len(feat.schema.categorical)
        self.dense_cols = np.array([j for _, j in feat.dense], dtype=np.int64)
        self.dense_via_f64 = feat.n_features > len(feat.dense)
        blocks: list[F64] = []
        for c in feat.categorical:
            k = c.keys.size
            cols = [np.concatenate([[np.nan, 0.0], _first(c.freq, k, f"{c.name}__freq")])]
            if c.native:
                cols.append(np.concatenate([[np.nan, np.nan], np.arange(k, dtype=np.float64)]))
            for t, m in c.means.items():
                cols.append(
                    np.concatenate([[np.nan, m.prior], _first(m.full, k, f"{c.name}__te_{t}", empty=m.prior)])
                )
            blocks.append(np.stack(cols, axis=1))
        self.width = max((b.shape[1] for b in blocks), default=1)
        rows = [np.full((1, self.width), np.nan)]  # row 0: read only by columns no encoder uses
        segments = [np.zeros(1, dtype=np.int32)]  # slot 0 -> row 0 (rows < 2**31: int32 halves memory)
        self.start = np.ones(n_cols, dtype=np.int64)  # unused columns: min(id + 1, 0) = slot 0
        self.last = np.zeros(n_cols, dtype=np.uint64)
        self.cat_fallback: list[tuple[F64, slice, I64, int]] = []  # block, out columns, keys, column
        src: list[int] = []
        dest: list[int] = []
        used: set[int] = set()
        base, at, col = 1, 1, len(feat.dense)
        for c, block in zip(feat.categorical, blocks, strict=True):
            k, w = c.keys.size, block.shape[1]
            rows.append(np.pad(block, ((0, 0), (0, self.width - w)), constant_values=np.nan))
            size = enc.lut_size(c.keys)
            if size is None or c.column in used or not 0 <= c.column < n_cols:
                self.cat_fallback.append((block, slice(col, col + w), c.keys, c.column))
            else:
                used.add(c.column)
                states = np.arange(2, k + 2, dtype=np.int64)
                lut = enc.id_table(
                    c.keys,
                    states,
                    missing=enc.STATE_MISSING,
                    other=enc.STATE_UNSEEN,
                    size=size,
                    dtype=np.int32,
                )
                segments.append(lut + np.int32(base))
                self.start[c.column], self.last[c.column] = at + 1, at + size - 1
                at += size
                src += [c.column * self.width + i for i in range(w)]
                dest += range(col, col + w)
            base += k + 2
            col += w
        self.values = np.ascontiguousarray(np.concatenate(rows))
        self.states = np.concatenate(segments)
        self.src = np.array(src, dtype=np.int64)
        first = len(feat.dense)
        self.dest: slice | I64 = (
            slice(first, first + len(dest))
            if dest == list(range(first, first + len(dest)))
            else np.array(dest, dtype=np.int64)
        )
        self.multi: list[_MultiTables] = []
        for mf in feat.multi:
            self.multi.append(_MultiTables(mf, col))
            col += 1 + len(mf.means) + (1 if mf.match else 0) + len(mf.attributes)


class _MultiTables:
    """One multi encoder, columns from ``col`` on. ``state`` / ``attrs``: direct tables (index
    ``min(id + 1, last)``) of each history id's state and attributes (None / empty: ids too large,
    search instead). ``table [T + 1, K + 2]`` per state: each target's encoding (0 for an empty
    slot, the prior for an unseen id) and 1.0 for a present id, so one gather and one summation
    over the list give every mean's numerator and the list length."""

    def __init__(self, mf: MultiEncoder, col: int) -> None:
        k = mf.keys.size
        self.mf, self.col = mf, col
        cols = [
            np.concatenate([[0.0, m.prior], _first(m.full, k, f"{mf.name}__te_{t}", empty=m.prior)])
            for t, m in mf.means.items()
        ]
        present = np.ones(k + 2)
        present[enc.STATE_MISSING] = 0.0
        self.table = np.ascontiguousarray(np.stack([*cols, present]))  # [T + 1, K + 2]
        self.n_means = len(cols)
        self.exact_sum = enc.sum_order_matches(mf.max_len)  # else sum per target like the reference
        # a stored attribute -1 never counts (the reference requires the row's attribute != -1)
        self.attr_values = [np.where(a.values == MISSING_ID, NO_ATTRIBUTE, a.values) for a in mf.attributes]
        size = enc.lut_size(mf.keys, *(a.keys for a in mf.attributes))
        self.last = np.uint64(0 if size is None else size - 1)
        self.state: np.ndarray | None = None  # int32 states
        self.attrs: list[I64] = []
        if size is not None:
            states = np.arange(2, k + 2, dtype=np.int64)
            self.state = enc.id_table(
                mf.keys, states, missing=enc.STATE_MISSING, other=enc.STATE_UNSEEN, size=size, dtype=np.int32
            )
            self.attrs = [
                enc.id_table(a.keys, v, missing=NO_ATTRIBUTE, other=NO_ATTRIBUTE, size=size)
                for a, v in zip(mf.attributes, self.attr_values, strict=True)
            ]

    def fill(self, out: F32, raw: RawBatch) -> None:
        """Write this encoder's columns of ``out [B, n_features]`` for ``raw``.

        Works on the list transposed, ``[L, B]``: every numpy call then runs over ``B`` in one
        inner loop (a reduction over a short last axis costs one call per row)."""
        mf, c, t = self.mf, self.col, self.n_means
        members = np.ascontiguousarray(raw.multi[:, mf.column, : mf.max_len].T)  # [L, B]
        if self.state is not None:
            pos = members + 1
            upos = pos.view(np.uint64)
            np.minimum(upos, self.last, out=upos)
            states = self.state[pos]
            attrs = [lut[pos] for lut in self.attrs]
        else:
            states = enc.id_states(mf.keys, members)
            attrs = [
                self._search_attribute(a, v, members)
                for a, v in zip(mf.attributes, self.attr_values, strict=True)
            ]
        vals = np.take(self.table, states, axis=1)  # [T + 1, L, B]
        if self.exact_sum:  # numpy's summation order, all rows and targets at once
            sums = enc.pairwise_sum(vals.transpose(1, 0, 2))  # [T + 1, B]
        else:  # what the reference computes: one contiguous [B, L] block per target
            sums = np.stack([np.ascontiguousarray(v.T).sum(axis=1) for v in vals])
        length = sums[t]  # exact small integers
        out[:, c] = length
        if t:
            mean = sums[:t] / np.maximum(length, 1.0)
            out[:, c + 1 : c + 1 + t] = np.where(length > 0, mean, np.nan).T
        c += 1 + t
        if mf.match is not None:  # a missing candidate (-1) never counts: compare with -2 instead
            cand = raw.ids[:, mf.match[1]]
            out[:, c] = (members == np.where(cand == MISSING_ID, NO_ATTRIBUTE, cand)).sum(axis=0)
            c += 1
        for a, attr in zip(mf.attributes, attrs, strict=True):  # attr -2 never equals a row's
            out[:, c] = (attr == raw.ids[:, a.column]).sum(axis=0)
            c += 1

    @staticmethod
    def _search_attribute(a: AttributeMap, values: I64, members: I64) -> I64:
        at = enc.lookup(a.keys, members)
        if values.size == 0:
            return np.full(members.shape, NO_ATTRIBUTE, dtype=np.int64)
        return np.where(at >= 0, values[np.maximum(at, 0)], NO_ATTRIBUTE)


def _scatter(values: F64, rows: np.ndarray) -> F64:
    """``values`` placed at ``rows`` (a boolean mask), NaN elsewhere (missing ids)."""
    out = np.full(rows.shape[0], np.nan)
    out[rows] = values
    return out


def _attribute_maps(
    schema: Schema, raw: RawBatch, owner: str, x: I64, student_cats: set[str], cfg: GbdtStudentConfig
) -> tuple[AttributeMap, ...]:
    """Categoricals that are near-functions of ``owner`` on the training rows (item -> category)."""
    maps = []
    for j, g in enumerate(schema.categorical):
        if g.name == owner or g.name not in student_cats:
            continue
        found = enc.functional_map(x, raw.ids[:, j], min_purity=cfg.history_match_purity)
        if found is not None:
            maps.append(AttributeMap(g.name, j, found[0], found[1]))
    return tuple(maps)
