"""Infer a schema from a sample of a click log (``recdistill init-schema``), for the user to edit.

The label is never guessed: it is given (``label=``), and checked to hold 0/1 or true/false.
Every other column gets a kind, decided in this order (the first rule that applies wins; the
``why`` column of the printed table says which):

1. a role given by the caller: ``user`` (the user id: a key and a categorical feature),
   ``request`` (a key only), ``time`` (ignored as a feature; a time split reads it), ``row_key``,
   or a forced kind (``categorical=``, ``dense=``, ``ignore=``);
2. constant (at most one distinct value in the sample) or all null: ignored;
3. a list column: multi (``max_len`` = the longest list in the sample, at most 50);
4. text: multi with ``sep`` when ``|`` or ``;`` occurs in at least 5% of the values (``,`` in at
   least half); ignored when it parses as dates (a time column: pass it as ``time``);
   otherwise categorical (text ids are hashed);
5. true/false: dense (0/1);
6. integers: categorical when the name looks like an id (``*_id``, ``user``, ``item``, ...), when
   there are few distinct values (at most 32), or when most values are distinct (ids, hashes);
   otherwise dense (counts);
7. floats: dense.

Dense features whose values are all >= 0 and reach above 100 get ``transform: log1p``; categorical
features with more than 100 distinct values get ``min_count: 2`` (ids seen once share the
out-of-vocabulary row). ``group`` (user / item / context) follows the name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from recdistill.data.readers import Format, scan_files
from recdistill.data.schema import SCHEMA_VERSION, Schema
from recdistill.data.split_log import parse_dates, time_values
from recdistill.errors import DataError, SchemaError

SAMPLE_ROWS = 100_000
MAX_LIST_LEN = 50
FEW_DISTINCT = 32
MIN_COUNT_ABOVE = 100
LOG1P_ABOVE = 100.0
SEPARATORS: tuple[tuple[str, float], ...] = (("|", 0.05), (";", 0.05), (",", 0.5))
_ID_NAME = re.compile(
    r"(^|_)(id|ids|uid|key|hash|sku|code)$|^(user|item|ad|ads|advertiser|campaign|creative|product|movie"
    r"|song|track|video|query|site|app|device|domain|publisher|shop|store|category|cat|brand|city"
    r"|country|region|zip|os|browser|gender|occupation|genre)s?(_|$)",
    re.IGNORECASE,
)
_USER_NAME = re.compile(r"user|age|gender|occupation|hist|zip|member|customer|visitor|uid", re.IGNORECASE)
_ITEM_NAME = re.compile(
    r"item|movie|ad|product|genre|categ|cat_|price|brand|title|creative|campaign|advertiser|song|video|sku",
    re.IGNORECASE,
)
_LABEL_NAME = re.compile(
    r"^(click|clicked|clicks|label|target|y|is_click|conversion|converted|purchase)$", re.I
)


@dataclass(frozen=True)
class ColumnReport:
    """One row of the printed table: what was inferred for a column, and why."""

    name: str
    dtype: str
    kind: str  # dense | categorical | multi | label | user | request | time | row key | ignored
    distinct: int
    nulls: int
    example: str
    why: str


@dataclass(frozen=True)
class InferredSchema:
    schema: dict[str, Any]  # schema.json content (also checked by Schema.from_dict)
    columns: tuple[ColumnReport, ...]
    rows_sampled: int


def read_sample(paths: Sequence[Path], *, fmt: Format | None = None, rows: int = SAMPLE_ROWS) -> pl.DataFrame:
    """The first ``rows`` rows of the files (in order), as the ``data`` stage reads them."""
    try:
        return scan_files(list(paths), fmt=fmt).head(rows).collect()
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{paths[0]}: could not read: {e}") from e


def label_candidates(sample: pl.DataFrame) -> list[str]:
    """Columns that could be the label: 0/1 or true/false values, or a label-like name."""
    out = []
    for name in sample.columns:
        s = sample.get_column(name)
        binary = s.dtype == pl.Boolean or (s.dtype.is_numeric() and _zero_one(s.drop_nulls()).len() == 0)
        binary = binary and s.drop_nulls().len() > 0
        if binary or (_LABEL_NAME.match(name) and not isinstance(s.dtype, pl.List)):
            out.append(name)
    return out


def infer_schema(
    sample: pl.DataFrame,
    *,
    source: str,
    label: str,
    user: str | None = None,
    request: str | None = None,
    time: str | None = None,
    row_key: str | None = None,
    categorical: Sequence[str] = (),
    dense: Sequence[str] = (),
    ignore: Sequence[str] = (),
) -> InferredSchema:
    """A schema for ``sample`` (read from ``source``, which errors name); see the module docstring."""
    roles: list[tuple[str, str]] = [("--label", label)]
    roles += [(flag, c) for flag, c in (("--user", user), ("--request", request), ("--time", time)) if c]
    roles += [("--row-key", row_key)] if row_key else []
    roles += [("--categorical", c) for c in categorical if c != user]
    roles += [("--dense", c) for c in dense] + [("--ignore", c) for c in ignore]
    _check_roles(roles, sample, source)
    _check_label(sample.get_column(label), source)
    if time is not None:
        time_values(sample.get_column(time), source)
    if row_key is not None and not sample.schema[row_key].is_integer():
        raise SchemaError(
            f"{source}: --row-key column {row_key!r} must hold integers, found {sample.schema[row_key]}"
        )

    features: list[dict[str, Any]] = []
    ignored: list[str] = []
    reports: list[ColumnReport] = []
    for name in sample.columns:
        s = sample.get_column(name)
        if name == label:
            kind, why, spec = "label", "--label", None
        elif name == request:
            kind, why, spec = "request", "--request (a key, not a feature)", None
        elif name == time:
            kind, why, spec = "time", "--time (ignored as a feature; split by it)", None
        elif name == row_key:
            kind, why, spec = "row key", "--row-key", None
        elif name in ignore:
            kind, why, spec = "ignored", "--ignore", None
        else:
            forced = (
                "categorical" if name in categorical or name == user else "dense" if name in dense else None
            )
            spec, why = _feature(s, forced)
            if name == user:
                why = "--user (a key and a feature)"
            kind = spec["kind"] if spec else "ignored"
        if spec is not None:
            features.append(spec)
        elif kind in ("ignored", "time"):
            ignored.append(name)
        reports.append(_report(s, kind, why))
    if not features:
        raise SchemaError(f"{source}: no column is left as a feature; pass --categorical or --dense")
    raw: dict[str, Any] = {
        "version": SCHEMA_VERSION,
        "label": label,
        "row_key": row_key,
        "request_id": request,
        "user_id": user,
        "true_ctr": None,
        "ignore": ignored,
        "features": features,
    }
    Schema.from_dict(raw, source=source)  # the result must load
    return InferredSchema(schema=raw, columns=tuple(reports), rows_sampled=sample.height)


def _check_roles(roles: list[tuple[str, str]], sample: pl.DataFrame, source: str) -> None:
    seen: dict[str, str] = {}
    for flag, col in roles:
        if col not in sample.columns:
            raise SchemaError(
                f"{source}: {flag} names column {col!r}, which is not in the file; columns: {sample.columns}"
            )
        if col in seen:
            raise SchemaError(
                f"{source}: column {col!r} is named twice ({seen[col]} and {flag}); give it one role"
            )
        seen[col] = flag


def _check_label(s: pl.Series, source: str) -> None:
    if isinstance(s.dtype, pl.List):
        raise SchemaError(
            f"{source}: --label {s.name!r} is a list column ({s.dtype}); a label is one 0/1 value per row"
        )
    if s.dtype == pl.Boolean:
        return
    values = s.drop_nulls()
    if not s.dtype.is_numeric():
        raise SchemaError(
            f"{source}: label column {s.name!r} holds {s.dtype} values (e.g. {values.first()!r}); "
            "it must be 0/1 or true/false"
        )
    bad = _zero_one(values)
    if bad.len():
        raise SchemaError(
            f"{source}: label column {s.name!r} holds values other than 0/1 (e.g. {bad.first()!r}, "
            f"{bad.len()} of {values.len()} sampled rows); derive a 0/1 column (e.g. rating >= 4) first"
        )


def _zero_one(values: pl.Series) -> pl.Series:
    """The values (numeric, no nulls) that are neither 0 nor 1."""
    v = values.cast(pl.Float64)
    return values.filter(~((v == 0.0) | (v == 1.0)))


def _feature(s: pl.Series, forced: str | None) -> tuple[dict[str, Any] | None, str]:
    """The feature entry for one column (None: ignored) and the reason."""
    values = s.drop_nulls()
    distinct = values.n_unique() if not isinstance(s.dtype, pl.List) else values.list.len().n_unique()
    base = {"name": s.name, "group": _group(s.name)}
    if forced == "dense":
        if not (s.dtype.is_numeric() or s.dtype == pl.Boolean):
            raise SchemaError(f"--dense {s.name!r}: the column holds {s.dtype}, not numbers")
        return _dense(base, values), "--dense"
    if forced == "categorical":
        if not (s.dtype.is_integer() or s.dtype == pl.String):
            raise SchemaError(
                f"--categorical {s.name!r}: the column holds {s.dtype}, not integer or text ids"
            )
        return _categorical(base, values), "--categorical"
    if values.len() == 0 or (distinct <= 1 and not isinstance(s.dtype, pl.List)):
        return None, "constant" if values.len() else "all null"
    if isinstance(s.dtype, pl.List):
        inner = s.dtype.inner
        if inner is None or not (inner.is_integer() or inner == pl.String):
            return None, f"list of {inner}: not ids"
        longest = int(values.list.len().max() or 1)  # type: ignore[arg-type]
        return {**base, "kind": "multi", "max_len": max(1, min(longest, MAX_LIST_LEN))}, "list"
    if s.dtype == pl.String:
        return _text(base, values)
    if s.dtype == pl.Boolean:
        return _dense(base, values.cast(pl.Int8)), "true/false"
    if s.dtype.is_integer():
        if _ID_NAME.search(s.name):
            return _categorical(base, values), "integers, id-like name"
        if distinct <= FEW_DISTINCT:
            return _categorical(base, values), f"integers, {distinct} distinct values"
        if distinct > 0.5 * values.len():
            return _categorical(base, values), "integers, mostly distinct (ids)"
        return _dense(base, values), "integers (counts)"
    if s.dtype.is_float():
        return _dense(base, values), "floats"
    return None, f"dtype {s.dtype} is not supported"


def _text(base: dict[str, Any], values: pl.Series) -> tuple[dict[str, Any] | None, str]:
    nonempty = values.filter(values.str.strip_chars() != "")
    for sep, share in SEPARATORS:
        if nonempty.len() and nonempty.str.contains(sep, literal=True).mean() >= share:  # type: ignore[operator]
            longest = int(nonempty.str.split(sep).list.len().max() or 1)  # type: ignore[arg-type]
            spec = {**base, "kind": "multi", "max_len": max(1, min(longest, MAX_LIST_LEN)), "sep": sep}
            return spec, f"text lists separated by {sep!r}"
    if nonempty.len() and parse_dates(nonempty).is_not_null().mean() >= 0.9:  # type: ignore[operator]
        return None, "dates: a time column? pass --time to split by it"
    return _categorical(base, values), "text ids (hashed)"


def _categorical(base: dict[str, Any], values: pl.Series) -> dict[str, Any]:
    spec = {**base, "kind": "categorical"}
    if values.n_unique() > MIN_COUNT_ABOVE:
        spec["min_count"] = 2
    return spec


def _dense(base: dict[str, Any], values: pl.Series) -> dict[str, Any]:
    spec = {**base, "kind": "dense"}
    v = values.cast(pl.Float64)
    v = v.filter(v.is_finite())
    if v.len() and float(v.min()) >= 0 and float(v.max()) > LOG1P_ABOVE:  # type: ignore[arg-type]
        spec["transform"] = "log1p"
    return spec


def _group(name: str) -> str:
    if _USER_NAME.search(name):
        return "user"
    if _ITEM_NAME.search(name):
        return "item"
    return "context"


def _report(s: pl.Series, kind: str, why: str) -> ColumnReport:
    values = s.drop_nulls()
    try:
        distinct = int(values.n_unique())
    except pl.exceptions.PolarsError:
        distinct = -1
    shown = values.filter(values.str.strip_chars() != "") if values.dtype == pl.String else values
    example = "" if shown.len() == 0 else str(shown[0])
    if len(example) > 24:
        example = example[:21] + "..."
    return ColumnReport(s.name, str(s.dtype), kind, distinct, s.null_count(), example, why)


def format_table(inferred: InferredSchema) -> str:
    """The table ``init-schema`` prints: column, inferred kind, distinct values, nulls, example, why."""
    head = ("column", "kind", "distinct", "nulls", "example", "why")
    rows = [head] + [
        (c.name, c.kind, str(c.distinct), str(c.nulls), c.example, c.why) for c in inferred.columns
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + f"\n(distinct values and nulls in the first {inferred.rows_sampled:,} rows)"
