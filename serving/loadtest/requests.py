"""A pool of real ranking requests of N candidates each, read from a data file.

Rows become raw request tensors through :func:`recdistill.data.raw.raw_batch_from_frame` (the one
function every client uses), so load-test traffic carries the ids and values a model really sees,
not zeros or random ids. When the file has the schema's request-id column, one request is one
request id (its rows in file order; a request with fewer than N rows repeats its own rows, one
with more keeps its first N). Without one, consecutive rows form requests. At most
``pool_size`` requests are built; the generators cycle through them.

Example::

    pool = build_request_pool(Path("runs/demo/data/test.parquet"), schema, candidates=128)
    pool.batches[0].dense.shape   # (128, n_dense)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recdistill.data.batch import RawBatch
from recdistill.data.raw import raw_batch_from_frame
from recdistill.data.readers import iter_frames
from recdistill.data.schema import Schema
from recdistill.errors import DataError

_CHUNK_ROWS = 65_536
_MAX_ROWS = 2_000_000  # bound on rows read to fill a pool


@dataclass(frozen=True)
class RequestPool:
    """``batches``: each a :class:`RawBatch` of exactly ``candidates`` rows (``[N, ...]``)."""

    batches: tuple[RawBatch, ...]
    candidates: int
    source: str
    grouped_by: str | None  # the request-id column used, or None for consecutive rows
    padded: int  # requests that had fewer than N rows and repeat their own rows
    rows_read: int

    def __len__(self) -> int:
        return len(self.batches)

    def describe(self) -> str:
        how = f"grouped by {self.grouped_by!r}" if self.grouped_by else "consecutive rows"
        pad = f", {self.padded} padded by repeating their rows" if self.padded else ""
        return f"{len(self)} requests x {self.candidates} candidates from {self.source} ({how}{pad})"


def build_request_pool(
    path: Path, schema: Schema, *, candidates: int = 128, pool_size: int = 256
) -> RequestPool:
    """Read just enough of ``path`` (Parquet/CSV/Criteo TSV) to build ``pool_size`` requests."""
    if candidates < 1 or pool_size < 1:
        raise DataError(f"{path}: candidates and pool_size must be >= 1, got {candidates}, {pool_size}")
    frame = _read_head(Path(path), schema, candidates=candidates, pool_size=pool_size)
    if frame.height == 0:
        raise DataError(f"{path}: no rows to build load-test requests from")
    rid = schema.request_id if schema.request_id is not None and schema.request_id in frame.columns else None
    if rid is not None:
        index, padded = _grouped_index(frame.get_column(rid), candidates, pool_size)
    else:
        index, padded = _consecutive_index(frame.height, candidates, pool_size)
    raw = raw_batch_from_frame(frame[index], schema, source=str(path))
    batches = tuple(raw.slice(i * candidates, (i + 1) * candidates) for i in range(len(index) // candidates))
    return RequestPool(batches, candidates, str(path), rid, padded, frame.height)


def _read_head(path: Path, schema: Schema, *, candidates: int, pool_size: int) -> pl.DataFrame:
    """The first rows of ``path``: enough for ``pool_size`` requests, at most ``_MAX_ROWS``."""
    frames: list[pl.DataFrame] = []
    rows = 0
    seen_ids: set[int] = set()
    rid = schema.request_id
    for chunk in iter_frames(path, batch_rows=_CHUNK_ROWS):
        missing = [c for c in schema.feature_names if c not in chunk.columns]
        if missing:
            raise DataError(f"{path}: missing feature columns {missing} (schema {schema.source})")
        keep = [
            c for c in dict.fromkeys([*schema.feature_names, *([rid] if rid else [])]) if c in chunk.columns
        ]
        chunk = chunk.select(keep)
        frames.append(chunk)
        rows += chunk.height
        if rid is not None and rid in chunk.columns:
            seen_ids.update(chunk.get_column(rid).drop_nulls().unique().to_list())
            # one more id than needed, so the last needed request is complete
            if len(seen_ids) > pool_size or rows >= _MAX_ROWS:
                break
        elif rows >= pool_size * candidates or rows >= _MAX_ROWS:
            break
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def _grouped_index(request_ids: pl.Series, candidates: int, pool_size: int) -> tuple[np.ndarray, int]:
    """Row indices, ``candidates`` per request id (first ``pool_size`` ids in file order)."""
    frame = pl.DataFrame({"rid": request_ids, "row": np.arange(request_ids.len(), dtype=np.int64)})
    groups = frame.group_by("rid", maintain_order=True).agg(pl.col("row")).head(pool_size)
    parts: list[np.ndarray] = []
    padded = 0
    for rows in groups.get_column("row").to_list():
        idx = np.asarray(rows, dtype=np.int64)
        if idx.size < candidates:
            padded += 1
            idx = np.resize(idx, candidates)  # repeats the request's own rows
        parts.append(idx[:candidates])
    return np.concatenate(parts), padded


def _consecutive_index(n_rows: int, candidates: int, pool_size: int) -> tuple[np.ndarray, int]:
    """Consecutive rows; when the file holds fewer than one request, rows wrap around."""
    n_requests = max(1, min(pool_size, n_rows // candidates))
    idx = np.arange(n_requests * candidates, dtype=np.int64) % n_rows
    return idx, int(n_rows < candidates)
