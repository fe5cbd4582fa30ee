"""Row ranges of a split file: the unit of work of sharded scoring and of the Dask GBDT partitions.

A split of ``N`` rows is cut into ranges of at most ``P`` rows, ``[k * P, min((k + 1) * P, N))``;
the cut depends on ``N`` and ``P`` only (not on how many processes share the work), so a rerun
with another number of ranks or workers finds the same ranges. :func:`iter_row_range` reads one
range in frames of at most ``batch_rows`` rows with bounded memory: for Parquet only the row
groups that overlap the range are decoded; CSV and Criteo TSV are sliced from a lazy scan.

Example::

    >>> plan_ranges(10, 4)
    [RowRange(start=0, stop=4), RowRange(start=4, stop=8), RowRange(start=8, stop=10)]
    >>> sum(len(f) for f in iter_row_range("train.parquet", 4, 8, batch_rows=3))
    4
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from recdistill.data.readers import count_rows, detect_format, scan
from recdistill.errors import DataError


@dataclass(frozen=True)
class RowRange:
    """Rows ``[start, stop)`` of a split (global positions, 0-based)."""

    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def plan_ranges(n_rows: int, part_rows: int) -> list[RowRange]:
    """``[0, n_rows)`` cut into ranges of ``part_rows`` rows (the last one shorter); none when empty."""
    if part_rows < 1:
        raise ValueError(f"part_rows must be >= 1, got {part_rows}")
    return [RowRange(s, min(s + part_rows, n_rows)) for s in range(0, n_rows, part_rows)]


def iter_row_range(
    path: str | Path, start: int, stop: int, *, batch_rows: int, columns: list[str] | None = None
) -> Iterator[pl.DataFrame]:
    """Rows ``[start, stop)`` of ``path`` in file order, frames of at most ``batch_rows`` rows."""
    p = Path(path)
    n = count_rows(p)  # checks the file exists, is not empty and (Parquet) has a footer
    if not 0 <= start <= stop <= n:
        raise DataError(f"{p}: rows [{start}, {stop}) are not within the file's {n} rows")
    if detect_format(p) != "parquet":
        lf = scan(p) if columns is None else scan(p).select(columns)
        for s in range(start, stop, batch_rows):
            yield lf.slice(s, min(batch_rows, stop - s)).collect()
        return
    pf = pq.ParquetFile(p)
    first = 0  # position of the current row group's first row
    try:
        for g in range(pf.metadata.num_row_groups):
            size = pf.metadata.row_group(g).num_rows
            if first + size <= start:
                first += size
                continue
            if first >= stop:
                break
            pos = first
            for rb in pf.iter_batches(batch_size=batch_rows, row_groups=[g], columns=columns):
                lo, hi = max(start, pos), min(stop, pos + rb.num_rows)
                if lo < hi:
                    yield pl.DataFrame(pl.from_arrow(rb.slice(lo - pos, hi - lo)))
                pos += rb.num_rows
            first += size
    except OSError as e:
        raise DataError(f"{p}: read failed part-way (truncated or corrupt?): {e}") from e


def read_row_range(
    path: str | Path, start: int, stop: int, *, columns: list[str] | None = None
) -> pl.DataFrame:
    """Rows ``[start, stop)`` of ``path`` as one frame."""
    frames = list(iter_row_range(path, start, stop, batch_rows=max(1, stop - start), columns=columns))
    if not frames:
        lf = scan(path) if columns is None else scan(path).select(columns)
        return lf.head(0).collect()
    return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
