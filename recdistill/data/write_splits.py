"""Write the split files of a run (``runs/<name>/data/<split>.parquet``) from the user's files.

What :func:`write_split_files` does, in order, so that every later stage reads one kind of file:

1. check each source file's columns against the schema (no data read yet): missing label or
   columns, extra columns not listed in ``ignore``, wrong dtypes, a header naming a column twice;
2. convert CSV/TSV/Criteo text to Parquet once, streaming (``.staging/`` inside the new data
   directory), so no later pass parses text again;
3. validate every source's rows (labels 0/1, no inf, ids >= 0, ...), errors naming the user's file;
4. with one log (``data.path``), compute each row's split (:mod:`recdistill.data.split_log`);
5. stream the rows, in source order and in bounded memory, into one Parquet file per split:
   the schema's columns only (``ignore``-d ones dropped), text lists (``"sep"``) parsed to lists
   of int64, and, when the schema names no row key or the sources lack the named column, a row key
   column :data:`~recdistill.data.schema.ROW_POSITION` = the row's position in its split file
   (0, 1, 2, ...), the same in every run over the same input;
6. write the run's ``schema.json`` (the row key it now has, no ``ignore``) and validate the files.

Parquet split files that need none of step 5 (their own row key, no ignored or text-list
columns, one file per split, no split to compute) are linked, not copied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from recdistill.config.data import SplitConfig
from recdistill.data.raw import parse_id_lists
from recdistill.data.readers import Format, detect_format, scan, scan_files
from recdistill.data.schema import ROW_POSITION, Schema
from recdistill.data.split_log import split_codes
from recdistill.data.splits import LABELLED_SPLITS
from recdistill.data.validate import FileSummary, check_columns, validate_file, validate_frame
from recdistill.errors import DataError

BATCH_ROWS = 262_144
STAGING = ".staging"
Say = Callable[[str], None]  # where progress lines go (print, or nowhere)


@dataclass(frozen=True)
class Source:
    """Files that become one split (``split`` set) or, split for us, every labelled split (``log``)."""

    name: str  # "train", "valid", "test", "transfer" or "log"
    paths: tuple[Path, ...]

    @property
    def label(self) -> str:
        """How errors name it: the user's file, or the first part and how many there are."""
        if len(self.paths) == 1:
            return str(self.paths[0])
        return f"{self.paths[0]} (+{len(self.paths) - 1} more files)"

    @property
    def labelled(self) -> bool:
        return self.name != "transfer"


def write_split_files(
    out_dir: Path,
    schema: Schema,
    sources: list[Source],
    *,
    fmt: Format | None = None,
    split: SplitConfig | None = None,
    log: Say | None = None,
) -> dict[str, Any]:
    """Write ``<split>.parquet`` (or links) and ``schema.json`` into ``out_dir``; returns metrics.

    ``sources``: either one ``Source("log", ...)`` (with ``split``) plus optionally a transfer
    source, or one source per split. ``fmt``: the files' format (default: from their names).
    """
    say: Say = log or (lambda msg: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    fmt = fmt or detect_format(sources[0].paths[0])
    columns = {s.name: _check_source_columns(s, schema, fmt) for s in sources}
    schema, add_position = _resolve_row_key(schema, sources, columns, say)
    notes: list[str] = []

    if _can_link(schema, sources, columns, fmt, split, add_position):
        for s in sources:
            (out_dir / f"{s.name}.parquet").symlink_to(s.paths[0].resolve())
        say("data: Parquet split files already hold the schema's columns: linked, not copied")
    else:
        staged = {s.name: _as_parquet(s, schema, fmt, out_dir / STAGING, say) for s in sources}
        for s in sources:
            summary = validate_frame(
                pl.scan_parquet(list(staged[s.name])), schema, s.label, labelled=s.labelled, key_optional=True
            )
            notes += summary.warnings
        plan: dict[str, np.ndarray | None] = {}
        for s in sources:
            if s.name == "log":
                assert split is not None, "a log source needs a split"
                plan["log"] = split_codes(pl.scan_parquet(list(staged["log"])), split, schema, s.label)
            else:
                plan[s.name] = None
        _write(out_dir, schema, sources, staged, plan, add_position, say)
        _remove(out_dir / STAGING)

    run_schema = dataclasses.replace(schema, ignore=(), source=str(out_dir / "schema.json"))
    run_schema.save(out_dir)
    metrics: dict[str, Any] = {
        "row_key": "position" if schema.keyed_by_position else schema.row_key,
        "sources": {s.name: [str(p) for p in s.paths] for s in sources},
    }
    for name in (*LABELLED_SPLITS, "transfer"):
        path = out_dir / f"{name}.parquet"
        if not path.exists():
            continue
        summary = validate_file(path, run_schema, labelled=name != "transfer")
        metrics[name] = _summary(summary)
    for note in notes:
        say(f"data: warning: {note}")
    if notes:
        metrics["warnings"] = notes
    return metrics


def _summary(s: FileSummary) -> dict[str, Any]:
    return {"rows": s.rows, "ctr": s.ctr, "requests": s.requests, "users": s.users}


# -- 1. columns and the row key ---------------------------------------------------------------------
def _check_source_columns(source: Source, schema: Schema, fmt: Format) -> dict[str, pl.DataType]:
    first: dict[str, pl.DataType] | None = None
    for p in source.paths:
        try:
            cols = dict(scan(p, fmt=fmt).collect_schema())
        except pl.exceptions.PolarsError as e:
            raise DataError(f"{p}: could not read columns: {e}") from e
        check_columns(cols, schema, str(p), labelled=source.labelled, key_optional=True)
        first = first or cols
    assert first is not None
    return first


def _resolve_row_key(
    schema: Schema, sources: list[Source], columns: dict[str, dict[str, pl.DataType]], say: Say
) -> tuple[Schema, bool]:
    """The schema with the row key the split files will have, and whether to write position keys.

    Every source has the named key column: it is the key. None has it (or the schema names none):
    rows are keyed by position (``ROW_POSITION``, written by :class:`_SplitWriter`). Some have it:
    an error naming a file without it.
    """
    have = [s for s in sources if schema.row_key in columns[s.name]]
    if len(have) == len(sources):
        return schema, False
    if have:
        lack = [s for s in sources if s not in have]
        raise DataError(
            f"{lack[0].label}: has no row key column {schema.row_key!r} but {have[0].label} has; every file "
            f'must have it, or set "row_key": null in {schema.source} to key rows by position'
        )
    if not schema.keyed_by_position:
        say(
            f"data: the files have no row key column {schema.row_key!r} (named in {schema.source}): rows "
            f"are keyed by their position in each split file (column {ROW_POSITION!r})"
        )
    return dataclasses.replace(schema, row_key=ROW_POSITION), True


def _needs_rewrite(schema: Schema, cols: dict[str, pl.DataType]) -> bool:
    text_lists = any(f.sep is not None and not isinstance(cols[f.name], pl.List) for f in schema.multi)
    return text_lists or any(c in cols for c in schema.ignore)


def _can_link(
    schema: Schema,
    sources: list[Source],
    columns: dict[str, dict[str, pl.DataType]],
    fmt: Format,
    split: SplitConfig | None,
    add_position: bool,
) -> bool:
    return (
        fmt == "parquet"
        and split is None
        and not add_position
        and all(len(s.paths) == 1 for s in sources)
        and not any(_needs_rewrite(schema, columns[s.name]) for s in sources)
    )


# -- 2. text -> Parquet, once -----------------------------------------------------------------------
def _as_parquet(source: Source, schema: Schema, fmt: Format, staging: Path, say: Say) -> tuple[Path, ...]:
    if fmt == "parquet":
        return source.paths
    text = tuple(f.name for f in schema.multi if f.sep is not None)
    staging.mkdir(parents=True, exist_ok=True)
    out = staging / f"{source.name}.parquet"
    say(f"data: converting {source.label} ({fmt}) to Parquet")
    try:
        scan_files(list(source.paths), fmt=fmt, text=text).sink_parquet(out)
    except pl.exceptions.PolarsError as e:
        raise DataError(
            f"{source.label}: could not read as {fmt}: {e}; a column whose type changes after the "
            "first 10,000 rows needs a consistent type in every row"
        ) from e
    return (out,)


# -- 5. rows -> split files -------------------------------------------------------------------------
def _write(
    out_dir: Path,
    schema: Schema,
    sources: list[Source],
    staged: dict[str, tuple[Path, ...]],
    plan: dict[str, np.ndarray | None],
    add_position: bool,
    say: Say,
) -> None:
    writers: dict[str, _SplitWriter] = {}
    done = False
    try:
        for s in sources:
            codes = plan[s.name]
            names = list(LABELLED_SPLITS) if codes is not None else [s.name]
            for name in names:
                writers[name] = _SplitWriter(out_dir / f"{name}.parquet", add_position=add_position)
            say(f"data: writing {', '.join(names)} from {s.label}")
            at = 0
            for frame in _frames(staged[s.name], schema):
                if codes is None:
                    writers[s.name].write(frame)
                else:
                    part = codes[at : at + frame.height]
                    for k, name in enumerate(names):
                        mask = part == k
                        if mask.any():
                            writers[name].write(frame.filter(pl.Series(mask)))
                at += frame.height
        done = True
    finally:
        for w in writers.values():
            w.close(commit=done)


def _frames(paths: tuple[Path, ...], schema: Schema) -> Iterator[pl.DataFrame]:
    """Batches of the schema's columns of ``paths``, in order, with text lists parsed."""
    wanted = [*schema.all_columns, *([schema.true_ctr] if schema.true_ctr else [])]
    for p in paths:
        pf = pq.ParquetFile(p)
        names = set(pf.schema_arrow.names)
        cols = [c for c in dict.fromkeys(wanted) if c in names]
        try:
            for rb in pf.iter_batches(batch_size=BATCH_ROWS, columns=cols):
                frame = pl.DataFrame(pl.from_arrow(rb))
                parsed = [
                    parse_id_lists(frame.get_column(f.name), f.sep)
                    for f in schema.multi
                    if f.sep is not None and not isinstance(frame.schema[f.name], pl.List)
                ]
                yield frame.with_columns(parsed) if parsed else frame
        except OSError as e:
            raise DataError(f"{p}: read failed part-way (truncated or corrupt?): {e}") from e


class _SplitWriter:
    """One split file: rows appended batch by batch; adds the positional row key if needed.

    Written to ``<name>.parquet.part`` and renamed when closed; the data directory as a whole is
    written under a temporary name by the stage, so a crash leaves no split that looks complete.
    """

    def __init__(self, path: Path, *, add_position: bool) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".part")
        self.add_position = add_position
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._arrow: pa.Schema | None = None

    def write(self, frame: pl.DataFrame) -> None:
        if self.add_position:
            keys = pl.Series(ROW_POSITION, np.arange(self.rows, self.rows + frame.height, dtype=np.int64))
            frame = frame.insert_column(0, keys)
        table = frame.to_arrow()
        if self._writer is None:
            self._arrow = table.schema
            self._writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
        elif table.schema != self._arrow:
            try:
                table = table.cast(self._arrow)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
                raise DataError(
                    f"{self.path.name}: a part of the source has other column types than the first "
                    f"({table.schema} vs {self._arrow}): {e}"
                ) from e
        self._writer.write_table(table)
        self.rows += frame.height

    def close(self, *, commit: bool) -> None:
        """Finish the file; ``commit=False`` (a failed write) deletes it instead of renaming it."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            if commit:
                self.tmp.rename(self.path)
            else:
                self.tmp.unlink()


def _remove(path: Path) -> None:
    if path.is_dir():
        for p in path.iterdir():
            p.unlink()
        path.rmdir()
