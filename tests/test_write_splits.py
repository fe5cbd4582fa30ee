"""The data stage's split files: positional row keys, ignored columns, text lists, one log split for
you, links for ready Parquet files, and the bad inputs, each named with its file and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from recdistill.config.data import SplitConfig
from recdistill.data.raw import raw_batch_from_frame, targets_from_frame
from recdistill.data.readers import resolve_source
from recdistill.data.schema import ROW_POSITION, Schema
from recdistill.data.write_splits import Source, write_split_files
from recdistill.errors import DataError, SchemaError

LOG_SCHEMA: dict[str, Any] = {
    "label": "click",
    "row_key": None,
    "request_id": None,
    "user_id": "user",
    "ignore": ["ts", "note"],
    "features": [
        {"name": "user", "kind": "categorical", "group": "user"},
        {"name": "item_id", "kind": "categorical", "group": "item"},
        {"name": "age", "kind": "dense", "group": "user"},
        {"name": "genres", "kind": "multi", "group": "item", "max_len": 3, "sep": "|"},
    ],
}


def click_log(n: int = 600, seed: int = 0) -> pl.DataFrame:
    """A MovieLens-style log as a user has it: text ids, a `|` list, unused columns, no row id."""
    rng = np.random.default_rng(seed)
    genres = ["|".join(str(g) for g in rng.integers(0, 19, rng.integers(0, 4))) for _ in range(n)]
    return pl.DataFrame(
        {
            "ts": rng.permutation(n) * 10,
            "user": [f"u{u}" for u in rng.integers(0, 40, n)],
            "item_id": rng.integers(0, 90, n),
            "age": rng.integers(18, 70, n).astype(float),
            "genres": genres,
            "note": ["x"] * n,
            "click": rng.integers(0, 2, n),
        }
    )


def _write_log(
    tmp_path: Path, df: pl.DataFrame, schema: dict[str, Any] = LOG_SCHEMA, **split: Any
) -> dict[str, Any]:
    log = tmp_path / "log.csv"
    df.write_csv(log)
    out = tmp_path / "data"
    cfg = SplitConfig(**{"by": "time", "column": "ts", **split})
    return write_split_files(
        out, Schema.from_dict(schema, source="s.json"), [Source("log", (log,))], split=cfg
    )


def test_one_csv_log_becomes_three_parquet_splits_keyed_by_position(tmp_path: Path) -> None:
    df = click_log()
    metrics = _write_log(tmp_path, df)
    out = tmp_path / "data"
    assert metrics["row_key"] == "position"
    assert sum(metrics[s]["rows"] for s in ("train", "valid", "test")) == df.height
    run_schema = Schema.load(out)
    assert run_schema.keyed_by_position and run_schema.ignore == ()
    assert not (out / ".staging").exists()
    by_ts = {}
    for split in ("train", "valid", "test"):
        part = pl.read_parquet(out / f"{split}.parquet")
        assert part.columns[0] == ROW_POSITION and "ts" not in part.columns and "note" not in part.columns
        assert part.get_column(ROW_POSITION).to_list() == list(range(part.height))
        assert part.schema["genres"] == pl.List(pl.Int64)
        targets = targets_from_frame(part, run_schema)  # what scoring and soft labels key rows by
        assert targets.row_key.tolist() == list(range(part.height))
        raw_batch_from_frame(part, run_schema)
        by_ts[split] = part
    # rows keep the log's order inside a split: the positional key is stable across runs
    train_ts = df.filter(pl.col("ts") < df.get_column("ts").sort()[int(0.8 * df.height)])
    assert by_ts["train"].get_column("item_id").to_list() == train_ts.get_column("item_id").to_list()
    first = {s: pl.read_parquet(out / f"{s}.parquet") for s in ("train", "valid", "test")}
    (tmp_path / "again").mkdir()
    _write_log(tmp_path / "again", df)
    for s, frame in first.items():
        assert frame.equals(pl.read_parquet(tmp_path / "again" / "data" / f"{s}.parquet"))


def test_text_lists_parse_like_the_raw_reader(tmp_path: Path) -> None:
    df = click_log(50).with_columns(pl.Series("genres", ["5|14|17", "", "3", " 7 | x "] + ["1"] * 46))
    _write_log(tmp_path, df.with_columns(pl.Series("ts", np.arange(50))), fractions=(0.2, 0.4, 0.4))
    got = pl.read_parquet(tmp_path / "data" / "train.parquet").get_column("genres").to_list()
    assert got[:3] == [[5, 14, 17], [], [3]]
    assert got[3][0] == 7 and got[3][1] > 2**40  # "x" is hashed like a text id


def test_ready_parquet_splits_are_linked_and_a_missing_key_becomes_position(
    tmp_path: Path, tiny_data: Path, tiny_schema: Schema
) -> None:
    sources = [Source(s, (tiny_data / f"{s}.parquet",)) for s in ("train", "valid", "test")]
    write_split_files(tmp_path / "linked", tiny_schema, sources)
    assert (tmp_path / "linked" / "train.parquet").is_symlink()
    # the same files without their row_id column: rewritten, keyed by position
    for s in sources:
        pl.read_parquet(s.paths[0]).drop("row_id").write_parquet(tmp_path / f"{s.name}.parquet")
    bare = [Source(s.name, (tmp_path / f"{s.name}.parquet",)) for s in sources]
    metrics = write_split_files(tmp_path / "keyed", tiny_schema, bare)
    assert metrics["row_key"] == "position" and not (tmp_path / "keyed" / "train.parquet").is_symlink()
    assert pl.read_parquet(tmp_path / "keyed" / "valid.parquet").get_column(ROW_POSITION).to_list() == list(
        range(256)
    )


def test_a_folder_of_parquet_parts_split_by_user(tmp_path: Path) -> None:
    df = click_log(900)
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(3):
        df.slice(300 * i, 300).write_parquet(parts / f"part-{i}.parquet")
    files = resolve_source(parts)
    assert [p.name for p in files] == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    schema = Schema.from_dict(LOG_SCHEMA)
    write_split_files(tmp_path / "data", schema, [Source("log", tuple(files))], split=SplitConfig(by="user"))
    users = {
        s: set(pl.read_parquet(tmp_path / "data" / f"{s}.parquet").get_column("user"))
        for s in ("train", "valid", "test")
    }
    assert not (
        users["train"] & users["valid"] or users["train"] & users["test"] or users["valid"] & users["test"]
    )
    assert sum(len(pl.read_parquet(tmp_path / "data" / f"{s}.parquet")) for s in users) == 900


def test_criteo_log_split_at_random_keeps_line_numbers_as_row_key(tmp_path: Path) -> None:
    from recdistill.data.readers import criteo_schema
    from tests.test_readers import CRITEO_LINES

    log = tmp_path / "day_0.tsv"
    log.write_text("\n".join(CRITEO_LINES * 10) + "\n")
    metrics = write_split_files(
        tmp_path / "data",
        criteo_schema(),
        [Source("log", (log,))],
        split=SplitConfig(by="random", fractions=(0.5, 0.25, 0.25)),
    )
    assert metrics["row_key"] == "row_id"
    keys = [
        pl.read_parquet(tmp_path / "data" / f"{s}.parquet").get_column("row_id")
        for s in ("train", "valid", "test")
    ]
    assert sorted(pl.concat(keys).to_list()) == list(range(40))


# -- bad input: each names the file and the column ---------------------------------------------------
def test_label_column_missing(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"log.csv: label column 'click' \(named in s.json\) is missing"):
        _write_log(tmp_path, click_log().drop("click"))


def test_label_values_other_than_0_1(tmp_path: Path) -> None:
    df = click_log().with_columns(
        pl.when(pl.col("ts") == 50).then(4).otherwise(pl.col("click")).alias("click")
    )
    with pytest.raises(DataError, match=r"log.csv: label column 'click': 1 rows are not 0 or 1 \(e.g. 4\)"):
        _write_log(tmp_path, df)


def test_true_false_labels_are_accepted(tmp_path: Path) -> None:
    metrics = _write_log(tmp_path, click_log().with_columns(pl.col("click") == 1))
    assert 0 < metrics["train"]["ctr"] < 1


def test_extra_column_is_named_and_ignore_suggested(tmp_path: Path) -> None:
    with pytest.raises(SchemaError) as e:
        _write_log(tmp_path, click_log().with_columns(pl.lit(1.5).alias("rating")))
    assert "log.csv: extra columns ['rating']" in str(e.value)
    assert '"ignore": ["ts", "note", "rating"]' in str(e.value)


def test_csv_header_naming_a_column_twice(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("click,user,item_id,age,genres,user\n1,u1,3,20,1|2,u2\n")
    with pytest.raises(DataError, match=r"log.csv: the header names column\(s\) \['user'\] twice"):
        write_split_files(
            tmp_path / "d", Schema.from_dict(LOG_SCHEMA), [Source("log", (log,))], split=SplitConfig()
        )


def test_row_key_in_some_files_only(tmp_path: Path, tiny_data: Path, tiny_schema: Schema) -> None:
    pl.read_parquet(tiny_data / "valid.parquet").drop("row_id").write_parquet(tmp_path / "valid.parquet")
    sources = [
        Source("train", (tiny_data / "train.parquet",)),
        Source("valid", (tmp_path / "valid.parquet",)),
    ]
    with pytest.raises(
        DataError, match=r"valid.parquet: has no row key column 'row_id' but .*train.parquet has"
    ):
        write_split_files(tmp_path / "d", tiny_schema, sources)


def test_separator_that_never_occurs_warns(tmp_path: Path) -> None:
    df = click_log().with_columns(pl.col("genres").str.replace_all("|", ";", literal=True))
    metrics = _write_log(tmp_path, df)
    (warning,) = metrics["warnings"]
    assert "log.csv: multi-valued column 'genres': the separator '|' never occurs" in warning


def test_list_in_text_without_sep_says_how(tmp_path: Path) -> None:
    schema = {**LOG_SCHEMA, "features": [*LOG_SCHEMA["features"][:3], {"name": "genres", "kind": "multi"}]}
    with pytest.raises(SchemaError, match=r"'genres' must be a list .* needs \"sep\": \"\|\""):
        _write_log(tmp_path, click_log(), schema)


def test_glob_that_matches_no_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"logs/\*.csv: the glob matches no file"):
        resolve_source(tmp_path / "logs" / "*.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="the folder holds no .parquet, .csv or .tsv file"):
        resolve_source(tmp_path / "empty")
