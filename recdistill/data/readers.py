"""Readers: Parquet, CSV and TSV through Polars lazy scans, and the Criteo display-advertising TSV format.

Every reader returns a ``polars.LazyFrame`` with the columns the schema names, so the rest of
recdistill never cares where the data came from. Problems are reported with the file named:
an empty file, a truncated Parquet file, a CSV that is not CSV, a header naming a column twice.
A source may be one file, a folder of files (e.g. Parquet parts) or a glob
(:func:`resolve_source`); :func:`scan_files` scans several as one frame, in sorted file order.
Streaming (:func:`iter_frames`) reads Parquet row groups, and CSV/TSV in one streaming pass
(never a re-scan per batch).

Criteo TSV (the public Kaggle/Terabyte display-advertising logs): tab-separated, no header,
``label``, 13 integer columns ``I1..I13``, 26 categorical columns ``C1..C26`` holding 8-digit hex
hashes; an empty field is missing. Hex ids are parsed to integers; ``row_id`` is the line number.
Criteo has no request or user column, so per-request and per-user metrics are skipped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow.parquet as pq

from recdistill.data.schema import FeatureSpec, Schema
from recdistill.errors import DataError

Format = Literal["parquet", "csv", "tsv", "criteo"]
FORMATS: tuple[str, ...] = ("parquet", "csv", "tsv", "criteo")
_SEPARATORS = {"csv": ",", "tsv": "\t"}
_GLOB_CHARS = set("*?[")

CRITEO_N_INT = 13
CRITEO_N_CAT = 26
CRITEO_INT = [f"I{i}" for i in range(1, CRITEO_N_INT + 1)]
CRITEO_CAT = [f"C{i}" for i in range(1, CRITEO_N_CAT + 1)]


def resolve_source(path: str | Path) -> list[Path]:
    """The data files of one source: a file, a folder (its data files, sorted) or a glob (sorted).

    Raises :class:`DataError` naming the path when nothing matches, or when a folder mixes formats.
    """
    text = str(path)
    if _GLOB_CHARS & set(text):
        root = Path(text)
        anchor = Path(root.anchor or ".")
        pattern = str(root.relative_to(anchor)) if root.is_absolute() else text
        files = sorted(p for p in anchor.glob(pattern) if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"{text}: the glob matches no file; check the pattern and the folder")
    else:
        p = Path(text)
        if not p.exists():
            raise DataError(f"{p}: file or folder not found")
        if p.is_file():
            return [p]
        files = sorted(q for q in p.iterdir() if q.is_file() and _has_data_suffix(q))
        if not files:
            raise DataError(f"{p}: the folder holds no .parquet, .csv or .tsv file")
    formats = {detect_format(f) for f in files}
    if len(formats) > 1:
        raise DataError(f"{text}: mixes formats {sorted(formats)}; one source holds files of one format")
    return files


def _has_data_suffix(p: Path) -> bool:
    try:
        detect_format(p)
    except DataError:
        return False
    return True


def detect_format(path: str | Path) -> Format:
    name = Path(path).name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        return "csv"
    if name.endswith(".tsv") or name.endswith(".txt") or name.endswith(".tsv.gz"):
        return "criteo"
    raise DataError(
        f"{path}: cannot tell the format from the name; use .parquet, .csv or .tsv (Criteo), "
        "or set data.format (parquet, csv, tsv with a header, criteo)"
    )


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
    """A lazy scan of one data file (Parquet, CSV or TSV with a header, or Criteo TSV)."""
    return scan_files([Path(path)], fmt=fmt)


def scan_files(paths: list[Path], *, fmt: Format | None = None, text: tuple[str, ...] = ()) -> pl.LazyFrame:
    """One lazy frame over several files of one format, rows in the order of ``paths``.

    CSV/TSV headers must agree; Criteo's ``row_id`` numbers the lines of all files together.
    ``text``: CSV/TSV columns read as strings whatever their first rows look like (text lists).
    """
    if not paths:
        raise DataError("no data files to read")
    for p in paths:
        _check_nonempty(p)
    fmt = fmt or detect_format(paths[0])
    if fmt == "parquet":
        for p in paths:
            _check_parquet(p)
        return pl.scan_parquet(paths)
    if fmt in _SEPARATORS:
        headers = [_csv_header(p, _SEPARATORS[fmt]) for p in paths]
        for p, h in zip(paths[1:], headers[1:], strict=True):
            if h != headers[0]:
                raise DataError(f"{p}: header {h} differs from {paths[0]}'s {headers[0]}; parts must agree")
        overrides = {c: pl.String for c in text if c in headers[0]}
        return pl.scan_csv(
            paths, separator=_SEPARATORS[fmt], infer_schema_length=10_000, schema_overrides=overrides
        )
    return scan_criteo(paths)


def _csv_header(path: Path, sep: str) -> list[str]:
    """The column names of a CSV/TSV file; a name given twice is an error (Polars would rename it)."""
    if path.name.endswith(".gz"):
        return []  # compressed: Polars reads the header itself
    with open(path, newline="") as f:
        first = f.readline()
    names = next(csv.reader([first], delimiter=sep), [])
    names = [n.strip() for n in names]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"{path}: the header names column(s) {twice} twice; rename one of each")
    return names


def scan_criteo(path: str | Path | list[Path]) -> pl.LazyFrame:
    paths = path if isinstance(path, list) else [Path(path)]
    for p in paths:
        _check_nonempty(p)
    schema = {"label": pl.Int64, **{c: pl.Float64 for c in CRITEO_INT}, **{c: pl.String for c in CRITEO_CAT}}
    lf = pl.scan_csv(
        paths,
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
    try:  # one streaming pass over the text file
        yield from lf.collect_batches(chunk_size=batch_rows)
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{p}: could not read: {e}") from e


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
