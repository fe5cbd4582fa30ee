"""Splitting one log: time order between splits, no user in two splits, whole requests, bad input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recdistill.config.data import SplitConfig
from recdistill.data.schema import Schema
from recdistill.data.split_log import group_codes, row_codes, split_codes, time_codes, time_values
from recdistill.errors import DataError

SCHEMA = Schema.from_dict(
    {
        "label": "click",
        "row_key": None,
        "request_id": "request",
        "user_id": "user",
        "features": [{"name": "user", "kind": "categorical"}, {"name": "x", "kind": "dense"}],
    }
)


def _log(n: int = 2000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "ts": rng.integers(0, 300, n),  # many ties
            "user": [f"u{u}" for u in rng.integers(0, 97, n)],
            "request": rng.integers(0, 400, n),
            "click": rng.integers(0, 2, n),
            "x": rng.normal(size=n),
        }
    )


def test_time_split_no_later_row_earlier_than_an_earlier_split() -> None:
    df = _log()
    codes = split_codes(df.lazy(), SplitConfig(by="time", column="ts"), SCHEMA, "log.csv")
    t = df.get_column("ts").to_numpy()
    for earlier, later in ((0, 1), (1, 2), (0, 2)):
        assert t[codes == later].min() > t[codes == earlier].max()  # strictly: ties never split apart
    counts = np.bincount(codes, minlength=3) / len(codes)
    assert abs(counts[0] - 0.8) < 0.02 and abs(counts[1] - 0.1) < 0.02


def test_time_split_rule_matches_positions() -> None:
    t = np.arange(10)
    assert time_codes(t, (0.8, 0.1, 0.1)).tolist() == [0] * 8 + [1, 2]
    assert time_codes(t[::-1], (0.5, 0.3, 0.2)).tolist() == [2, 2, 1, 1, 1, 0, 0, 0, 0, 0]


def test_user_split_puts_no_user_in_two_splits() -> None:
    df = _log()
    codes = split_codes(df.lazy(), SplitConfig(by="user"), SCHEMA, "log.csv")
    per_user = df.with_columns(pl.Series("split", codes)).group_by("user").agg(pl.col("split").n_unique())
    assert per_user.get_column("split").max() == 1
    assert set(codes.tolist()) == {0, 1, 2}


def test_random_split_keeps_requests_whole_and_is_deterministic() -> None:
    df = _log()
    cfg = SplitConfig(by="random", seed=3)
    codes = split_codes(df.lazy(), cfg, SCHEMA, "log.csv")  # column: the schema's request_id
    per_request = (
        df.with_columns(pl.Series("split", codes)).group_by("request").agg(pl.col("split").n_unique())
    )
    assert per_request.get_column("split").max() == 1
    assert np.array_equal(codes, split_codes(df.lazy(), cfg, SCHEMA, "log.csv"))
    other = split_codes(df.lazy(), SplitConfig(by="random", seed=4), SCHEMA, "log.csv")
    assert not np.array_equal(codes, other)


def test_row_and_group_rules_hit_the_fractions() -> None:
    codes = row_codes(1000, (0.7, 0.2, 0.1), seed=0)
    assert np.bincount(codes).tolist() == [700, 200, 100]
    g = group_codes(pl.Series(np.arange(1000)), (0.7, 0.2, 0.1), seed=0)  # one row per group
    assert np.bincount(g).tolist() == [700, 200, 100]


@pytest.mark.parametrize(
    ("cfg", "log", "fragment"),
    [
        (SplitConfig(by="time", column="ts", fractions=(1.0, 0.0, 0.0)), _log(), "split(s) ['valid', 'test'] empty"),
        (SplitConfig(by="time", column="ts"), _log().with_columns(pl.lit(7).alias("ts")), "['train', 'valid'] empty"),
        (SplitConfig(by="user"), _log().with_columns(pl.lit("u1").alias("user")), "too few users"),
    ],
)  # fmt: skip
def test_a_split_that_would_be_empty_is_an_error(cfg: SplitConfig, log: pl.DataFrame, fragment: str) -> None:
    with pytest.raises(DataError) as e:
        split_codes(log.lazy(), cfg, SCHEMA, "log.csv")
    assert "log.csv" in str(e.value) and fragment in str(e.value)


def test_time_column_numbers_dates_and_text() -> None:
    assert time_values(pl.Series("ts", [3, 1]), "f").tolist() == [3, 1]
    dates = time_values(pl.Series("ts", ["2021-03-04 10:00:00", "2021-03-03 09:00:00"]), "f")
    assert dates[0] > dates[1]
    day = pl.Series("d", ["2021-01-02", "2021-01-01"]).str.to_date()
    assert time_values(day, "f").tolist() == [18629, 18628]


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        (pl.Series("ts", ["2021-03-04", "soon"]), "1 values are neither a number nor a date (e.g. 'soon')"),
        (pl.Series("ts", ["u1", "u2"]), "neither a number nor a date"),
        (pl.Series("ts", [1.0, float("nan")]), "1 rows have no time"),
        (pl.Series("ts", [1, None]), "1 rows have no time"),
        (pl.Series("ts", [[1], [2]]), "has dtype List(Int64)"),
    ],
)
def test_time_column_that_cannot_be_parsed(values: pl.Series, fragment: str) -> None:
    with pytest.raises(DataError) as e:
        time_values(values, "clicks.csv")
    assert "clicks.csv: time column 'ts'" in str(e.value) and fragment in str(e.value)
