"""Split one click log into train / valid / test (``data.split``): by time, by user, or at random.

Every rule gives one code per row of the log, in the log's row order (0 = train, 1 = valid,
2 = test), deterministic for the same log and settings; the ``data`` stage then writes each
split's rows in log order (:mod:`recdistill.data.write_splits`). With ``fractions = (f0, f1, f2)``
and ``F1 = f0``, ``F2 = f0 + f1``:

* ``time`` (:func:`time_codes`): with the ``n`` timestamps sorted, ``t_valid`` is the one at
  position ``floor(F1 * n)`` and ``t_test`` the one at ``floor(F2 * n)``; train is ``t < t_valid``,
  valid ``t_valid <= t < t_test``, test ``t >= t_test`` (the MovieLens split's rule). So every
  train row is strictly earlier than every valid row, and every valid row than every test row;
  rows at the same time are never split apart (fractions hold up to one timestamp's rows).
* ``user`` and ``random`` by a column (:func:`group_codes`): the distinct values are shuffled by
  ``seed``; walking through them, a group goes to train while fewer than ``F1 * n`` rows come
  before it, to valid while fewer than ``F2 * n`` do, then to test. No value is in two splits.
* ``random`` by row (:func:`row_codes`): a permutation of the rows by ``seed``, cut the same way.

A split that would be empty is an error naming the log, the rule and the row counts.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recdistill.config.data import SplitConfig
from recdistill.data.schema import Schema
from recdistill.data.splits import LABELLED_SPLITS
from recdistill.errors import ConfigError, DataError

# floor(F * n) for fractions such as 0.8 + 0.1, whose float sum is a hair off the decimal
_FUZZ = 1e-6


def _cuts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """``floor(F1 * n)`` and ``floor(F2 * n)``: the first position of valid and of test."""
    f1, f2 = fractions[0], fractions[0] + fractions[1]
    return int(np.floor(f1 * n + _FUZZ)), int(np.floor(f2 * n + _FUZZ))


def time_codes(t: np.ndarray, fractions: tuple[float, float, float]) -> np.ndarray:
    """INT8 ``[N]`` split codes of rows with times ``t`` ``[N]`` (int64 or float64, no NaN)."""
    n = t.size
    ordered = np.sort(t, kind="stable")
    codes = np.zeros(n, dtype=np.int8)
    for at in _cuts(n, fractions):
        if at < n:
            codes += (t >= ordered[at]).astype(np.int8)
    return codes


def row_codes(n: int, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """INT8 ``[N]``: rows in a random order (by ``seed``), the first ``F1 * n`` train, and so on."""
    rank = np.empty(n, dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(n)] = np.arange(n, dtype=np.int64)
    c1, c2 = _cuts(n, fractions)
    return ((rank >= c1).astype(np.int8) + (rank >= c2).astype(np.int8)).astype(np.int8)


def group_codes(keys: pl.Series, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """INT8 ``[N]``: whole groups of equal ``keys`` (users, requests) to one split each.

    The distinct keys are sorted (null first), shuffled by ``seed`` and assigned in that order by
    the number of rows before each group; see the module docstring.
    """
    frame = pl.DataFrame({"k": keys})
    groups = frame.group_by("k").len().sort("k", nulls_last=False)
    order = np.random.default_rng(seed).permutation(groups.height)
    sizes = groups.get_column("len").to_numpy().astype(np.int64)[order]
    before = np.cumsum(sizes) - sizes
    c1, c2 = _cuts(int(sizes.sum()), fractions)
    group_code = np.empty(groups.height, dtype=np.int8)
    group_code[order] = (before >= c1).astype(np.int8) + (before >= c2).astype(np.int8)
    index = frame.join(
        groups.with_row_index("_g").select("k", "_g"),
        on="k",
        how="left",
        nulls_equal=True,
        maintain_order="left",
    )
    return group_code[index.get_column("_g").to_numpy()]


def parse_dates(values: pl.Series) -> pl.Series:
    """Text -> Datetime (format inferred from the values); null where a value is not a date."""
    try:
        return values.str.to_datetime(strict=False)
    except pl.exceptions.PolarsError:  # no date format fits the first values
        return pl.Series(values.name, [None] * len(values), dtype=pl.Datetime)


def time_values(values: pl.Series, where: str) -> np.ndarray:
    """Times as numbers: numeric columns as they are, dates and datetimes (or text that parses as
    one, e.g. ``2021-03-04 10:00:00``) as their integer value. Anything else is an error."""
    col = repr(values.name)
    dt = values.dtype
    if dt.is_temporal() and dt != pl.Time and not isinstance(dt, pl.Duration):
        out = values.to_physical()
    elif dt.is_numeric():
        out = values
    elif dt == pl.String:
        parsed = parse_dates(values)
        bad = values.is_not_null() & parsed.is_null()
        if bad.any():
            numeric = values.cast(pl.Float64, strict=False)
            if (values.is_not_null() & numeric.is_null()).any():
                example = values.filter(bad).first()
                raise DataError(
                    f"{where}: time column {col}: {int(bad.sum())} values are neither a number nor a date "
                    f"(e.g. {example!r}); use epoch seconds or dates such as 2021-03-04 10:00:00"
                )
            parsed = numeric
        out = parsed.to_physical() if parsed.dtype.is_temporal() else parsed
    else:
        raise DataError(
            f"{where}: time column {col} has dtype {dt}; expected numbers (epoch seconds) or dates"
        )
    missing = out.is_null() | (out.is_nan() if out.dtype.is_float() else pl.Series([False] * len(out)))
    if missing.any():
        raise DataError(f"{where}: time column {col}: {int(missing.sum())} rows have no time (null or NaN)")
    return out.to_numpy()


def split_column(cfg: SplitConfig, schema: Schema) -> str | None:
    """The column a split reads (None: rows at random)."""
    if cfg.column is not None:
        return cfg.column
    if cfg.by == "user":
        if schema.user_id is None:
            raise ConfigError(
                f"data.split.by: user needs a user column: set data.split.column, or user_id in {schema.source}"
            )
        return schema.user_id
    if cfg.by == "random":
        return schema.request_id  # keep requests whole when there are any
    raise ConfigError("data.split.column is required with data.split.by: time")


def split_codes(lf: pl.LazyFrame, cfg: SplitConfig, schema: Schema, where: str) -> np.ndarray:
    """INT8 ``[N]`` split codes for every row of the log ``lf`` (named ``where`` in errors)."""
    column = split_column(cfg, schema)
    columns = lf.collect_schema().names()
    if column is not None and column not in columns:
        raise DataError(f"{where}: no column {column!r} to split by ({cfg.by}); the log has {columns}")
    if column is None:
        n = int(lf.select(pl.len()).collect().item())
        codes = row_codes(n, cfg.fractions, cfg.seed)
    else:
        values = lf.select(column).collect().get_column(column)
        if cfg.by == "time":
            codes = time_codes(time_values(values, where), cfg.fractions)
        else:
            codes = group_codes(values, cfg.fractions, cfg.seed)
    check_nonempty(codes, cfg, column, where)
    return codes


def check_nonempty(codes: np.ndarray, cfg: SplitConfig, column: str | None, where: str) -> None:
    counts = np.bincount(codes, minlength=3).tolist()
    empty = [name for name, c in zip(LABELLED_SPLITS, counts, strict=True) if c == 0]
    if not empty:
        return
    by = f"{cfg.by} split" + (f" by {column!r}" if column else " by row")
    hint = {
        "time": "too few distinct times for these fractions?",
        "user": "too few users for these fractions?",
        "random": "too few rows or requests for these fractions?",
    }[cfg.by]
    raise DataError(
        f"{where}: the {by} with fractions {list(cfg.fractions)} would leave split(s) {empty} empty "
        f"(rows per train/valid/test: {counts}); {hint} Change data.split."
    )
