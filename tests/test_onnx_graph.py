"""The one-file ONNX student: raw request tensors in, probabilities out, equal to the training-time path.

A tiny schema with every lookup way the graph knows: direct vocabularies (``user_id``,
``item_id`` with ``min_count``, a shared history ``hist``), a hashed one (``item_cat``,
``hash_buckets``), string-hashed 63-bit ids that need the searched hash table (``tag`` and its
history ``tags``), teacher-only columns of every kind, a log1p dense feature with missing values,
lists of different ``max_len``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import polars as pl
import pytest
import torch
from student_util import scramble_weights

from recdistill.config.students import MlpStudentConfig
from recdistill.data.batch import RawBatch
from recdistill.data.preprocess import Preprocessor
from recdistill.data.raw import raw_batch_from_frame
from recdistill.data.schema import Schema
from recdistill.errors import ArtefactError
from recdistill.export.onnx_graph import build_student_graph
from recdistill.export.onnx_mlp import (
    check_parity,
    export_mlp_onnx,
    onnx_metadata,
    ort_session,
    parity_batches,
    reference_probs,
)
from recdistill.predictors.mlp import FORMAT_KEY, OnnxMlpPredictor, predict_probs
from recdistill.students.mlp.train import build_student

SCHEMA = {
    "label": "click",
    "row_key": "row_id",
    "request_id": "request_id",
    "features": [
        {"name": "user_id", "kind": "categorical", "group": "user"},
        {"name": "item_id", "kind": "categorical", "group": "item", "min_count": 2},
        {"name": "item_cat", "kind": "categorical", "group": "item", "hash_buckets": 16},
        {"name": "tag", "kind": "categorical", "group": "item"},
        {"name": "secret_id", "kind": "categorical", "group": "item", "teacher_only": True},
        {"name": "price", "kind": "dense", "group": "item", "transform": "log1p"},
        {"name": "secret", "kind": "dense", "group": "item", "teacher_only": True},
        {"name": "score", "kind": "dense", "group": "context"},
        {"name": "hist", "kind": "multi", "group": "user", "max_len": 4, "vocab_from": "item_id"},
        {"name": "long_hist", "kind": "multi", "group": "user", "max_len": 6, "teacher_only": True,
         "vocab_from": "item_id"},
        {"name": "tags", "kind": "multi", "group": "user", "max_len": 3, "vocab_from": "tag"},
    ],
}  # fmt: skip
WORDS = [f"w{i}" for i in range(40)]


def frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    price = rng.lognormal(2.0, 1.0, size=n)
    price[rng.random(n) < 0.1] = np.nan
    words = lambda k: [WORDS[i] for i in rng.integers(0, len(WORDS), size=k)]  # noqa: E731
    return pl.DataFrame(
        {
            "row_id": np.arange(n, dtype=np.int64),
            "request_id": np.arange(n, dtype=np.int64) // 8,
            "click": rng.integers(0, 2, size=n).astype(np.int8),
            "user_id": rng.integers(0, 20, size=n),
            "item_id": rng.integers(0, 60, size=n),
            "item_cat": rng.integers(0, 1000, size=n),
            "tag": words(n),  # strings: read as 63-bit hashes (recdistill.data.raw.hash_string_ids)
            "secret_id": rng.integers(0, 5, size=n),
            "price": price,
            "secret": rng.normal(size=n),
            "score": rng.normal(size=n),
            "hist": pl.Series([rng.integers(0, 60, size=rng.integers(0, 7)).tolist() for _ in range(n)]),
            "long_hist": pl.Series([rng.integers(0, 60, size=rng.integers(0, 9)).tolist() for _ in range(n)]),
            "tags": pl.Series([words(int(rng.integers(0, 4))) for _ in range(n)], dtype=pl.List(pl.String)),
        }
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("onnx_graph")
    schema = Schema.from_dict(SCHEMA, source="test_onnx_graph")
    frame(600, 0).write_parquet(d / "train.parquet")
    pre = Preprocessor.fit(d / "train.parquet", schema)
    test = frame(300, 1)
    return {"pre": pre, "raw": raw_batch_from_frame(test, schema, source="test")}


def student(pre: Preprocessor, **kw: Any) -> torch.nn.Module:
    cfg = replace(MlpStudentConfig(seed=0), **kw)
    model = build_student(pre, cfg)
    return scramble_weights(model)


def test_every_lookup_way_is_in_the_fixture(world: dict[str, Any]) -> None:
    pre = world["pre"]
    assert "item_cat" in pre.hash_buckets
    assert not pre.id_maps["tag"].has_table  # 63-bit keys: the preprocessor searches them
    _, facts = build_student_graph(student(pre), pre)
    assert set(facts.ways) == {"direct", "hashed", "searched"}


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"max_rows_per_table": 8, "id_bias": True, "max_bias_rows_per_table": 12},
        {
            "pooling": "sum",
            "dot_interaction": False,
            "history_match": False,
            "hidden": (16,),
            "embedding_dim": 3,
        },
    ],
    ids=["default", "folded_with_bias", "plain_sum"],
)
def test_graph_matches_the_training_time_path(
    world: dict[str, Any], tmp_path: Path, kw: dict[str, Any]
) -> None:
    pre, raw = world["pre"], world["raw"]
    model = student(pre, **kw)
    path = export_mlp_onnx(model, pre, tmp_path / "model.onnx", sample=raw)  # raises past 1e-6
    meta = onnx_metadata(path)
    assert meta[FORMAT_KEY] == "raw_request/1" and float(meta["recdistill.parity_max_abs_diff_prob"]) <= 1e-6
    session = ort_session(path)
    cases = dict(parity_batches(raw, pre))
    assert set(cases) == {"real", "missing", "unseen", "huge", "hashed_strings", "empty_lists", "one_row"}
    for case, batch in cases.items():
        got = predict_probs(session, batch)
        assert got.dtype == np.float32 and got.shape == (len(batch),), case
        np.testing.assert_allclose(got, reference_probs(model, pre, batch), atol=1e-6, err_msg=case)


@pytest.mark.parametrize("vector_bytes", [0, 1 << 30], ids=["row_then_vector", "vector_of_slot"])
def test_both_ways_to_read_vectors(world: dict[str, Any], vector_bytes: int) -> None:
    """Small tables are copied per slot (one gather); above the byte budget, the row then the vector."""
    pre, raw = world["pre"], world["raw"]
    model = student(pre, max_rows_per_table=8, id_bias=True, max_bias_rows_per_table=12)
    proto, facts = build_student_graph(model, pre, vector_bytes=vector_bytes)
    names = {i.name for i in proto.graph.initializer}
    assert ("ids/row_of_slot" in names) == (vector_bytes == 0) and ("ids/vector_of_slot" in names) != (
        vector_bytes == 0
    )
    report = check_parity(ort_session(proto.SerializeToString()), model, pre, raw)
    assert report.max_abs_diff_prob <= 1e-6
    assert facts.op_counts["Gather"] >= (4 if vector_bytes == 0 else 2)


def test_ids_outside_the_contract_never_fail(world: dict[str, Any]) -> None:
    """Ids below -1 are rejected by the serving layer; the graph alone answers, without failing,
    as for an unseen id where the vocabulary is a table (direct or searched)."""
    pre, raw = world["pre"], world["raw"].slice(0, 16)
    model = student(pre)
    proto, _ = build_student_graph(model, pre)
    session = ort_session(proto.SerializeToString())
    bad = raw.ids.copy()
    bad[:, :2] = -7  # user_id, item_id: direct vocabularies
    unseen = raw.ids.copy()
    unseen[:, :2] = 10**6
    np.testing.assert_allclose(
        predict_probs(session, RawBatch(raw.dense, bad, raw.multi)),
        predict_probs(session, RawBatch(raw.dense, unseen, raw.multi)),
        atol=1e-7,
    )
    empty = predict_probs(session, raw.slice(0, 0))
    assert empty.shape == (0,)


def test_graph_is_small_and_free_of_control_flow(world: dict[str, Any]) -> None:
    pre = world["pre"]
    proto, facts = build_student_graph(student(pre), pre)
    ops = facts.op_counts
    assert not set(ops) & {"Loop", "Scan", "If", "Constant"}
    # lookups are tables, not comparison chains: the Equal nodes are the hashed missing test, the two
    # searched bucket matches and the history match; the Gathers pick columns and read tables
    assert ops["Gather"] <= 24 and ops["Equal"] == 4 and ops["Where"] <= 5
    assert (
        facts.nodes == len(proto.graph.node) <= 130
    )  # three lookup ways (a mix64 chain each); direct only: ~54


def test_parity_check_catches_a_wrong_graph(world: dict[str, Any]) -> None:
    pre, raw = world["pre"], world["raw"].slice(0, 50)
    model = student(pre)
    proto, _ = build_student_graph(model, pre)
    init = next(i for i in proto.graph.initializer if i.name == "ids/vector_of_slot")
    rows = onnx.numpy_helper.to_array(init)[::-1].copy()  # every categorical id reads another vector
    init.CopyFrom(onnx.numpy_helper.from_array(rows, init.name))
    with pytest.raises(ArtefactError, match=r"does not match the student: max \|p_onnx - p_torch\|"):
        check_parity(ort_session(proto.SerializeToString()), model, pre, raw)


def test_predictor_refuses_an_old_format_file(world: dict[str, Any], tmp_path: Path) -> None:
    pre = world["pre"]
    proto, _ = build_student_graph(student(pre), pre)  # no format metadata: like a pre-1-file export
    (tmp_path / "model.onnx").write_bytes(proto.SerializeToString())
    with pytest.raises(ArtefactError, match="exported by an older recdistill: re-run the export stage"):
        OnnxMlpPredictor(tmp_path)


@pytest.mark.parametrize(
    "keep",
    [("user_id", "item_id"), ("price", "score", "hist"), ("price", "item_id", "tags", "tag")],
    ids=["ids_only", "no_categorical", "dense_ids_and_searched_lists"],
)
def test_schemas_without_some_kinds(tmp_path: Path, keep: tuple[str, ...]) -> None:
    """Zero-width tensors (a schema without dense, categorical or multi-valued features) export and run."""
    feats = [dict(f) for f in SCHEMA["features"] if f["name"] in keep]
    for f in feats:  # a list whose vocabulary owner is gone gets its own vocabulary
        if f.get("vocab_from") not in (None, *keep):
            del f["vocab_from"]
    spec = {**SCHEMA, "features": feats}
    schema = Schema.from_dict(spec, source="test_onnx_graph")
    drop = [f["name"] for f in SCHEMA["features"] if f["name"] not in keep]
    frame(400, 0).drop(drop).write_parquet(tmp_path / "train.parquet")
    pre = Preprocessor.fit(tmp_path / "train.parquet", schema)
    raw = raw_batch_from_frame(frame(100, 1).drop(drop), schema, source="test")
    model = student(pre)
    export_mlp_onnx(model, pre, tmp_path / "model.onnx", sample=raw)  # parity on every case, else raises
