"""Chunked, atomic Parquet writing: one :class:`SplitWriter` per output file.

Rows are buffered per file and written as one row group once ``chunk_rows`` rows are buffered,
so memory holds at most about ``chunk_rows`` rows per open file. Each file is written under a
temporary name and renamed only when the whole generation succeeded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from data_gen.sampler import Block
from recdistill.data.schema import Schema
from recdistill.errors import SchemaError
from recdistill.io_utils import atomic_path

COMPRESSION = "zstd"
_KIND_TYPES = {"dense": pa.float32(), "categorical": pa.int64(), "multi": pa.list_(pa.int64())}


def arrow_schema(schema: Schema) -> pa.Schema:
    """Column types: keys int64, label int8 (null when unlabelled), true_ctr float32, features by kind."""
    assert schema.request_id is not None and schema.user_id is not None and schema.true_ctr is not None
    fields = [
        pa.field(schema.row_key, pa.int64(), nullable=False),
        pa.field(schema.request_id, pa.int64(), nullable=False),
        pa.field(schema.user_id, pa.int64(), nullable=False),
        pa.field(schema.label, pa.int8()),
        pa.field(schema.true_ctr, pa.float32(), nullable=False),
    ]
    fields += [pa.field(f.name, _KIND_TYPES[f.kind]) for f in schema.features if f.name != schema.user_id]
    return pa.schema(fields)


def _padded_list(values: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]) -> pa.ListArray:
    """``values [R, T]`` left-aligned and -1 padded, ``lengths [R]`` -> a list array of R lists."""
    offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = values[np.arange(values.shape[1])[None, :] < lengths[:, None]]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.int64()))


def block_table(
    block: Block,
    schema: Schema,
    candidates: int,
    true_ctr: npt.NDArray[np.float32],
    click: npt.NDArray[np.int8] | None,
) -> pa.Table:
    """One row per candidate, columns in :func:`arrow_schema` order; ``click=None`` writes nulls."""
    target = arrow_schema(schema)
    row_req = np.repeat(np.arange(block.n_requests), candidates)
    k = np.tile(np.arange(candidates, dtype=np.int64), block.n_requests)
    request = block.request_id[row_req]

    def dense(x: npt.NDArray[np.float64]) -> pa.Array:
        return pa.array(x.astype(np.float32))

    columns: dict[str, pa.Array] = {
        schema.row_key: pa.array(request * candidates + k),
        str(schema.request_id): pa.array(request),
        str(schema.user_id): pa.array(block.user[row_req]),
        schema.label: pa.nulls(block.n_rows, pa.int8()) if click is None else pa.array(click),
        str(schema.true_ctr): pa.array(true_ctr),
        "user_age_bucket": pa.array(block.age[row_req]),
        "user_activity": dense(block.activity[row_req]),
        "user_hist": _padded_list(block.hist, block.hist_len).take(pa.array(row_req)),
        "user_hist_cat": _padded_list(block.hist_cat, block.hist_len).take(pa.array(row_req)),
        "user_long_hist": _padded_list(block.long_hist, block.long_len).take(pa.array(row_req)),
        "item_id": pa.array(block.item),
        "item_category": pa.array(block.category),
        "item_price": dense(block.price),
        "item_ctr_7d": dense(block.ctr_7d),
        "item_impr_7d": dense(block.impr_7d),
        "item_quality": dense(block.quality),
        "context_id": pa.array(block.context[row_req]),
        "position": pa.array(block.position),
    }
    missing = [n for n in target.names if n not in columns]
    if missing:
        raise SchemaError(f"data_gen: schema columns {missing} have no generator (writer.block_table)")
    return pa.Table.from_arrays([columns[n] for n in target.names], schema=target)


class SplitWriter:
    """Appends tables to one Parquet file in row groups of at least ``chunk_rows`` rows."""

    def __init__(self, writer: pq.ParquetWriter, chunk_rows: int) -> None:
        self._writer = writer
        self._chunk_rows = chunk_rows
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= self._chunk_rows:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer)
        self._writer.write_table(table, row_group_size=table.num_rows)
        self.rows += table.num_rows
        self._buffer, self._buffered = [], 0


@contextmanager
def split_writer(path: Path, schema: pa.Schema, chunk_rows: int) -> Iterator[SplitWriter]:
    """A :class:`SplitWriter` on a temporary file, renamed onto ``path`` if the block succeeds."""
    with atomic_path(path) as tmp:
        pw = pq.ParquetWriter(tmp, schema, compression=COMPRESSION)
        try:
            w = SplitWriter(pw, chunk_rows)
            yield w
            w.flush()
        finally:
            pw.close()
