"""Sharded scoring: part files per row range read back as one table equal to single-process scoring;
an interrupted run redoes only the missing parts; missing parts and mixed layouts are refused.

In-process tests write the sharded layout with one rank (``sharded=True``); the ``slow`` test runs
the real ``torchrun --nproc_per_node 2`` command (gloo on CPU) and compares it row by row.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import TINY_SCHEMA
from teacher_util import TINY_CFG
from test_teacher_score import SPLIT_ROWS, write_data

from recdistill.cli import main
from recdistill.data.batch import ModelBatch
from recdistill.data.preprocess import Preprocessor, load_split
from recdistill.data.schema import Schema
from recdistill.errors import ArtefactError
from recdistill.row_ranges import iter_row_range, plan_ranges
from recdistill.students.soft_labels import check_soft_labels, load_soft_label_rows, load_soft_labels
from recdistill.teacher import score as score_mod
from recdistill.teacher.score import run_score
from recdistill.teacher.score_parts import PART_KEY, assign_parts, plan_parts
from recdistill.teacher.train import run_train_teacher

ROOT = Path(__file__).resolve().parent.parent
PART_ROWS = 100  # 384 training rows -> parts of 100, 100, 100, 84


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("score_parts")
    schema = Schema.from_dict(TINY_SCHEMA, source="tiny")
    write_data(root / "data", schema)
    Preprocessor.fit(root / "data" / "train.parquet", schema).save(root / "pre")
    run_train_teacher(root / "data", root / "pre", root / "teacher", dataclasses.replace(TINY_CFG, epochs=1),
                      progress=False)  # fmt: skip
    run_score(root / "data", root / "pre", root / "teacher", root / "single", chunk_rows=64, progress=False)
    pre = Preprocessor.load(root / "pre")
    targets = {s: load_split(root / "data" / f"{s}.parquet", pre)[1] for s in SPLIT_ROWS}
    single = {
        s: load_soft_labels(root / "single", s, t, expected_teacher_hash=None) for s, t in targets.items()
    }
    return {"root": root, "targets": targets, "single": single}


def _score(world: dict[str, Any], out: Path, **kw: Any) -> Any:
    r = world["root"]
    return run_score(r / "data", r / "pre", r / "teacher", out, chunk_rows=64, progress=False, sharded=True,
                     part_rows=PART_ROWS, **kw)  # fmt: skip


def _max_diff(world: dict[str, Any], out: Path) -> float:
    return max(
        float(np.max(np.abs(load_soft_labels(out, s, t, expected_teacher_hash=None) - world["single"][s])))
        for s, t in world["targets"].items()
    )


def test_row_ranges_cover_the_file_in_order_with_bounded_frames(world: dict[str, Any]) -> None:
    path = world["root"] / "data" / "train.parquet"
    assert [len(r) for r in plan_ranges(384, PART_ROWS)] == [100, 100, 100, 84]
    assert plan_ranges(0, 10) == []
    keys = np.concatenate(
        [f["row_id"].to_numpy() for r in plan_ranges(384, 70) for f in iter_row_range(path, r.start, r.stop, batch_rows=32)]
    )  # fmt: skip
    np.testing.assert_array_equal(keys, world["targets"]["train"].row_key)
    assert max(len(f) for f in iter_row_range(path, 10, 300, batch_rows=32)) <= 32


def test_sharded_parts_read_as_one_table_equal_to_single_process(
    world: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "soft"
    result = _score(world, out)
    assert result.rows == SPLIT_ROWS and result.ranks == 1 and result.rows_scored == sum(SPLIT_ROWS.values())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layout"] == "sharded" and manifest["part_rows"] == PART_ROWS
    parts = manifest["splits"]["train"]["parts"]
    assert [(p["start"], p["rows"]) for p in parts] == [(0, 100), (100, 100), (200, 100), (300, 84)]
    assert sorted(f.name for f in (out / "train.parquet").iterdir()) == [
        f"part-{i:05d}.parquet" for i in range(4)
    ]
    assert _max_diff(world, out) <= 1e-6
    # any Parquet reader sees the directory as one table (what the evaluate stage reads for test)
    table = pq.read_table(out / "test.parquet", columns=["row_id", "teacher_prob"])
    assert sorted(table.column("row_id").to_pylist()) == sorted(world["targets"]["test"].row_key.tolist())
    # one row range, across a part boundary (a Dask partition)
    t = world["targets"]["train"]
    opened = check_soft_labels(out, "train", len(t), expected_teacher_hash=result.teacher_hash)
    got = load_soft_label_rows(opened, 90, 230, t.row_key[90:230], row_key="row_id")
    np.testing.assert_array_equal(got, load_soft_labels(out, "train", t, expected_teacher_hash=None)[90:230])
    with pytest.raises(ArtefactError, match="not in the data's row order"):
        load_soft_label_rows(opened, 90, 230, t.row_key[91:231], row_key="row_id")


def test_parts_are_shared_out_by_rows_and_the_cut_does_not_depend_on_the_rank_count() -> None:
    parts = plan_parts({"train": 384, "valid": 256}, PART_ROWS)
    assert [(p.split, p.rows.start, p.rows.stop) for p in parts if p.split == "valid"] == [
        ("valid", 0, 100), ("valid", 100, 200), ("valid", 200, 256)]  # fmt: skip
    mine = assign_parts(parts, 2)
    assert sorted(p.file for m in mine for p in m) == sorted(p.file for p in parts)
    assert [sum(len(p.rows) for p in m) for m in mine] == [300, 340]  # 640 rows: within one part
    assert [len(m) for m in assign_parts(parts, 3)] == [2, 2, 3]
    assert assign_parts(parts[:1], 2)[1] == []  # more ranks than parts: idle ranks are fine


def test_an_interrupted_run_redoes_only_the_missing_parts(
    world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "soft"
    _score(world, out)
    # a rank killed mid-way: its part is gone, a temporary file is left, no manifest was written
    (out / "train.parquet" / "part-00002.parquet").unlink()
    (out / "train.parquet" / ".part-00002.parquet.abc.tmp").write_bytes(b"half")
    (out / "manifest.json").unlink()
    kept = (out / "valid.parquet" / "part-00000.parquet").stat().st_mtime_ns
    scored: list[int] = []
    real = score_mod.predict_logits

    def spy(model: Any, batch: ModelBatch, **kw: Any) -> np.ndarray:
        scored.append(len(batch))
        return real(model, batch, **kw)

    monkeypatch.setattr(score_mod, "predict_logits", spy)
    result = _score(world, out)
    assert sum(scored) == 100 and result.rows_scored == 100  # rows [200, 300) of train only
    assert (out / "valid.parquet" / "part-00000.parquet").stat().st_mtime_ns == kept
    assert not (out / "train.parquet" / ".part-00002.parquet.abc.tmp").exists()
    assert json.loads((out / "manifest.json").read_text())["rows_kept"] == sum(SPLIT_ROWS.values()) - 100
    assert _max_diff(world, out) <= 1e-6
    # another teacher or data means another job: nothing is kept; resume=False rescores too
    scored.clear()
    _score(world, out, resume=False)
    assert sum(scored) == sum(SPLIT_ROWS.values())


def test_missing_part_and_mixed_layouts_are_refused(world: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "soft"
    _score(world, out)
    t = world["targets"]["train"]
    missing = tmp_path / "missing"
    shutil.copytree(out, missing)
    (missing / "train.parquet" / "part-00001.parquet").unlink()
    with pytest.raises(
        ArtefactError, match=r"part-00001.parquet: soft-label part missing \(rows \[100, 200\)"
    ):
        load_soft_labels(missing, "train", t, expected_teacher_hash=None)
    # a single-process file where the manifest lists parts
    mixed = tmp_path / "mixed"
    shutil.copytree(out, mixed)
    shutil.rmtree(mixed / "train.parquet")
    shutil.copy(world["root"] / "single" / "train.parquet", mixed / "train.parquet")
    with pytest.raises(ArtefactError, match="single-process and sharded soft labels cannot be mixed"):
        load_soft_labels(mixed, "train", t, expected_teacher_hash=None)
    # parts where a single-process manifest describes one file
    mixed2 = tmp_path / "mixed2"
    shutil.copytree(world["root"] / "single", mixed2)
    (mixed2 / "train.parquet").unlink()
    shutil.copytree(out / "train.parquet", mixed2 / "train.parquet")
    with pytest.raises(ArtefactError, match="single-process and sharded soft labels cannot be mixed"):
        load_soft_labels(mixed2, "train", t, expected_teacher_hash=None)
    # a file of another run dropped among the parts
    stray = tmp_path / "stray"
    shutil.copytree(out, stray)
    shutil.copy(world["root"] / "single" / "train.parquet", stray / "train.parquet" / "extra.parquet")
    with pytest.raises(ArtefactError, match="extra.parquet is not one of the 4 parts"):
        load_soft_labels(stray, "train", t, expected_teacher_hash=None)
    # rescoring in one process replaces the parts with one file again
    r = world["root"]
    run_score(r / "data", r / "pre", r / "teacher", stray, splits=["train"], chunk_rows=64, progress=False)
    assert (stray / "train.parquet").is_file()
    np.testing.assert_array_equal(
        load_soft_labels(stray, "train", t, expected_teacher_hash=None), world["single"]["train"]
    )
    meta = pq.read_schema(out / "train.parquet" / "part-00003.parquet").metadata
    assert json.loads(meta[PART_KEY])["start"] == 300


@pytest.mark.slow
def test_torchrun_two_ranks_equal_single_process(world: dict[str, Any], tmp_path: Path) -> None:
    r, out = world["root"], tmp_path / "soft"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "recdistill", "score", "--data", str(r / "data"), "--preprocess", str(r / "pre"),
           "--teacher", str(r / "teacher"), "--out", str(out), "--chunk-rows", "64",
           "--part-rows", str(PART_ROWS), "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{") :])  # rank 0's summary only
    assert summary["ranks"] == 2 and summary["rows"] == SPLIT_ROWS
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ranks"] == 2 and [p["rank"] for p in manifest["per_rank"]] == [0, 1]
    assert {p["rank"] for s in manifest["splits"].values() for p in s["parts"]} == {0, 1}
    diff = _max_diff(world, out)
    print(f"max |sharded (2 ranks) - single process| = {diff:.2e}")
    assert diff <= 1e-6


@pytest.mark.slow
def test_pipeline_score_stage_under_torchrun_writes_parts(tmp_path: Path) -> None:
    """``torchrun ... -m recdistill run --from score --until score``: both ranks run the stage,
    the parts and the manifest are written once, the run manifest records the two ranks."""
    raw = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    raw["run_dir"] = str(tmp_path / "run")
    raw["data"]["generator"].update(rows=4096, transfer_rows=1024)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["run", "--config", str(cfg), "--until", "score"]) == 0
    single = tmp_path / "single"
    shutil.copytree(tmp_path / "run" / "soft_labels", single)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "recdistill", "run", "--config", str(cfg), "--from", "score", "--until", "score"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    soft = tmp_path / "run" / "soft_labels"
    assert json.loads((soft / "manifest.json").read_text())["layout"] == "sharded"
    stage = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["score"]
    assert stage["metrics"]["ranks"] == 2
    pre = Preprocessor.load(tmp_path / "run" / "preprocess")
    for split in ("train", "test"):
        _, t = load_split(tmp_path / "run" / "data" / f"{split}.parquet", pre)
        got = load_soft_labels(soft, split, t, expected_teacher_hash=None)
        np.testing.assert_array_equal(got, load_soft_labels(single, split, t, expected_teacher_hash=None))
