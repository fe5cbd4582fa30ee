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
