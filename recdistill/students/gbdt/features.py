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
:meth:`GbdtFeaturizer.fit_transform`, which returns the training matrix with those columns. The
fit itself is :mod:`.fit_stats`: sums that add up over partitions, so the Dask student fits the
same artefact partition by partition (:mod:`.dask_train`).
Artefact: ``gbdt_featurizer.json`` + ``arrays/*.npy`` (:meth:`save` / :meth:`load`).

Ids: every encoder looks ids up through one :class:`~recdistill.data.idmap.IdMap` (the
preprocessing vocabularies' mechanism), fitted here on the featurizer's own rows (see
:meth:`GbdtFeaturizer.fit_transform` for why these are not the preprocessing vocabularies).

Speed: a served request has ~128 rows, where a chain of small numpy calls per feature costs more
in call overhead than in work. ``transform`` therefore reads precomputed tables
(:class:`~recdistill.students.gbdt.tables.FeatureTables`, derived from the encoders whenever a
featurizer is built or loaded, never saved): every column of a categorical depends only on the
id's state (missing / unseen / key ``k``: its IdMap row), so all categorical columns come from
one gather. :meth:`GbdtFeaturizer._transform_reference` is the per-feature definition (its
lookups are the IdMaps' sorted search); the fast path equals it bit for bit (tests check it) and
hands it the inputs it does not take (ids below -1, non-int64 ids), so errors are the reference's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from recdistill.config.gbdt import GbdtStudentConfig
from recdistill.data.batch import F32, MISSING_ID, RawBatch
from recdistill.data.idmap import IdMap
from recdistill.data.raw import max_multi_len
from recdistill.data.schema import Schema
from recdistill.errors import ArtefactError, DataError
from recdistill.io_utils import atomic_path
from recdistill.students.gbdt import encoding as enc
from recdistill.students.gbdt.encoding import (
    F64,
    I64,
    AttributeMap,
    CategoricalEncoder,
    MeanEncoding,
    MultiEncoder,
)
from recdistill.students.gbdt.tables import FeatureTables

FEATURIZER_FILE = "gbdt_featurizer.json"
ARTEFACT_VERSION = 1
TARGETS: tuple[str, ...] = ("click", "teacher")


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
        self._fast = FeatureTables(
            n_id_columns=len(schema.categorical),
            dense=dense,
            categorical=categorical,
            multi=multi,
            n_features=self.n_features,
        )

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
        if not raw.ids_well_formed():
            return self._transform_reference(raw, oof)
        out = self._fast.transform(raw)
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
            idx = c.id_map.positions(ids)
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
            idx = mf.id_map.positions(members)
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
                pos = amap.id_map.positions(members)
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

        Each encoder's ids are an :class:`IdMap` fitted here, the preprocessing vocabularies'
        mechanism but not their data, on purpose: fitted on the rows the trees train on (with the
        distilled run's transfer rows), per feature (a history's ids are its own members, not the
        shared ``vocab_from`` table), with the student's ``min_id_count`` rather than the schema's
        ``min_count``, on raw ids (``hash_buckets`` features too), and with each id's count (the
        ``__freq`` column). Reusing the preprocessing vocabularies would change the features.
        """
        from recdistill.students.gbdt.fit_stats import FitRows, fit_encoders

        n = len(raw)
        if labels.shape != (n,):
            raise DataError(f"labels: expected shape [{n}], got {list(labels.shape)}")
        values = {"click": labels.astype(np.float64)}
        if teacher_probs is not None:
            if teacher_probs.shape != (n,):
                raise DataError(f"teacher_probs: expected shape [{n}], got {list(teacher_probs.shape)}")
            values["teacher"] = teacher_probs.astype(np.float64)
        rows = FitRows(raw, values, groups)
        fit = fit_encoders(
            schema, [rows], cfg
        )  # the encoders' one fit, also run partition by partition (Dask)
        feat = cls(schema, fit.dense, fit.categorical, fit.multi)
        return feat, feat.training_matrix(raw, fit.out_of_fold(rows))

    def training_matrix(self, raw: RawBatch, oof: dict[str, F64]) -> F32:
        """``X [B, n_features]`` of rows the featurizer was fitted on: their out-of-fold mean
        encodings ``oof`` (``FittedEncoders.out_of_fold``) replace the full-training ones."""
        return self._transform(raw, oof)

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
                "keys": put(f"cat{i}_keys", c.id_map.keys),
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
                "keys": put(f"multi{i}_keys", m.id_map.keys),
                "means": means_meta(f"multi{i}", m.means),
                "match": list(m.match) if m.match else None,
                "attributes": [
                    {
                        "attribute": a.attribute,
                        "column": a.column,
                        "keys": put(f"multi{i}_attr{k}_keys", a.id_map.keys),
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

        def id_map(name: str) -> IdMap:
            try:
                return IdMap(arr(name))
            except ValueError as e:
                raise ArtefactError(f"{d}/arrays/{name}.npy: {e}; the artefact is inconsistent") from e

        def means(raw: dict[str, Any]) -> dict[str, MeanEncoding]:
            return {t: MeanEncoding(arr(v["full"]), float(v["prior"])) for t, v in raw.items()}

        schema = Schema.from_dict(meta["schema"], source=str(path))
        cats = tuple(
            CategoricalEncoder(
                c["name"], c["column"], c["native"], id_map(c["keys"]), arr(c["freq"]), means(c["means"])
            )
            for c in meta["categorical"]
        )
        multis = tuple(
            MultiEncoder(
                m["name"],
                m["column"],
                m["max_len"],
                id_map(m["keys"]),
                means(m["means"]),
                (m["match"][0], int(m["match"][1])) if m["match"] else None,
                tuple(
                    AttributeMap(a["attribute"], a["column"], id_map(a["keys"]), arr(a["values"]))
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
