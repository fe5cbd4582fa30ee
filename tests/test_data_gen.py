"""data_gen: determinism, file layout, schema, request structure, labels, privileged flag."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from data_gen import generate
from data_gen.stats import roc_auc
from recdistill.config import GeneratorConfig
from recdistill.data.schema import Schema
from recdistill.data.validate import validate_file

SMALL = GeneratorConfig(
    seed=7, rows=10_000, transfer_rows=2_000, n_users=2_000, n_items=5_000, n_categories=50,
    chunk_rows=3_000,
)  # fmt: skip
FILES = ("train", "valid", "test", "transfer")


def _gen(tmp_path: Path, name: str, cfg: GeneratorConfig = SMALL) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / name
    return out, generate(cfg, out, progress=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return _gen(tmp_path_factory.mktemp("dg"), "a")


def _read(out: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(out / f"{name}.parquet")


def test_files_and_summary(small: tuple[Path, dict[str, Any]]) -> None:
    out, summary = small
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f"{n}.parquet" for n in FILES), "schema.json"])
    json.dumps(summary)  # JSON-able
    n_req = -(-SMALL.rows // SMALL.candidates_per_request)
    assert sum(summary["rows"][s] for s in ("train", "valid", "test")) == n_req * SMALL.candidates_per_request
    assert summary["rows"]["transfer"] == 16 * SMALL.candidates_per_request  # ceil(2000 / 128)
    for name in FILES:
        assert _read(out, name).height == summary["rows"][name]
    assert summary["rows"]["train"] > summary["rows"]["valid"] > 0
    assert summary["bayes_auc"] is not None and summary["bayes_auc"] > 0.6
    assert 0.02 < summary["ctr_observed"] < 0.1
    assert summary["rows_per_s"] > 0


def test_schema_matches_columns(small: tuple[Path, dict[str, Any]]) -> None:
    out, summary = small
    schema = Schema.load(out)
    assert schema.true_ctr == "true_ctr" and schema.user_id == "user_id"
    assert [f["name"] for f in summary["features"]] == schema.feature_names
    expected = [*schema.all_columns, "true_ctr"]
    for name in FILES:
        cols = pq.read_schema(out / f"{name}.parquet").names
        assert sorted(cols) == sorted(expected)
        validate_file(out / f"{name}.parquet", schema, labelled=name != "transfer")  # the real checker
    hist = schema.feature("user_hist")
    assert hist.kind == "multi" and hist.vocab_from == "item_id" and hist.max_len == SMALL.history_len
    assert schema.feature("user_long_hist").vocab_from == "item_category"


def test_request_structure(small: tuple[Path, dict[str, Any]]) -> None:
    out, _ = small
    frames = {n: _read(out, n) for n in FILES}
    N = SMALL.candidates_per_request
    all_rows = pl.concat([f.select("row_id", "request_id") for f in frames.values()])
    assert all_rows["row_id"].n_unique() == all_rows.height
    for name, df in frames.items():
        per_req = df.group_by("request_id").agg(
            pl.len().alias("n"),
            pl.col("user_id").n_unique().alias("users"),
            pl.col("context_id").n_unique().alias("contexts"),
            pl.col("item_id").n_unique().alias("items"),
            pl.col("position").sort().alias("positions"),
        )
        assert (per_req["n"] == N).all(), name
        assert (per_req["users"] == 1).all() and (per_req["contexts"] == 1).all()
        assert (per_req["items"] == N).all(), f"{name}: candidates of a request must be distinct items"
        assert all(p.to_list() == list(range(N)) for p in per_req["positions"])
        assert df["user_hist"].list.len().to_numpy().max() <= SMALL.history_len
        assert df["user_long_hist"].list.len().to_numpy().max() <= SMALL.long_history_len
    # a request lands in exactly one file
    req_sets = [set(frames[n]["request_id"].unique().to_list()) for n in FILES]
    assert sum(len(s) for s in req_sets) == len(set().union(*req_sets))


def test_labels_and_true_ctr(small: tuple[Path, dict[str, Any]]) -> None:
    out, _ = small
    for name in ("train", "valid", "test"):
        df = _read(out, name)
        assert df["click"].null_count() == 0 and set(df["click"].unique().to_list()) <= {0, 1}
        ctr = df["true_ctr"].to_numpy()
        assert ((ctr > 0) & (ctr < 1)).all()
    transfer = _read(out, "transfer")
    assert transfer["click"].null_count() == transfer.height
    labelled_max = max(int(_read(out, n)["request_id"].to_numpy().max()) for n in ("train", "valid", "test"))
    assert int(transfer["request_id"].to_numpy().min()) == labelled_max + 1  # ids continue after labelled
    ctr = transfer["true_ctr"].to_numpy()
    assert ((ctr > 0) & (ctr < 1)).all()


def test_labels_follow_true_ctr(small: tuple[Path, dict[str, Any]]) -> None:
    out, _ = small
    df = pl.concat([_read(out, n) for n in ("train", "valid", "test")])
    y, p = df["click"].to_numpy(), df["true_ctr"].to_numpy()
    assert abs(y.mean() - p.mean()) < 4 * np.sqrt(p.mean() / y.shape[0])  # calibrated draws
    top = p > np.quantile(p, 0.9)
    assert y[top].mean() > 3 * y[~top].mean()  # the signal is real, not noise


def test_deterministic(tmp_path: Path, small: tuple[Path, dict[str, Any]]) -> None:
    out_a, summary_a = small
    out_b, summary_b = _gen(tmp_path, "b")  # same config again
    for name in FILES:
        a = (out_a / f"{name}.parquet").read_bytes()
        assert a == (out_b / f"{name}.parquet").read_bytes(), f"{name}.parquet differs between equal runs"
    assert (out_a / "schema.json").read_text() == (out_b / "schema.json").read_text()
    assert summary_a["bayes_auc"] == summary_b["bayes_auc"]


def test_content_does_not_depend_on_chunk_rows(tmp_path: Path) -> None:
    # 3 rng blocks of 16,384 rows; chunk_rows changes only how rows are grouped on disk
    cfg = dataclasses.replace(SMALL, rows=40_000, transfer_rows=0, split=(0.5, 0.25, 0.25), chunk_rows=5_000)
    out_a, _ = _gen(tmp_path, "chunked", cfg)
    out_b, _ = _gen(tmp_path, "whole", dataclasses.replace(cfg, chunk_rows=10**7))
    for name in ("train", "valid", "test"):
        assert _read(out_a, name).equals(_read(out_b, name)), f"{name}: content depends on chunk_rows"
    groups = pq.ParquetFile(out_a / "train.parquet").metadata.num_row_groups
    assert groups > pq.ParquetFile(out_b / "train.parquet").metadata.num_row_groups == 1


def test_different_seed_differs(tmp_path: Path, small: tuple[Path, dict[str, Any]]) -> None:
    out_a, _ = small
    out_d, _ = _gen(tmp_path, "d", dataclasses.replace(SMALL, seed=8, transfer_rows=0))
    a, d = _read(out_a, "train"), _read(out_d, "train")
    assert not np.array_equal(a["item_id"].to_numpy()[:500], d["item_id"].to_numpy()[:500])
    assert not (out_d / "transfer.parquet").exists()


def test_privileged_flag_flips_teacher_only(tmp_path: Path, small: tuple[Path, dict[str, Any]]) -> None:
    out_a, summary_a = small
    cfg = dataclasses.replace(SMALL, privileged=False, rows=2_000, transfer_rows=0)
    out_s, summary_s = _gen(tmp_path, "same", cfg)
    priv, same = Schema.load(out_a), Schema.load(out_s)
    assert {f.name for f in priv.features if f.teacher_only} == {"user_long_hist", "item_quality"}
    assert summary_a["teacher_only"] == ["user_long_hist", "item_quality"]
    assert not any(f.teacher_only for f in same.features) and summary_s["teacher_only"] == []
    assert priv.feature_names == same.feature_names
    assert priv.student_view().feature_names == [
        n for n in priv.feature_names if n not in ("user_long_hist", "item_quality")
    ]
    # same data-generating process: the flag changes the schema only, not the rows; and a smaller
    # data set is a prefix of a larger one (request r is the same whatever `rows` is)
    for name in ("train", "valid", "test"):
        small_df = _read(out_s, name)
        assert small_df.equals(_read(out_a, name).head(small_df.height)), name


def test_roc_auc_matches_definition() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = np.round(rng.normal(size=300) + y, 1)  # many ties
    pos, neg = s[y], s[~y]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        pos.size * neg.size
    )
    assert roc_auc(y, s) == pytest.approx(brute, abs=1e-12)
    assert roc_auc(np.ones(5), np.arange(5)) is None


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="n_items"):
        GeneratorConfig(n_items=100, candidates_per_request=128)
    with pytest.raises(ValueError, match="transfer_rows"):
        GeneratorConfig(transfer_rows=-1)
