"""MovieLens-100k end to end on a subsample: real click logs through every stage (cross-fitted soft
labels, the distillation search, the validation choice of the served variants, Triton, report)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from recdistill.cli import main
from recdistill.io_utils import read_json

CONFIG = {
    "data": {"source": "movielens100k", "dataset": {"scenario": "privileged", "max_users": 120}},
    "teacher": {
        "embedding_dim": 16,
        "tower_dims": [32, 16],
        "cross_layers": 1,
        "cross_low_rank": 8,
        "deep_dims": [32],
        "over_dims": [16],
        "epochs": 2,
        "batch_size": 256,
        "num_threads": 1,
        "ensemble_size": 1,
    },
    "soft_labels": {"method": "out_of_fold", "folds": 3, "group_by": "user"},
    "student_mlp": {"embedding_dim": 4, "hidden": [16], "epochs": 2},
    "distill": {"listwise": 1.0},
    "gbdt": {"num_boost_round": 20, "num_leaves": 15, "oof_folds": 2, "num_threads": 1},
    "search": {"mlp": {"alpha": [0.0, 0.5]}, "gbdt": {"alpha": [0.3, 0.7]}},
    "loadtest": {"candidates": 16, "warmup_s": 0.5, "duration_s": 1.0},
    "serving": {"max_batch_size": 64},
    "report": {"rate": 20, "target_p99_ms": 100, "parity_rows": 256},
}


@pytest.mark.slow
@pytest.mark.triton
def test_movielens_subsample_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "movielens.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "run_dir": str(tmp_path / "run")}))
    assert main(["run", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "run"
    # real data, split by time, history strictly earlier (tests/test_movielens.py proves the builder)
    assert read_json(run / "data" / "dataset.json")["dataset"] == "movielens100k"
    # cross-fitted soft labels: one fold teacher per fold, the method in the manifest and every file
    assert read_json(run / "soft_labels" / "manifest.json")["method"] == "out_of_fold"
    assert len(read_json(run / "fold_teachers" / "folds.json")["teachers"]) == 3
    meta = pq.read_schema(run / "soft_labels" / "train.parquet").metadata
    assert meta[b"recdistill.soft_label_method"] == b"out_of_fold"
    # the distillation settings: every grid point validated, the best one kept
    for family in ("mlp", "gbdt"):
        search = read_json(run / "students" / f"{family}_search.json")
        points = search["points"]
        assert set(points) == {"alpha0", "alpha0.5"} if family == "mlp" else {"alpha0.3", "alpha0.7"}
        assert search["chosen"] == max(points, key=lambda n: points[n]["valid_auc"])
        assert read_json(run / "students" / f"{family}_distilled" / "search.json") == search
    # the served variant of each student is the best on validation; the twin competes
    evaluation = read_json(run / "evaluation.json")
    for family, variants in (
        ("mlp", ("mlp_distilled", "mlp_hard")),
        ("gbdt", ("gbdt_distilled", "gbdt_hard")),
    ):
        valid = {n: evaluation["models"][n]["valid"]["auc"] for n in variants}
        served = [n for n in variants if evaluation["models"][n]["served_as"] == family]
        assert served == [max(valid, key=lambda n: valid[n])]
        assert evaluation["selection"][family]["served"] == served[0]
    # served = in-process on real rows, for every model
    for model in ("teacher", "mlp", "gbdt", "noop", "ranker"):
        assert f"parity {model}" in out
    summary = read_json(run / "loadtest" / "summary.json")
    assert all(p["max_abs_diff"] <= 1e-5 for p in summary["parity"].values())
    report = (run / "report.md").read_text()
    assert "## Did distillation pay off?" in report and "embedding-MLP student" in report
    assert "Chosen by soft_labels.method: out_of_fold." in report  # the cross-fit stage's record
    rec = read_json(run / "recommendation.json")
    assert rec["text"] and json.dumps(rec)


def test_more_folds_than_users_stops_before_any_teacher_trains(tmp_path: Path) -> None:
    from recdistill.errors import ConfigError

    raw = {
        **CONFIG,
        "run_dir": str(tmp_path / "run"),
        "soft_labels": {"method": "out_of_fold", "folds": 500, "group_by": "user"},
    }
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    from recdistill.config import load_config
    from recdistill.pipeline.context import RunContext
    from recdistill.pipeline.runner import run_pipeline

    with pytest.raises(
        ConfigError, match=r"soft_labels.folds is 500, but the train split has only \d+ users"
    ):
        run_pipeline(RunContext(load_config(cfg), config_path=str(cfg)))
    assert not (tmp_path / "run" / "teacher").exists() and not (tmp_path / "run" / "fold_teachers").exists()
