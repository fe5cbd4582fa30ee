"""Readers: Parquet and CSV through Polars lazy scans, and the Criteo display-advertising TSV format.

Every reader returns a ``polars.LazyFrame`` with the columns the schema names, so the rest of
recdistill never cares where the data came from. Problems are reported with the file named:
an empty file, a truncated Parquet file, a CSV that is not CSV.

Criteo TSV (the public Kaggle/Terabyte display-advertising logs): tab-separated, no header,
``label``, 13 integer columns ``I1..I13``, 26 categorical columns ``C1..C26`` holding 8-digit hex
hashes; an empty field is missing. Hex ids are parsed to integers; ``row_id`` is the line number.
Criteo has no request or user column, so per-request and per-user metrics are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow.parquet as pq

from recdistill.data.schema import FeatureSpec, Schema
from recdistill.errors import DataError

Format = Literal["parquet", "csv", "criteo"]

CRITEO_N_INT = 13
CRITEO_N_CAT = 26
CRITEO_INT = [f"I{i}" for i in range(1, CRITEO_N_INT + 1)]
CRITEO_CAT = [f"C{i}" for i in range(1, CRITEO_N_CAT + 1)]


def detect_format(path: str | Path) -> Format:
    name = Path(path).name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        return "csv"
    if name.endswith(".tsv") or name.endswith(".txt") or name.endswith(".tsv.gz"):
        return "criteo"
    raise DataError(f"{path}: cannot tell the format from the name; use .parquet, .csv or .tsv (Criteo)")


def criteo_schema(*, hash_buckets: int | None = None, min_count: int = 10) -> Schema:
    """The built-in schema of the Criteo TSV format (counts log1p-transformed)."""
    features: list[FeatureSpec] = [
        FeatureSpec(name=c, kind="dense", group="context", transform="log1p") for c in CRITEO_INT
    ]
    features += [
        FeatureSpec(
            name=c, kind="categorical", group="context", min_count=min_count, hash_buckets=hash_buckets
        )
        for c in CRITEO_CAT
    ]
    return Schema(label="label", features=tuple(features), row_key="row_id", request_id=None, user_id=None)


def _check_nonempty(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes)")


def _check_parquet(path: Path) -> None:
    """Read the footer now, so a truncated or foreign file fails here with the file named."""
    try:
        meta = pq.read_metadata(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError variants
        raise DataError(f"{path}: not a readable Parquet file (truncated or corrupt?): {e}") from e
    if meta.num_rows == 0:
        raise DataError(f"{path}: Parquet file has no rows")


def scan(path: str | Path, *, fmt: Format | None = None) -> pl.LazyFrame:
    """A lazy scan of one data file (Parquet, CSV with header, or Criteo TSV)."""
    p = Path(path)
    _check_nonempty(p)
    fmt = fmt or detect_format(p)
    if fmt == "parquet":
        _check_parquet(p)
        return pl.scan_parquet(p)
    if fmt == "csv":
        return pl.scan_csv(p, infer_schema_length=10_000)
    return scan_criteo(p)


def scan_criteo(path: str | Path) -> pl.LazyFrame:
    p = Path(path)
    _check_nonempty(p)
    schema = {"label": pl.Int64, **{c: pl.Float64 for c in CRITEO_INT}, **{c: pl.String for c in CRITEO_CAT}}
    lf = pl.scan_csv(
        p,
        separator="\t",
        has_header=False,
        schema=schema,
        quote_char=None,
    )
    return lf.with_row_index("row_id").with_columns(
        pl.col("row_id").cast(pl.Int64),
        *[pl.col(c).str.to_integer(base=16, strict=False).alias(c) for c in CRITEO_CAT],
    )


def read_frame(
    path: str | Path, *, fmt: Format | None = None, columns: list[str] | None = None
) -> pl.DataFrame:
    lf = scan(path, fmt=fmt)
    if columns is not None:
        lf = lf.select(columns)
    try:
        return lf.collect()
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{path}: could not read: {e}") from e


def iter_frames(
    path: str | Path, *, batch_rows: int, fmt: Format | None = None, columns: list[str] | None = None
) -> Iterator[pl.DataFrame]:
    """Frames of at most ``batch_rows`` rows, in file order, with bounded memory."""
    p = Path(path)
    fmt = fmt or detect_format(p)
    if fmt == "parquet":
        _check_nonempty(p)
        _check_parquet(p)
        pf = pq.ParquetFile(p)
        try:
            for rb in pf.iter_batches(batch_size=batch_rows, columns=columns):
                yield pl.DataFrame(pl.from_arrow(rb))
        except OSError as e:
            raise DataError(f"{p}: read failed part-way (truncated or corrupt?): {e}") from e
        return
    lf = scan(p, fmt=fmt)
    if columns is not None:
        lf = lf.select(columns)
    n = count_rows(p, fmt=fmt)
    for start in range(0, n, batch_rows):
        yield lf.slice(start, batch_rows).collect()


def count_rows(path: str | Path, *, fmt: Format | None = None) -> int:
    p = Path(path)
    fmt = fmt or detect_format(p)
    if fmt == "parquet":
        _check_nonempty(p)
        _check_parquet(p)
        return int(pq.read_metadata(p).num_rows)
    try:
        return int(scan(p, fmt=fmt).select(pl.len()).collect().item())
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{p}: could not read: {e}") from e
