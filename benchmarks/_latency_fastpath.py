"""Prototypes of faster serving transforms, checked bit-for-bit against the library and timed.

Not used by serving: these show, with numbers, what the proposals for
``recdistill/data/preprocess.py`` and ``recdistill/gbdt/features.py`` would buy. Both replace
per-feature ``searchsorted``/``where`` chains (about 7 small numpy calls per feature, which at
128 rows cost far more in call overhead than in work) by one gather per id tensor from tables
built once at load time:

* :class:`FastStudentPreprocess`: every id column whose table has a direct lookup table gets a
  shifted copy ``[PAD_ROW, lut...]`` so that ``row = table[min(id + 1, size)]`` also maps the
  missing id -1 to ``PAD_ROW``; all columns live in one concatenated array with offsets, so the
  whole ``ids [B, C]`` (and ``multi [B, M, L]``) tensor is mapped by ONE gather.
* :class:`FastGbdtFeaturizer`: each feature's output columns depend only on the id's state
  (missing / unseen / key k), so they are precomputed per state: ``T [K + 2, n_cols]`` and one
  gather gives all columns of that feature; ids reach their state row through a lookup table like
  above. The matrix is written in place (no list of float64 columns, no stack + astype).

    python benchmarks/_latency_fastpath.py --run-dir runs/tiny [--rows 128]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recdistill.data.batch import MISSING_ID, PAD_ROW, ModelBatch, RawBatch
from recdistill.data.preprocess import Preprocessor
from recdistill.errors import DataError
from recdistill.gbdt import encoding as enc
from recdistill.gbdt.features import GbdtFeaturizer

_LUT_MAX_ID = 1 << 22  # the library's bound for direct lookup tables


def _state_lut(keys: np.ndarray) -> np.ndarray | None:
    """``lut[id + 1]`` = 0 for the missing id -1, ``k + 2`` for ``keys[k]``, 1 (unseen) otherwise;
    the last slot is "unseen" for every larger id. None when the id range is too large."""
    if keys.size and (int(keys[-1]) >= _LUT_MAX_ID or int(keys[0]) < 0):
        return None
    top = int(keys[-1]) + 1 if keys.size else 0
    lut = np.ones(top + 2, dtype=np.int64)
    lut[0] = 0
    lut[keys + 1] = np.arange(2, keys.size + 2, dtype=np.int64)
    return lut


def _state_rows(lut: np.ndarray | None, keys: np.ndarray, x: np.ndarray) -> np.ndarray:
    """State row of every id in ``x`` (0 missing, 1 unseen, k + 2 key k), any shape."""
    if lut is not None:
        return lut[np.minimum((x + 1).view(np.uint64), np.uint64(lut.size - 1))]
    idx = enc.lookup(keys, x)
    return np.where(x == MISSING_ID, 0, np.where(idx >= 0, idx + 2, 1))


class FastStudentPreprocess:
    """Same output as ``pre.transform(raw, student_only=True)``, with one gather per id tensor."""

    def __init__(self, pre: Preprocessor) -> None:
        self.pre = pre
        s = pre.schema
        self._cat_fallback: list[int] = []
        self._multi_fallback: list[int] = []
        self._ids = self._build(s.categorical, self._cat_fallback)
        self._multi = self._build(s.multi, self._multi_fallback)

    def _build(self, feats: Any, fallback: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts, sizes, offsets, at = [], [], [], 0
        for j, f in enumerate(feats):
            table = f.vocab_from or f.name
            lut = self.pre._luts.get(table)
            if f.teacher_only:
                shifted = np.array([PAD_ROW], dtype=np.int64)
            elif table in self.pre.hash_buckets or lut is None:
                fallback.append(j)
                shifted = np.array([PAD_ROW], dtype=np.int64)  # overwritten by the fallback
            else:
                shifted = np.concatenate([[PAD_ROW], lut]).astype(np.int64)
            parts.append(shifted)
            sizes.append(shifted.size - 1)
            offsets.append(at)
            at += shifted.size
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return flat, np.asarray(sizes, dtype=np.uint64), np.asarray(offsets, dtype=np.int64)

    def _map(
        self, x: np.ndarray, tables: tuple[np.ndarray, np.ndarray, np.ndarray], axis_shape: tuple[int, ...]
    ) -> np.ndarray:
        flat, sizes, offsets = tables
        if flat.size == 0:
            return np.empty_like(x)
        pos = np.minimum((x + 1).view(np.uint64), sizes.reshape(axis_shape)).view(np.int64)
        return flat[pos + offsets.reshape(axis_shape)]

    def transform(self, raw: RawBatch) -> ModelBatch:
        pre, s = self.pre, self.pre.schema
        n = len(raw)
        for name, a, shape in (("ids", raw.ids, (n, len(s.categorical))),
                               ("multi", raw.multi, (n, len(s.multi), pre.max_len))):  # fmt: skip
            if a.shape != shape:
                raise DataError(f"{name}: expected shape {list(shape)}, got {list(a.shape)}")
            if a.size and int(a.min()) < MISSING_ID:
                raise DataError(f"{name}: negative ids below {MISSING_ID}; ids must be >= 0, -1 = missing")
        ids = self._map(raw.ids, self._ids, (1, -1))
        multi = self._map(raw.multi, self._multi, (1, -1, 1))
        for j in self._cat_fallback:
            ids[:, j] = pre._lookup(s.categorical[j], raw.ids[:, j])
        for j in self._multi_fallback:
            multi[:, j, :] = pre._lookup(s.multi[j], raw.multi[:, j, :])
        return ModelBatch(dense=self._dense(raw), ids=ids, multi=multi)

    def _dense(self, raw: RawBatch) -> np.ndarray:
        """The library's dense code, unchanged (a few calls for the whole block)."""
        pre = self.pre
        x = raw.dense.astype(np.float32, copy=True)
        missing = np.isnan(x)
        if np.isinf(x).any():
            raise DataError("dense: holds inf values; expected finite numbers or NaN for missing")
        lg = pre._log1p
        x[:, lg] = np.sign(x[:, lg]) * np.log1p(np.abs(x[:, lg]))
        x = (x - pre._mean) / pre._std
        x[missing] = 0.0
        out = np.concatenate([x, missing[:, pre._indicator_cols].astype(np.float32)], axis=1)
        return np.ascontiguousarray(out, dtype=np.float32)


class FastGbdtFeaturizer:
    """Same output as ``feat.transform(raw)``: per-state tables, one gather per feature."""

    def __init__(self, feat: GbdtFeaturizer) -> None:
        self.feat = feat
        self.n_features = feat.n_features
        # categorical: (column, lut, keys, T [K + 2, n_cols] float64, first output column)
        self._cats: list[tuple[int, np.ndarray | None, np.ndarray, np.ndarray, int]] = []
        col = len(feat.dense)
        for c in feat.categorical:
            k = c.keys.size
            cols = [np.concatenate([[np.nan, 0.0], c.freq])]  # missing NaN, unseen 0
            if c.native:
                cols.append(np.concatenate([[np.nan, np.nan], np.arange(k, dtype=np.float64)]))
            for m in c.means.values():
                full = m.full if m.full.size else np.full(k, m.prior)
                cols.append(np.concatenate([[np.nan, m.prior], full]))
            table = np.ascontiguousarray(np.stack(cols, axis=1))
            self._cats.append((c.column, _state_lut(c.keys), c.keys, table, col))
            col += table.shape[1]
        # multi: per feature its state lut, per-target value tables (missing 0, unseen prior) and
        # an attribute lut per AttributeMap (-2 = no attribute, as the library's MISSING_ID - 1)
        self._multi: list[dict[str, Any]] = []
        for mf in feat.multi:
            values = []
            for m in mf.means.values():
                full = m.full if m.full.size else np.full(mf.keys.size, m.prior)
                values.append(np.concatenate([[0.0, m.prior], full]))
            attrs: list[tuple[Any, np.ndarray | None]] = []
            for a in mf.attributes:
                top = int(a.keys[-1]) + 1 if a.keys.size else 0
                if a.keys.size and (top > _LUT_MAX_ID or int(a.keys[0]) < 0):
                    attrs.append((a, None))
                    continue
                alut = np.full(top + 2, MISSING_ID - 1, dtype=np.int64)
                alut[a.keys + 1] = a.values
                attrs.append((a, alut))
            self._multi.append(
                {"mf": mf, "lut": _state_lut(mf.keys), "values": values, "attrs": attrs, "col": col}
            )
            col += 1 + len(values) + (1 if mf.match else 0) + len(mf.attributes)
        assert col == feat.n_features, (col, feat.n_features)

    def transform(self, raw: RawBatch) -> np.ndarray:
        feat = self.feat
        n = len(raw)
        s = feat.schema
        if raw.dense.shape != (n, len(s.dense)) or raw.ids.shape != (n, len(s.categorical)):
            raise DataError(f"dense/ids: unexpected shapes {raw.dense.shape}, {raw.ids.shape}")
        if raw.ids.size and int(raw.ids.min()) < MISSING_ID:
            raise DataError(f"ids: negative ids below {MISSING_ID}; ids must be >= 0, -1 = missing")
        out = np.empty((n, self.n_features), dtype=np.float32)
        for k, (_, j) in enumerate(feat.dense):
            out[:, k] = raw.dense[:, j]
        for column, lut, keys, table, col in self._cats:
            out[:, col : col + table.shape[1]] = table[_state_rows(lut, keys, raw.ids[:, column])]
        for spec in self._multi:
            mf, col = spec["mf"], spec["col"]
            members = raw.multi[:, mf.column, : mf.max_len]  # [B, L]
            if members.size and int(members.min()) < MISSING_ID:
                raise DataError(f"feature {mf.name!r}: negative ids; ids must be >= 0, -1 = missing")
            present = members != MISSING_ID
            length = present.sum(axis=1)
            out[:, col] = length
            col += 1
            rows = _state_rows(spec["lut"], mf.keys, members)
            for table in spec["values"]:
                vals = table[rows]  # [B, L] float64, 0 where missing: the library's `vals`
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[:, col] = np.where(length > 0, vals.sum(axis=1) / length, np.nan)
                col += 1
            if mf.match is not None:
                cand = raw.ids[:, mf.match[1]]
                hit = present & (members == cand[:, None]) & (cand[:, None] != MISSING_ID)
                out[:, col] = hit.sum(axis=1)
                col += 1
            for a, alut in spec["attrs"]:
                if alut is not None:
                    attr = alut[np.minimum((members + 1).view(np.uint64), np.uint64(alut.size - 1))]
                else:
                    pos = enc.lookup(a.keys, members)
                    attr = np.where(pos >= 0, a.values[np.maximum(pos, 0)], MISSING_ID - 1)
                row_attr = raw.ids[:, a.column]
                out[:, col] = ((attr == row_attr[:, None]) & (row_attr[:, None] != MISSING_ID)).sum(axis=1)
                col += 1
        return out


def _perturb(raw: RawBatch, rng: np.random.Generator) -> RawBatch:
    """``raw`` with ~10% of ids missing (-1), ~5% unseen small ids and ~5% huge ids (>= 2**40)."""

    def ids(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        u = rng.random(x.shape)
        x[u < 0.10] = MISSING_ID
        x[(u >= 0.10) & (u < 0.15)] = rng.integers(0, 50_000, size=int(((u >= 0.10) & (u < 0.15)).sum()))
        x[u >= 0.95] = rng.integers(1 << 40, 1 << 41, size=int((u >= 0.95).sum()))
        return x

    return RawBatch(dense=raw.dense, ids=ids(raw.ids), multi=ids(raw.multi))


class PrototypeMismatchError(Exception):
    """A prototype's output differs from the library's (it must never be used then)."""


def _timeit(
    fns: dict[str, Callable[[RawBatch], Any]], batches: Sequence[RawBatch], reps: int
) -> dict[str, Any]:
    """Interleaved: each repetition runs every function on the same request; p50/p99 in ms."""
    t: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(reps + 10):
        raw = batches[r % len(batches)]
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn(raw)
            if r >= 10:
                t[k].append((time.perf_counter() - t0) * 1e3)
    return {
        k: {"p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99))}
        for k, v in t.items()
    }


def compare(mlp_dir: Path, gbdt_dir: Path, batches: Sequence[RawBatch], *, reps: int = 400) -> dict[str, Any]:
    """Check the prototypes against the library on ``batches`` and on copies with missing, unseen
    and huge ids (:class:`PrototypeMismatchError` on any difference), then time both, interleaved.

    ``mlp_dir`` / ``gbdt_dir``: the students' version folders (``preprocess/``, ``featurizer/``).
    """
    from recdistill.gbdt.train import FEATURIZER_DIR

    pre = Preprocessor.load(mlp_dir / "preprocess")
    feat = GbdtFeaturizer.load(gbdt_dir / FEATURIZER_DIR)
    fast_pre, fast_feat = FastStudentPreprocess(pre), FastGbdtFeaturizer(feat)
    rng = np.random.default_rng(0)
    checked = [*batches, *(_perturb(b, rng) for b in batches)]
    for raw in checked:  # bit for bit
        a, b = pre.transform(raw, student_only=True), fast_pre.transform(raw)
        if not (np.array_equal(a.ids, b.ids) and np.array_equal(a.multi, b.multi)):
            raise PrototypeMismatchError("student preprocessing: ids/multi differ")
        if not np.array_equal(a.dense, b.dense, equal_nan=True):
            raise PrototypeMismatchError("student preprocessing: dense differs")
        x, y = feat.transform(raw), fast_feat.transform(raw)
        if x.dtype != y.dtype or not np.array_equal(x, y, equal_nan=True):
            raise PrototypeMismatchError("GBDT features differ")
    timings = _timeit(
        {
            "mlp preprocess (library)": lambda r: pre.transform(r, student_only=True),
            "mlp preprocess (prototype)": fast_pre.transform,
            "gbdt featurize (library)": feat.transform,
            "gbdt featurize (prototype)": fast_feat.transform,
        },
        batches,
        reps,
    )
    rows = len(batches[0]) if batches else 0
    return {"equal_on_requests": len(checked), "rows": rows, "reps": reps, "timings_ms": timings}


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from _latency_repo import bench_models, load_run

    from recdistill.serving.loadtest.requests import build_request_pool

    p = argparse.ArgumentParser(description="library vs prototype transforms: equality and time")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--rows", type=int, default=128)
    p.add_argument("--reps", type=int, default=400)
    args = p.parse_args(argv)
    ctx = load_run(Path(args.run_dir))
    test = ctx.split_path("test")
    if test is None:
        raise SystemExit(f"{ctx.run_dir}: no test split")
    batches = build_request_pool(test, ctx.schema(), candidates=args.rows, pool_size=64).batches
    sources = {m.name: m.source for m in bench_models(ctx)}
    mlp, gbdt = sources.get("mlp"), sources.get("gbdt")
    if mlp is None or gbdt is None:
        raise SystemExit(f"{ctx.run_dir}: needs a served mlp and gbdt student")
    res = compare(mlp, gbdt, batches, reps=args.reps)
    print(
        f"equal on {res['equal_on_requests']} requests x {res['rows']} rows (real, and with missing/unseen/huge ids)"
    )
    for k, v in res["timings_ms"].items():
        print(f"  {k:<28} p50 {v['p50_ms']:.3f} ms  p99 {v['p99_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
