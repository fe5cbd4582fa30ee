"""Fit the GBDT featurizer's encoders from statistics that add up over partitions of the rows.

Two passes over the fitted rows, each a sum of per-partition statistics (one Dask task per
partition in :mod:`.dask_train`; one partition holding every row in
:meth:`~recdistill.students.gbdt.features.GbdtFeaturizer.fit_transform`):

1. :class:`VocabStats`: per student categorical and multi-valued feature its distinct ids and
   their counts, per "history -> attribute" candidate the (owner id, attribute id) pair counts.
   Merged they give the IdMaps (``min_id_count``), the native-categorical choice, the id
   frequencies and the attribute maps: :class:`EncoderPlan` (:func:`plan_encoders`).
2. Per mean encoding its :class:`~.encoding.MeanStats` (sums per key and per fold). Merged they give
   the encodings the artefact stores and the out-of-fold encoding of every fitted row:
   :class:`FittedEncoders` (:func:`finish_encoders`).

A partition is a :class:`FitRows`: raw tensors, the per-row values the encodings average
(``click``; ``teacher`` for a distilled student; NaN = none, e.g. an unlabelled transfer row),
the request ids that fold the rows, and ``offset``, the position of its first row among all the
fitted rows (rows without a request are folded by position). With one partition the result is
bit for bit the single-process fit; over several only the order of float additions differs.

Example::

    rows = FitRows(raw, {"click": y}, request_ids)
    fit = fit_encoders(schema, [rows], cfg)          # or the two passes, partition by partition
    featurizer = GbdtFeaturizer(schema, fit.dense, fit.categorical, fit.multi)
    X = featurizer.training_matrix(raw, fit.out_of_fold(rows))   # [N, n_features]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recdistill.config.gbdt import GbdtStudentConfig
from recdistill.data.batch import MISSING_ID, RawBatch
from recdistill.data.folds import assign_folds
from recdistill.data.idmap import IdMap
from recdistill.data.schema import Schema
from recdistill.errors import DataError
from recdistill.students.gbdt import encoding as enc
from recdistill.students.gbdt.encoding import (
    F64,
    I64,
    AttributeMap,
    CategoricalEncoder,
    MeanStats,
    MultiEncoder,
)

TARGETS: tuple[str, ...] = ("click", "teacher")


@dataclass(frozen=True)
class FitRows:
    """One partition of the rows a featurizer is fitted on (see the module docstring)."""

    raw: RawBatch
    values: dict[str, F64]  # "click" [N] and optionally "teacher" [N]; NaN = no value
    groups: I64 | None  # request ids [N] (-1 = none) or None
    offset: int = 0

    def __post_init__(self) -> None:
        n = len(self.raw)
        for name, v in self.values.items():
            if name not in TARGETS:
                raise DataError(f"fit values: unknown {name!r}; expected {', '.join(TARGETS)}")
            if v.shape != (n,):
                raise DataError(
                    f"{'labels' if name == 'click' else 'teacher_probs'}: expected shape [{n}], got {list(v.shape)}"
                )

    def folds(self, n_folds: int) -> I64:
        """Fold ``[N]`` of each row: by request, else by its position among all fitted rows."""
        n = len(self.raw)
        pos = np.arange(self.offset, self.offset + n, dtype=np.int64)
        key = pos if self.groups is None else np.where(self.groups >= 0, self.groups, pos + np.int64(1 << 40))
        return assign_folds(key, n, n_folds)


def _student_multis(schema: Schema) -> list[tuple[int, str, int, str | None]]:
    """(column, name, max_len, vocab_from) of every student multi-valued feature."""
    return [(j, f.name, f.max_len, f.vocab_from) for j, f in enumerate(schema.multi) if not f.teacher_only]


def _attribute_pairs(schema: Schema, cfg: GbdtStudentConfig) -> list[tuple[str, str]]:
    """(owner, attribute) categoricals whose pair counts decide the "history of this <attribute>" maps."""
    if not cfg.history_match:
        return []
    cats = [f.name for f in schema.by_kind("categorical", student=True)]
    owners = dict.fromkeys(v for _, _, _, v in _student_multis(schema) if v in cats)
    return [(o, g) for o in owners for g in cats if g != o]


@dataclass(frozen=True)
class VocabStats:
    """Pass 1 statistics of some rows: distinct ids with counts, and attribute pair counts."""

    rows: int
    ids: dict[str, tuple[I64, I64]]  # feature -> (sorted distinct ids, counts)
    pairs: dict[tuple[str, str], tuple[I64, I64]]  # (owner, attribute) -> (pairs [P, 2], counts)

    @classmethod
    def collect(cls, schema: Schema, rows: FitRows, cfg: GbdtStudentConfig) -> VocabStats:
        raw = rows.raw
        col = {f.name: j for j, f in enumerate(schema.categorical)}
        ids: dict[str, tuple[I64, I64]] = {}
        for f in schema.by_kind("categorical", student=True):
            x = raw.ids[:, col[f.name]]
            enc.check_ids(f.name, x)
            ids[f.name] = _distinct(x)
        for j, name, max_len, _ in _student_multis(schema):
            members = raw.multi[:, j, :max_len]
            enc.check_ids(name, members)
            ids[name] = _distinct(members)
        pairs = {}
        for owner, g in _attribute_pairs(schema, cfg):
            px, py, c = enc.pair_counts(raw.ids[:, col[owner]], raw.ids[:, col[g]])
            pairs[(owner, g)] = (np.stack([px, py], axis=1), c)
        return cls(len(raw), ids, pairs)

    @classmethod
    def merge(cls, parts: Sequence[VocabStats]) -> VocabStats:
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        ids = {
            k: enc.merge_counts([p.ids[k][0] for p in parts], [p.ids[k][1] for p in parts]) for k in first.ids
        }
        pairs = {
            k: enc.merge_counts([p.pairs[k][0] for p in parts], [p.pairs[k][1] for p in parts])
            for k in first.pairs
        }
        return cls(sum(p.rows for p in parts), ids, pairs)


def _distinct(x: np.ndarray) -> tuple[I64, I64]:
    flat = np.asarray(x).ravel()
    keys, counts = np.unique(flat[flat != MISSING_ID], return_counts=True)
    return keys.astype(np.int64), counts.astype(np.int64)


def _id_map(keys: I64, counts: I64, min_count: int) -> tuple[IdMap, I64]:
    keep = counts >= min_count  # as IdMap.fit_counts
    return IdMap(keys[keep]), counts[keep]


@dataclass(frozen=True)
class EncoderPlan:
    """The encoders after pass 1, their mean encodings still empty; ``targets``: what they average."""

    dense: tuple[tuple[str, int], ...]
    categorical: tuple[CategoricalEncoder, ...]
    multi: tuple[MultiEncoder, ...]
    targets: tuple[str, ...]


def plan_encoders(
    schema: Schema, vocab: VocabStats, cfg: GbdtStudentConfig, targets: Sequence[str]
) -> EncoderPlan:
    n = vocab.rows
    col = {f.name: j for j, f in enumerate(schema.categorical)}
    dense = tuple((f.name, j) for j, f in enumerate(schema.dense) if not f.teacher_only)
    categorical = []
    for f in schema.by_kind("categorical", student=True):
        id_map, counts = _id_map(*vocab.ids[f.name], cfg.min_id_count)
        native = len(id_map) <= cfg.max_cat_levels
        freq = (counts / max(n, 1)).astype(np.float64)
        categorical.append(CategoricalEncoder(f.name, col[f.name], native, id_map, freq, {}))
    pairs = set(_attribute_pairs(schema, cfg))
    student_cats = {f.name for f in schema.by_kind("categorical", student=True)}
    multi = []
    for j, name, max_len, vocab_from in _student_multis(schema):
        id_map, _ = _id_map(*vocab.ids[name], cfg.min_id_count)
        match: tuple[str, int] | None = None
        attributes: tuple[AttributeMap, ...] = ()
        if cfg.history_match and vocab_from in student_cats:
            match = (vocab_from, col[vocab_from])
            maps = []
            for g in schema.categorical:  # schema order, as the single-process fit always had it
                if (vocab_from, g.name) not in pairs:
                    continue
                keys, counts = vocab.pairs[(vocab_from, g.name)]
                found = enc.functional_map_from_pairs(
                    keys[:, 0], keys[:, 1], counts, min_purity=cfg.history_match_purity
                )
                if found is not None:
                    maps.append(AttributeMap(g.name, col[g.name], IdMap(found[0]), found[1]))
            attributes = tuple(maps)
        multi.append(MultiEncoder(name, j, max_len, id_map, {}, match, attributes))
    return EncoderPlan(dense, tuple(categorical), tuple(multi), tuple(targets))


def _items(plan: EncoderPlan, raw: RawBatch) -> list[tuple[str, np.ndarray, I64]]:
    """Per mean-encoded feature: (name, row of each item [P], key of each item [P])."""
    out = []
    for c in plan.categorical:
        if c.native:
            continue
        ids = raw.ids[:, c.column]
        rows = np.flatnonzero(ids != MISSING_ID)
        out.append((c.name, rows, c.id_map.positions(ids[rows])))
    for m in plan.multi:
        members = raw.multi[:, m.column, : m.max_len]
        row, slot = np.nonzero(members != MISSING_ID)
        out.append((m.name, row, m.id_map.positions(members[row, slot])))
    return out


def collect_means(plan: EncoderPlan, rows: FitRows, cfg: GbdtStudentConfig) -> dict[str, MeanStats]:
    """Pass 2 statistics of some rows: ``"<feature>__te_<target>" -> MeanStats``."""
    fold = rows.folds(cfg.oof_folds)
    sizes = {c.name: len(c.id_map) for c in plan.categorical} | {m.name: len(m.id_map) for m in plan.multi}
    out = {}
    for name, row, idx in _items(plan, rows.raw):
        for t in plan.targets:
            out[f"{name}__te_{t}"] = MeanStats.collect(
                idx, rows.values[t][row], fold[row], sizes[name], cfg.oof_folds
            )
    return out


def merge_means(parts: Sequence[dict[str, MeanStats]]) -> dict[str, MeanStats]:
    out = dict(parts[0])
    for p in parts[1:]:
        out = {k: v + p[k] for k, v in out.items()}
    return out


@dataclass(frozen=True)
class FittedEncoders:
    """The fitted encoders (a featurizer's parts) and what the fitted rows' encodings need."""

    dense: tuple[tuple[str, int], ...]
    categorical: tuple[CategoricalEncoder, ...]
    multi: tuple[MultiEncoder, ...]
    stats: dict[str, MeanStats]  # "<feature>__te_<target>" -> merged sums
    targets: tuple[str, ...]
    n_folds: int
    smoothing: float

    def out_of_fold(self, rows: FitRows) -> dict[str, F64]:
        """``"<feature>__te_<target>" -> [N]``: the encodings of fitted rows, each from the other folds."""
        n = len(rows.raw)
        fold = rows.folds(self.n_folds)
        plan = EncoderPlan(self.dense, self.categorical, self.multi, ())
        multi = {m.name for m in self.multi}
        oof: dict[str, F64] = {}
        for name, row, idx in _items(plan, rows.raw):
            for key in (f"{name}__te_{t}" for t in self.targets):
                o = self.stats[key].out_of_fold(idx, fold[row], self.smoothing)
                if name not in multi:
                    oof[key] = np.full(n, np.nan)
                    oof[key][row] = o
                    continue
                length = np.bincount(row, minlength=n)
                with np.errstate(invalid="ignore", divide="ignore"):
                    oof[key] = np.where(length > 0, np.bincount(row, weights=o, minlength=n) / length, np.nan)
        return oof


def finish_encoders(plan: EncoderPlan, means: dict[str, MeanStats], cfg: GbdtStudentConfig) -> FittedEncoders:
    def enc_of(name: str) -> dict[str, enc.MeanEncoding]:
        return {t: means[f"{name}__te_{t}"].encoding(cfg.smoothing) for t in plan.targets}

    categorical = tuple(
        c if c.native else dataclasses.replace(c, means=enc_of(c.name)) for c in plan.categorical
    )
    multi = tuple(dataclasses.replace(m, means=enc_of(m.name)) for m in plan.multi)
    return FittedEncoders(plan.dense, categorical, multi, means, plan.targets, cfg.oof_folds, cfg.smoothing)


def fit_encoders(schema: Schema, parts: Sequence[FitRows], cfg: GbdtStudentConfig) -> FittedEncoders:
    """Both passes over in-memory partitions (one partition: the single-process fit)."""
    targets = [t for t in TARGETS if t in parts[0].values]
    vocab = VocabStats.merge([VocabStats.collect(schema, p, cfg) for p in parts])
    plan = plan_encoders(schema, vocab, cfg, targets)
    return finish_encoders(plan, merge_means([collect_means(plan, p, cfg) for p in parts]), cfg)
