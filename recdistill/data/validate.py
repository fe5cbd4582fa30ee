"""Check a data file against its schema before any work is done on it.

Errors name the file, the column, how many rows are affected and an example value, and say what
was expected. Documented handling instead of an error:
  * NaN or null in a dense column: missing (standardised to 0 plus a missing indicator);
  * null in an id column, or an empty/null list: missing (embedding row 0);
  * ``true_ctr`` is optional; ``label`` may be null only in an unlabelled (transfer) file;
  * columns listed in the schema's ``ignore`` are allowed and not checked;
  * a missing row key column when the schema keys rows by position (``"row_key": null``), or in
    a source file (``key_optional``) that the ``data`` stage will key by position;
  * a text multi-valued column (``sep``) in which the separator never occurs: a warning
    (:attr:`FileSummary.warnings`), since every row then holds at most one id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recdistill.data.readers import Format, scan
from recdistill.data.schema import Schema
from recdistill.errors import DataError, SchemaError


@dataclass(frozen=True)
class FileSummary:
    path: str
    rows: int
    positives: int
    labelled_rows: int
    requests: int | None
    users: int | None
    dense_missing: dict[str, int]
    warnings: tuple[str, ...] = field(default=())

    @property
    def ctr(self) -> float:
        return self.positives / self.labelled_rows if self.labelled_rows else float("nan")


def _is_id_dtype(dt: Any) -> bool:
    return dt.is_integer() or dt in (pl.String, pl.Categorical)


def check_columns(
    columns: dict[str, pl.DataType],
    schema: Schema,
    source: str,
    *,
    labelled: bool,
    key_optional: bool = False,
) -> None:
    """Column names and dtypes of one file against ``schema`` (no data is read)."""
    key_may_be_absent = key_optional or schema.keyed_by_position
    if labelled and schema.label not in columns:
        raise SchemaError(
            f"{source}: label column {schema.label!r} (named in {schema.source}) is missing; "
            f"the file has {list(columns)}"
        )
    required = [
        c
        for c in schema.all_columns
        if (labelled or c != schema.label) and not (c == schema.row_key and key_may_be_absent)
    ]
    missing = [c for c in required if c not in columns]
    if missing:
        raise SchemaError(f"{source}: missing columns {missing} named in {schema.source}")
    known = set(schema.all_columns) | set(schema.ignore) | ({schema.true_ctr} if schema.true_ctr else set())
    extra = [c for c in columns if c not in known]
    if extra:
        listed = ", ".join(f'"{c}"' for c in [*schema.ignore, *extra])
        raise SchemaError(
            f"{source}: extra columns {extra} are not in {schema.source}; add them to the schema as "
            f'features, or list them as unused with "ignore": [{listed}]'
        )
    for f in schema.features:
        dt = columns[f.name]
        if f.kind == "dense" and not (dt.is_numeric() or dt in (pl.Null, pl.Boolean)):
            raise SchemaError(f"{source}: dense column {f.name!r} must be numeric, found dtype {dt}")
        if f.kind == "categorical" and not (_is_id_dtype(dt) or dt == pl.Null):
            raise SchemaError(
                f"{source}: categorical column {f.name!r} must hold integer or string ids, found {dt}"
            )
        if f.kind == "multi":
            inner = dt.inner if isinstance(dt, pl.List) else None
            if f.sep is not None and inner is None and (_is_id_dtype(dt) or dt == pl.Null):
                continue  # text lists, "5|14|17"
            if inner is None or not (_is_id_dtype(inner) or inner == pl.Null):
                how = "" if f.sep else '; a text column such as "5|14|17" needs "sep": "|" in the schema'
                raise SchemaError(
                    f"{source}: multi-valued column {f.name!r} must be a list of integer or string ids, "
                    f"found {dt}{how}"
                )
    if schema.label in columns:
        dt = columns[schema.label]
        if not (dt.is_numeric() or dt in (pl.Boolean, pl.Null)):
            raise SchemaError(
                f"{source}: label column {schema.label!r} must hold 0/1 (or true/false), found dtype {dt}"
            )
    if schema.row_key in columns and not columns[schema.row_key].is_integer():
        raise SchemaError(
            f"{source}: row key {schema.row_key!r} must be an integer column, found {columns[schema.row_key]}"
        )


def validate_file(
    path: str | Path,
    schema: Schema,
    *,
    fmt: Format | None = None,
    labelled: bool = True,
    key_optional: bool = False,
) -> FileSummary:
    """Validate one file; returns a summary or raises :class:`DataError`/:class:`SchemaError`."""
    return validate_frame(
        scan(path, fmt=fmt), schema, str(path), labelled=labelled, key_optional=key_optional
    )


def validate_frame(
    lf: pl.LazyFrame, schema: Schema, src: str, *, labelled: bool = True, key_optional: bool = False
) -> FileSummary:
    """Validate the rows of ``lf`` (one file or several parts, named ``src`` in errors)."""
    try:
        columns = dict(lf.collect_schema())
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{src}: could not read columns: {e}") from e
    check_columns(columns, schema, src, labelled=labelled, key_optional=key_optional)
    has_label = schema.label in columns
    has_key = schema.row_key in columns

    exprs: list[pl.Expr] = [pl.len().alias("rows")]
    if has_key:
        exprs.append(pl.col(schema.row_key).n_unique().alias("keys"))
        exprs.append(pl.col(schema.row_key).null_count().alias("key_nulls"))
    if has_label:
        lab = pl.col(schema.label).cast(pl.Float64)
        bad = lab.is_not_null() & ~lab.is_in([0.0, 1.0])
        exprs += [
            lab.count().alias("labelled"),
            lab.sum().alias("positives"),
            bad.sum().alias("bad_labels"),
            pl.col(schema.label).filter(bad).first().alias("bad_label_example"),
        ]
    for role in (schema.request_id, schema.user_id):
        if role is not None:
            exprs.append(pl.col(role).n_unique().alias(f"n_{role}"))
    for f in schema.dense:
        c = pl.col(f.name).cast(pl.Float64)
        exprs += [
            c.is_infinite().sum().alias(f"{f.name}__inf"),
            (c.is_null() | c.is_nan()).sum().alias(f"{f.name}__missing"),
        ]
    text_lists = [f for f in schema.multi if f.sep is not None and not isinstance(columns[f.name], pl.List)]
    for f in text_lists:
        text = pl.col(f.name).cast(pl.String)
        exprs += [
            text.str.contains(f.sep or "", literal=True).sum().alias(f"{f.name}__with_sep"),
            (text.str.strip_chars() != "").sum().alias(f"{f.name}__nonempty"),
        ]
    for f in schema.features:
        dt = columns[f.name]
        if f in text_lists:
            c = pl.col(f.name).cast(pl.String).str.split(f.sep or "").explode().str.strip_chars()
            c = c.str.to_integer(strict=False)  # hashed (non-integer) elements are >= 0
        elif f.is_id and (dt.is_integer() or _list_of_ints(dt)):
            c = pl.col(f.name)
            if f.kind == "multi":
                c = c.list.explode()
        else:
            continue
        exprs.append((c < 0).sum().alias(f"{f.name}__neg"))
        exprs.append(c.min().alias(f"{f.name}__min"))
        if f.max_id is not None:
            exprs.append((c > f.max_id).sum().alias(f"{f.name}__huge"))
            exprs.append(c.max().alias(f"{f.name}__max"))
    try:
        st = lf.select(exprs).collect().row(0, named=True)
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{src}: could not read: {e}") from e

    rows = int(st["rows"])
    if rows == 0:
        raise DataError(f"{src}: no rows")
    if has_key and (st["key_nulls"] or st["keys"] != rows):
        raise DataError(
            f"{src}: row key {schema.row_key!r} must be unique and non-null: {rows} rows, "
            f'{st["keys"]} distinct keys, {st["key_nulls"]} nulls; set "row_key": null in '
            f"{schema.source} to key rows by position"
        )
    labelled_rows = int(st.get("labelled", 0) or 0)
    if has_label:
        if st["bad_labels"]:
            raise DataError(
                f"{src}: label column {schema.label!r}: {st['bad_labels']} rows are not 0 or 1 "
                f"(e.g. {st['bad_label_example']!r}); a label must be 0/1 or true/false"
            )
        if labelled and labelled_rows != rows:
            raise DataError(
                f"{src}: column {schema.label!r}: {rows - labelled_rows} of {rows} rows have no label; "
                "only a transfer (unlabelled) file may"
            )
    for f in schema.dense:
        if st[f"{f.name}__inf"]:
            inf_rows = lf.with_row_index("_position").filter(pl.col(f.name).cast(pl.Float64).is_infinite())
            key = schema.row_key if has_key else "_position"
            ex = inf_rows.select(key, f.name).first().collect().row(0)
            where = f"{schema.row_key}={ex[0]}" if has_key else f"row {ex[0]}"
            raise DataError(
                f"{src}: dense column {f.name!r}: {st[f.name + '__inf']} rows hold inf "
                f"(e.g. {where}: {ex[1]}); expected finite values, NaN/null for missing"
            )
    warnings = []
    for f in text_lists:
        if st[f"{f.name}__nonempty"] and not st[f"{f.name}__with_sep"]:
            warnings.append(
                f"{src}: multi-valued column {f.name!r}: the separator {f.sep!r} never occurs in "
                f'{st[f.name + "__nonempty"]} non-empty values, so every row holds one id; check "sep"'
            )
    for f in schema.features:
        if st.get(f"{f.name}__neg"):
            raise DataError(
                f"{src}: id column {f.name!r}: {st[f.name + '__neg']} negative ids (e.g. {st[f.name + '__min']}); "
                "ids must be >= 0 (use null for missing)"
            )
        if st.get(f"{f.name}__huge"):
            raise DataError(
                f"{src}: id column {f.name!r}: {st[f.name + '__huge']} ids above max_id={f.max_id} "
                f"(e.g. {st[f.name + '__max']})"
            )
    return FileSummary(
        path=src,
        rows=rows,
        positives=int(st.get("positives", 0) or 0),
        labelled_rows=labelled_rows,
        requests=st.get(f"n_{schema.request_id}") if schema.request_id else None,
        users=st.get(f"n_{schema.user_id}") if schema.user_id else None,
        dense_missing={f.name: int(st[f"{f.name}__missing"]) for f in schema.dense},
        warnings=tuple(warnings),
    )


def _list_of_ints(dt: pl.DataType) -> bool:
    return isinstance(dt, pl.List) and dt.inner is not None and dt.inner.is_integer()
