from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recdistill.data.schema import Schema
from recdistill.data.validate import validate_file
from recdistill.errors import DataError, SchemaError
from tests.conftest import tiny_frame


def _write(tmp_path: Path, df: pl.DataFrame, name: str = "f.parquet") -> Path:
    p = tmp_path / name
    df.write_parquet(p) if name.endswith(".parquet") else df.write_csv(p)
    return p


def test_valid_file_summary(tmp_path: Path, tiny_schema: Schema) -> None:
    df = tiny_frame()
    s = validate_file(_write(tmp_path, df), tiny_schema)
    assert s.rows == 256 and s.requests == 32 and s.users == 11
    assert s.positives == int(df["click"].sum())
    assert s.dense_missing["price"] == int(df["price"].is_nan().sum()) > 0  # NaN = missing, not an error


@pytest.mark.parametrize(
    ("mutate", "error", "fragment"),
    [
        (lambda d: d.drop("price"), SchemaError, "missing columns ['price']"),
        (lambda d: d.with_columns(pl.lit(1).alias("extra")), SchemaError, "extra columns ['extra']"),
        (
            lambda d: d.with_columns(pl.col("price").cast(pl.String)),
            SchemaError,
            "dense column 'price' must be numeric",
        ),
        (
            lambda d: d.with_columns(pl.col("item_id").cast(pl.Float64)),
            SchemaError,
            "'item_id' must hold integer",
        ),
        (lambda d: d.with_columns(pl.col("hist").list.first()), SchemaError, "'hist' must be a list"),
        (
            lambda d: d.with_columns(
                pl.when(pl.col("row_id") == 7).then(np.inf).otherwise(pl.col("score")).alias("score")
            ),
            DataError,
            "dense column 'score': 1 rows hold inf (e.g. row_id=7: inf)",
        ),
        (
            lambda d: d.with_columns(
                pl.when(pl.col("row_id") < 3).then(-5).otherwise(pl.col("item_id")).alias("item_id")
            ),
            DataError,
            "id column 'item_id': 3 negative ids (e.g. -5)",
        ),
        (
            lambda d: d.with_columns(pl.col("hist").list.concat(pl.lit([-2], dtype=pl.List(pl.Int64)))),
            DataError,
            "id column 'hist': 256 negative ids",
        ),
        (lambda d: d.with_columns(pl.col("click") * 2), DataError, "rows are not 0 or 1"),
        (lambda d: d.with_columns(pl.lit(None, dtype=pl.Int8).alias("click")), DataError, "have no label"),
        (lambda d: d.with_columns(pl.lit(1, dtype=pl.Int64).alias("row_id")), DataError, "must be unique"),
    ],
)
def test_bad_files(
    tmp_path: Path, tiny_schema: Schema, mutate: object, error: type[Exception], fragment: str
) -> None:
    df = mutate(tiny_frame())  # type: ignore[operator]
    p = _write(tmp_path, df)
    with pytest.raises(error) as e:
        validate_file(p, tiny_schema)
    assert str(p) in str(e.value)
    assert fragment in str(e.value)


def test_huge_ids_against_max_id(tmp_path: Path, tiny_schema: Schema) -> None:
    raw = tiny_schema.to_dict()
    raw["features"][1]["max_id"] = 10
    schema = Schema.from_dict(raw)
    with pytest.raises(DataError, match=r"'item_id': \d+ ids above max_id=10"):
        validate_file(_write(tmp_path, tiny_frame()), schema)


def test_unlabelled_transfer_file(tmp_path: Path, tiny_schema: Schema) -> None:
    df = tiny_frame().with_columns(pl.lit(None, dtype=pl.Int8).alias("click"))
    s = validate_file(_write(tmp_path, df), tiny_schema, labelled=False)
    assert s.labelled_rows == 0 and s.rows == 256


def test_empty_and_truncated_files(tmp_path: Path, tiny_schema: Schema) -> None:
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.parquet: file is empty"):
        validate_file(empty, tiny_schema)
    good = _write(tmp_path, tiny_frame(), "good.parquet")
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="cut.parquet: not a readable Parquet file"):
        validate_file(cut, tiny_schema)
    no_rows = _write(tmp_path, tiny_frame().head(0), "none.parquet")
    with pytest.raises(DataError, match="none.parquet: Parquet file has no rows"):
        validate_file(no_rows, tiny_schema)


def test_csv_with_string_ids(tmp_path: Path, tiny_schema: Schema) -> None:
    raw = tiny_schema.to_dict()
    raw["features"] = [f for f in raw["features"] if f["kind"] != "multi"]
    schema = Schema.from_dict(raw)
    df = tiny_frame().drop("hist").with_columns(pl.format("cat-{}", pl.col("item_cat")).alias("item_cat"))
    s = validate_file(_write(tmp_path, df, "f.csv"), schema)
    assert s.rows == 256


def test_ignored_columns_are_allowed_and_extra_ones_suggest_ignore(
    tmp_path: Path, tiny_schema: Schema
) -> None:
    df = tiny_frame().with_columns(pl.lit(1).alias("timestamp"), pl.lit("x").alias("note"))
    with pytest.raises(SchemaError) as e:
        validate_file(_write(tmp_path, df), tiny_schema)
    assert "extra columns ['timestamp', 'note']" in str(e.value) and '"ignore": ["timestamp", "note"]' in str(
        e.value
    )
    schema = Schema.from_dict({**tiny_schema.to_dict(), "ignore": ["timestamp", "note"]})
    assert validate_file(_write(tmp_path, df), schema).rows == 256


def test_label_problems_name_the_column(tmp_path: Path, tiny_schema: Schema) -> None:
    with pytest.raises(
        SchemaError, match=r"f.parquet: label column 'click' \(named in tiny_schema\) is missing"
    ):
        validate_file(_write(tmp_path, tiny_frame().drop("click")), tiny_schema)
    bad = tiny_frame().with_columns(
        pl.when(pl.col("row_id") == 3).then(7).otherwise(pl.col("click")).alias("click")
    )
    with pytest.raises(DataError, match=r"label column 'click': 1 rows are not 0 or 1 \(e.g. 7\)"):
        validate_file(_write(tmp_path, bad), tiny_schema)
    ok = tiny_frame().with_columns(pl.col("click") == 1)  # true/false
    assert validate_file(_write(tmp_path, ok), tiny_schema).positives == int(tiny_frame()["click"].sum())


def test_positional_schema_needs_no_key_column(tmp_path: Path, tiny_schema: Schema) -> None:
    schema = Schema.from_dict({**tiny_schema.to_dict(), "row_key": None})
    assert validate_file(_write(tmp_path, tiny_frame().drop("row_id")), schema).rows == 256
    with pytest.raises(SchemaError, match="missing columns"):
        validate_file(_write(tmp_path, tiny_frame().drop("row_id")), tiny_schema)


def test_text_lists_validate_and_warn_when_the_separator_never_occurs(
    tmp_path: Path, tiny_schema: Schema
) -> None:
    raw = tiny_schema.to_dict()
    raw["features"] = [{**f, "sep": "|"} if f["name"] == "hist" else f for f in raw["features"]]
    schema = Schema.from_dict(raw, source="s.json")
    df = tiny_frame().with_columns(pl.col("hist").cast(pl.List(pl.String)).list.join("|"))
    assert validate_file(_write(tmp_path, df, "f.csv"), schema).warnings == ()
    one = df.with_columns(pl.col("hist").str.replace_all("|", ";", literal=True))
    (warning,) = validate_file(_write(tmp_path, one, "f.csv"), schema).warnings
    assert "f.csv: multi-valued column 'hist': the separator '|' never occurs" in warning
    neg = df.with_columns(pl.lit("3|-4").alias("hist"))
    with pytest.raises(DataError, match="id column 'hist': 256 negative ids"):
        validate_file(_write(tmp_path, neg, "f.csv"), schema)
