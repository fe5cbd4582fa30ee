"""Frames -> raw request tensors: lists written as text ("5|14|17") parse like list columns."""

from __future__ import annotations

import numpy as np
import polars as pl

from recdistill.data.raw import hash_string_ids, parse_id_lists, raw_batch_from_frame
from recdistill.data.schema import Schema


def test_parse_id_lists() -> None:
    s = pl.Series("g", ["5|14|17", "", None, "3", " 7 || 8 ", "a|5"])
    a = int(hash_string_ids(pl.Series(["a"])).item())
    assert parse_id_lists(s, "|").to_list() == [[5, 14, 17], [], None, [3], [7, 8], [a, 5]]
    assert parse_id_lists(pl.Series("g", [4, None]), "|").to_list() == [[4], None]  # no separator anywhere
    assert parse_id_lists(pl.Series("g", [], dtype=pl.String), "|").dtype == pl.List(pl.Int64)


def test_text_list_column_gives_the_same_tensors_as_a_list_column() -> None:
    raw = {
        "label": "y",
        "row_key": None,
        "request_id": None,
        "user_id": None,
        "features": [
            {"name": "x", "kind": "dense"},
            {"name": "flag", "kind": "dense"},
            {"name": "g", "kind": "multi", "max_len": 2, "sep": "|"},
        ],
    }
    schema = Schema.from_dict(raw)
    lists = pl.DataFrame({"x": [1.0, 2.0], "flag": [True, False], "g": [[1, 2, 3], []]})
    text = lists.with_columns(pl.Series("g", ["1|2|3", ""]))
    a, b = raw_batch_from_frame(lists, schema), raw_batch_from_frame(text, schema)
    assert np.array_equal(a.multi, b.multi) and a.multi[0, 0].tolist() == [2, 3]
    assert a.dense[:, 1].tolist() == [1.0, 0.0]  # true/false is a dense 0/1
