"""Turn a Polars frame into raw request tensors (:class:`RawBatch`) and per-row :class:`Targets`.

This is the only place that knows how columns become the serving contract, so the data loader,
the Triton client and the load tester all build identical requests from a data file.

String ids (e.g. a CSV with text categories) are mapped to int64 by a stable hash (first 8 bytes
of BLAKE2b, top bit cleared), the same in every process and Python version. Clients that send
string categories must apply :func:`hash_string_ids` before sending.

Lists in text (a multi-valued feature with ``sep``, e.g. ``"5|14|17"``) become lists of int64 by
:func:`parse_id_lists`: an element that is an integer is that integer, any other element is
hashed like a string id, an empty string is an empty list.
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
import pyarrow as pa

from recdistill.data.batch import MISSING_ID, RawBatch, Targets
from recdistill.data.schema import FeatureSpec, Schema
from recdistill.errors import DataError

_INT63 = (1 << 63) - 1


def hash_string_ids(values: pl.Series) -> pl.Series:
    """Stable int64 ids for string values; nulls stay null."""
    uniques = values.drop_nulls().unique()
    mapping = {
        v: int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "little") & _INT63
        for v in uniques.to_list()
    }
    return values.replace_strict(mapping, default=None, return_dtype=pl.Int64)


def parse_id_lists(values: pl.Series, sep: str) -> pl.Series:
    """``"5|14|17"`` -> ``[5, 14, 17]`` (``sep="|"``); ``""`` -> ``[]``; null stays null.

    Elements are stripped of surrounding spaces; empty elements (``"5||7"``) are dropped. An
    integer element keeps its value (so a list can share the vocabulary of an integer id column),
    any other element is hashed with :func:`hash_string_ids`. An integer column (no separator in
    any value) becomes one-element lists. Always returns ``List(Int64)``.
    """
    if values.dtype.is_integer():
        one = pl.select(pl.when(values.is_not_null()).then(pl.concat_list(values.cast(pl.Int64))))
        return one.to_series().cast(pl.List(pl.Int64)).alias(values.name)
    parts = (
        values.cast(pl.String)
        .str.split(sep)
        .list.eval(pl.element().str.strip_chars())
        .list.eval(pl.element().filter(pl.element() != ""))
    )
    uniques = parts.explode().drop_nulls().unique()
    ids = uniques.str.to_integer(strict=False).fill_null(hash_string_ids(uniques))
    out = parts.list.eval(pl.element().replace_strict(uniques, ids, return_dtype=pl.Int64))
    return out.cast(pl.List(pl.Int64)).alias(values.name)


def max_multi_len(schema: Schema) -> int:
    return max((f.max_len for f in schema.multi), default=1)


def id_series(s: pl.Series, where: str) -> pl.Series:
    if s.dtype == pl.String or s.dtype == pl.Categorical:
        return hash_string_ids(s.cast(pl.String))
    if not s.dtype.is_integer():
        if s.dtype.is_float():
            bad = s.drop_nulls().drop_nans()
            if (bad != bad.round(0)).any():
                raise DataError(f"{where}: id column holds non-integer values (dtype {s.dtype})")
            return s.cast(pl.Int64, strict=False)
        raise DataError(f"{where}: expected integer or string ids, got dtype {s.dtype}")
    return s.cast(pl.Int64)


def _dense_block(df: pl.DataFrame, feats: tuple[FeatureSpec, ...], where: str) -> np.ndarray:
    n = df.height
    out = np.empty((n, len(feats)), dtype=np.float32)
    for j, f in enumerate(feats):
        s = df.get_column(f.name)
        if not (s.dtype.is_numeric() or s.dtype in (pl.Null, pl.Boolean)):
            raise DataError(f"{where}: dense column {f.name!r} must be numeric, got dtype {s.dtype}")
        out[:, j] = s.cast(pl.Float32).fill_null(float("nan")).to_numpy()
    return out


def _id_block(df: pl.DataFrame, feats: tuple[FeatureSpec, ...], where: str) -> np.ndarray:
    n = df.height
    out = np.empty((n, len(feats)), dtype=np.int64)
    for j, f in enumerate(feats):
        s = id_series(df.get_column(f.name), f"{where}: column {f.name!r}")
        out[:, j] = s.fill_null(MISSING_ID).to_numpy()
    return out


def _multi_block(df: pl.DataFrame, feats: tuple[FeatureSpec, ...], width: int, where: str) -> np.ndarray:
    """``[B, n_multi, width]`` raw ids: last ``max_len`` entries of each list, left-aligned, -1 padded."""
    n = df.height
    out = np.full((n, len(feats), width), MISSING_ID, dtype=np.int64)
    for j, f in enumerate(feats):
        s = df.get_column(f.name)
        if f.sep is not None and not isinstance(s.dtype, pl.List):
            s = parse_id_lists(s, f.sep)
        if not isinstance(s.dtype, pl.List):
            raise DataError(
                f"{where}: multi-valued column {f.name!r} must be a list of ids, got dtype {s.dtype}"
            )
        inner = s.dtype.inner
        if inner is not None and (inner == pl.String or inner == pl.Categorical):
            # hash string ids element-wise; rows whose list is empty or null come back null
            long = pl.DataFrame({"_row": np.arange(n), "v": s.cast(pl.List(pl.String))}).explode("v")
            long = long.with_columns(hash_string_ids(long.get_column("v")).alias("v"))
            grouped = long.drop_nulls("v").group_by("_row").agg(pl.col("v"))
            s = (
                pl.DataFrame({"_row": np.arange(n)})
                .join(grouped, on="_row", how="left")
                .sort("_row")
                .get_column("v")
            )
        arr = s.cast(pl.List(pl.Int64)).to_arrow()
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = arr.cast(pa.large_list(pa.int64()))
        offsets = arr.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        values = arr.flatten().fill_null(MISSING_ID).to_numpy(zero_copy_only=False).astype(np.int64)
        # offsets/flatten ignore the array's own offset handling for nulls: null lists have length 0
        lens = np.diff(offsets)
        if arr.null_count:
            lens = np.where(arr.is_null().to_numpy(zero_copy_only=False), 0, lens)
        counts = np.minimum(lens, f.max_len)
        total = int(counts.sum())
        if total == 0:
            continue
        rows = np.repeat(np.arange(n), counts)
        starts = np.cumsum(counts) - counts
        within = np.arange(total) - np.repeat(starts, counts)
        src = np.repeat(offsets[1:] - counts, counts) + within
        out[rows, j, within] = values[src - int(offsets[0])]
    return out


def raw_batch_from_frame(df: pl.DataFrame, schema: Schema, *, source: str = "<frame>") -> RawBatch:
    """Raw request tensors for every feature of ``schema`` (teacher_only ones included)."""
    missing = [c for c in schema.feature_names if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing feature columns {missing}")
    return RawBatch(
        dense=_dense_block(df, schema.dense, source),
        ids=_id_block(df, schema.categorical, source),
        multi=_multi_block(df, schema.multi, max_multi_len(schema), source),
    )


def targets_from_frame(df: pl.DataFrame, schema: Schema, *, source: str = "<frame>") -> Targets:
    n = df.height

    def ints(col: str | None) -> np.ndarray:
        if col is None or col not in df.columns:
            return np.full(n, -1, dtype=np.int64)
        return id_series(df.get_column(col), f"{source}: column {col!r}").fill_null(-1).to_numpy()

    def floats(col: str | None) -> np.ndarray:
        if col is None or col not in df.columns:
            return np.full(n, np.nan, dtype=np.float32)
        return df.get_column(col).cast(pl.Float32).fill_null(float("nan")).to_numpy()

    if schema.row_key not in df.columns:
        how = (
            "the split files `recdistill run` writes into runs/<name>/data/ carry it"
            if schema.keyed_by_position
            else "name an existing column as row_key in schema.json, or null to key rows by position"
        )
        raise DataError(f"{source}: missing row key column {schema.row_key!r}; {how}")
    return Targets(
        row_key=df.get_column(schema.row_key).cast(pl.Int64).to_numpy(),
        label=floats(schema.label),
        request_id=ints(schema.request_id),
        user_id=ints(schema.user_id),
        true_ctr=floats(schema.true_ctr),
    )
