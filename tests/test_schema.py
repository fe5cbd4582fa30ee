from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from recdistill.data.schema import Schema
from recdistill.errors import SchemaError
from tests.conftest import TINY_SCHEMA


def _schema(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(TINY_SCHEMA)
    raw.update(changes)
    return raw


def test_round_trip(tmp_path: Path, tiny_schema: Schema) -> None:
    tiny_schema.save(tmp_path)
    again = Schema.load(tmp_path)
    assert again == tiny_schema
    assert json.loads((tmp_path / "schema.json").read_text())["label"] == "click"


def test_views(tiny_schema: Schema) -> None:
    assert [f.name for f in tiny_schema.dense] == ["price", "score", "secret"]
    assert [f.name for f in tiny_schema.by_kind("dense", student=True)] == ["price", "score"]
    assert "secret" not in tiny_schema.student_view().feature_names
    assert tiny_schema.all_columns.count("user_id") == 1
    assert tiny_schema.with_teacher_only([]).student_view().feature_names == tiny_schema.feature_names


def test_column_named_twice() -> None:
    raw = _schema()
    raw["features"].append({"name": "price", "kind": "dense"})
    with pytest.raises(SchemaError, match="'price' is named twice"):
        Schema.from_dict(raw, source="s.json")


@pytest.mark.parametrize(
    ("feature", "fragment"),
    [
        ({"name": "x", "kind": "dense", "colour": 1}, "unknown keys ['colour']"),
        ({"name": "x", "kind": "sparse"}, "kind 'sparse' is not one of"),
        ({"name": "x", "kind": "dense", "group": "shop"}, "group 'shop'"),
        ({"name": "x", "kind": "dense", "transform": "sqrt"}, "transform 'sqrt'"),
        ({"name": "x", "kind": "categorical", "transform": "log1p"}, "'transform' only applies"),
        ({"name": "x", "kind": "dense", "min_count": 2}, "vocabulary keys do not apply"),
        ({"name": "x", "kind": "categorical", "min_count": 0}, "'min_count' must be an integer >= 1"),
        ({"name": "x", "kind": "categorical", "min_count": 2, "hash_buckets": 8}, "either 'min_count'"),
        ({"name": "x", "kind": "categorical", "max_len": 3}, "'max_len' only applies"),
        ({"name": "x", "kind": "multi", "vocab_from": "price"}, "not an id feature"),
        ({"name": "x", "kind": "dense", "teacher_only": "yes"}, "'teacher_only' must be true or false"),
        ({"kind": "dense"}, "needs 'name' and 'kind'"),
    ],
)
def test_bad_feature(feature: dict[str, Any], fragment: str) -> None:
    raw = _schema()
    raw["features"].append(feature)
    with pytest.raises(SchemaError, match="s.json") as e:
        Schema.from_dict(raw, source="s.json")
    assert fragment in str(e.value)


def test_bad_top_level(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="unknown schema keys"):
        Schema.from_dict(_schema(labels="y"), source="s.json")
    with pytest.raises(SchemaError, match="version 2 is not supported"):
        Schema.from_dict(_schema(version=2), source="s.json")
    with pytest.raises(SchemaError, match="already has another role"):
        Schema.from_dict(_schema(user_id="click"), source="s.json")
    with pytest.raises(SchemaError, match="schema file not found"):
        Schema.load(tmp_path)
    (tmp_path / "schema.json").write_text("{")
    with pytest.raises(SchemaError, match="not valid JSON"):
        Schema.load(tmp_path)


def test_all_teacher_only_rejected() -> None:
    raw = {"label": "y", "features": [{"name": "a", "kind": "dense", "teacher_only": True}]}
    with pytest.raises(SchemaError, match="every feature is teacher_only"):
        Schema.from_dict(raw, source="s.json")


def test_no_row_key_means_position_and_round_trips(tmp_path: Path) -> None:
    from recdistill.data.schema import ROW_POSITION

    schema = Schema.from_dict(_schema(row_key=None), source="s.json")
    assert schema.keyed_by_position and schema.row_key == ROW_POSITION
    schema.save(tmp_path)
    assert json.loads((tmp_path / "schema.json").read_text())["row_key"] is None
    assert Schema.load(tmp_path) == schema
    assert not Schema.from_dict(_schema(), source="s.json").keyed_by_position  # omitted: row_id


def test_ignore_and_sep_parse_and_round_trip(tmp_path: Path) -> None:
    raw = _schema(ignore=["timestamp", "rating"])
    raw["features"].append({"name": "genres", "kind": "multi", "max_len": 6, "sep": "|"})
    schema = Schema.from_dict(raw, source="s.json")
    assert schema.ignore == ("timestamp", "rating") and schema.feature("genres").sep == "|"
    schema.save(tmp_path)
    assert Schema.load(tmp_path) == schema


@pytest.mark.parametrize(
    ("changes", "feature", "fragment"),
    [
        ({"ignore": ["price"]}, None, "column 'price' is named twice"),
        ({"ignore": ["user_id"]}, None, "column 'user_id' is named twice"),
        ({"ignore": ["ts", "ts"]}, None, "column 'ts' is named twice"),
        ({"ignore": "ts"}, None, "'ignore' must be a list of column names"),
        ({}, {"name": "g", "kind": "categorical", "sep": "|"}, "'sep' only applies to multi-valued"),
        ({}, {"name": "g", "kind": "multi", "sep": ""}, "'sep' must be a non-empty string"),
        ({}, {"name": "_row_position", "kind": "dense"}, "'_row_position' is the row key recdistill writes"),
    ],
)
def test_bad_ignore_and_sep(changes: dict[str, Any], feature: dict[str, Any] | None, fragment: str) -> None:
    raw = _schema(**changes)
    if feature is not None:
        raw["features"].append(feature)
    with pytest.raises(SchemaError, match="s.json") as e:
        Schema.from_dict(raw, source="s.json")
    assert fragment in str(e.value)
