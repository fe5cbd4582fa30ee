"""``distill.mode`` in the pipeline: which students each mode trains, what each stage's inputs
hold, the training seconds per model, and (slow) tiny runs in every mode."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from recdistill.cli import main
from recdistill.config import RunConfig, load_config
from recdistill.config.distill import DistillLossConfig, OnlineDistillConfig
from recdistill.config.students import MlpStudentConfig
from recdistill.io_utils import atomic_write_json, file_sha256, read_json
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.registry import find_stage
from recdistill.pipeline.run_models import train_seconds
from recdistill.pipeline.stages_export import trained_models
from recdistill.pipeline.stages_models import mlp_students, mlp_variants

TINY = Path(__file__).parent.parent / "configs" / "tiny.yaml"


def _ctx(tmp_path: Path, **distill: Any) -> RunContext:
    cfg = RunConfig(run_dir=str(tmp_path / "run"), distill=DistillLossConfig(**distill))
    return RunContext(cfg)


@pytest.mark.parametrize(
    ("mode", "students"),
    [
        ("offline", ["mlp_distilled", "mlp_hard"]),
        ("online", ["mlp_online", "mlp_hard"]),
        ("self", ["mlp_self", "mlp_hard"]),
    ],
)
def test_each_mode_trains_its_student_beside_the_hard_twin(
    tmp_path: Path, mode: str, students: list[str]
) -> None:
    ctx = _ctx(tmp_path, mode=mode)
    assert mlp_students(ctx) == students
    assert trained_models(ctx) == ["teacher", *students, "gbdt_distilled", "gbdt_hard"]
    teacher_outputs = find_stage("train-teacher").outputs(ctx)
    assert ("students/mlp_online/model.pt" in teacher_outputs) == (mode == "online")
    assert set(mlp_variants(ctx)) == set(students) - {"mlp_online"}


def test_stage_inputs_hold_what_each_mode_reads(tmp_path: Path) -> None:
    teacher, mlp = find_stage("train-teacher"), find_stage("distill-mlp")
    offline = _ctx(tmp_path)
    # an offline run reads neither the scheme's options nor (for the teacher) the student's settings
    other_options = _ctx(tmp_path, generations=5, online=OnlineDistillConfig(rescore_fraction=0.9))
    assert mlp.inputs(other_options) == mlp.inputs(offline)
    assert teacher.inputs(other_options) == teacher.inputs(offline)
    wider = RunContext(dataclasses.replace(offline.cfg, student_mlp=MlpStudentConfig(embedding_dim=16)))
    assert teacher.inputs(wider) == teacher.inputs(offline)

    online = _ctx(tmp_path, mode="online")
    assert {"student_mlp", "distill", "online_code"} <= set(teacher.inputs(online))
    shared = _ctx(tmp_path, mode="online", online=OnlineDistillConfig(share_embeddings=True))
    assert teacher.inputs(shared) != teacher.inputs(online)
    assert "soft_labels" in mlp.inputs(offline) and "soft_labels" not in mlp.inputs(online)
    self_mode = _ctx(tmp_path, mode="self")
    assert "soft_labels" not in mlp.inputs(self_mode)
    assert mlp.inputs(_ctx(tmp_path, mode="self", generations=3)) != mlp.inputs(self_mode)
    assert teacher.inputs(self_mode) == teacher.inputs(offline)  # the comparison teacher is the offline one


def test_train_seconds_add_up_each_models_path(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)

    def rec(seconds: float, **metrics: Any) -> dict[str, Any]:
        return {"seconds": seconds, "metrics": metrics}

    stages = {
        "train-teacher": rec(100.0),
        "cross-fit": rec(40.0),
        "score": rec(20.0),
        "distill-mlp": rec(99.0, search_seconds=30.0, mlp_distilled={"seconds": 0.0},
                           mlp_distilled_transfer={"seconds": 12.0}, mlp_hard={"seconds": 5.0}),
        "distill-gbdt": rec(50.0, gbdt_distilled={"seconds": 35.0}, gbdt_hard={"seconds": 15.0}),
    }  # fmt: skip
    ctx.run_dir.mkdir(parents=True)
    atomic_write_json(ctx.run_dir / "manifest.json", {"stages": stages})
    assert train_seconds(ctx) == {
        "teacher": 100.0,
        "mlp_distilled": 100 + 40 + 20 + 30 + 0.0,  # teacher, fold teachers, scoring, the grid that chose it
        "mlp_distilled_transfer": 100 + 40 + 20 + 30 + 12.0,
        "mlp_hard": 5.0,
        "gbdt_distilled": 100 + 40 + 20 + 35.0,  # its own seconds include its search
        "gbdt_hard": 15.0,
    }
    stages["train-teacher"] = rec(130.0, teacher_seconds=95.0, mlp_online={"seconds": 128.0})
    stages["distill-mlp"] = rec(60.0, mlp_self={"seconds": 55.0}, mlp_hard={"seconds": 5.0})
    atomic_write_json(ctx.run_dir / "manifest.json", {"stages": stages})
    seconds = train_seconds(ctx)
    assert (seconds["teacher"], seconds["mlp_online"], seconds["mlp_self"]) == (95.0, 130.0, 55.0)


def _config(tmp_path: Path, **distill: Any) -> Path:
    raw = yaml.safe_load(TINY.read_text())
    raw["run_dir"] = str(tmp_path / "run")
    raw["student_mlp"]["epochs"] = 2
    raw["distill"] = distill
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.slow
def test_tiny_runs_in_every_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"

    def evaluate(**distill: Any) -> dict[str, Any]:
        assert main(["run", "--config", str(_config(tmp_path, **distill)), "--until", "evaluate"]) == 0
        out: dict[str, Any] = read_json(run / "evaluation.json")
        return out

    def stages() -> dict[str, Any]:
        out: dict[str, Any] = read_json(run / "manifest.json")["stages"]
        return out

    ev = evaluate()
    s = stages()
    upstream = sum(s[n]["seconds"] for n in ("train-teacher", "cross-fit", "score"))
    assert ev["models"]["mlp_distilled"]["train_seconds_total"] == pytest.approx(
        upstream + s["distill-mlp"]["metrics"]["mlp_distilled"]["seconds"], abs=0.02
    )
    teacher_hash = file_sha256(run / "teacher" / "model.pt")

    ev = evaluate(mode="self", generations=2)
    assert set(ev["models"]) == {"teacher", "mlp_self", "mlp_hard", "gbdt_distilled", "gbdt_hard"}
    assert "train-teacher  skipped" in capsys.readouterr().out  # the same comparison teacher
    assert file_sha256(run / "teacher" / "model.pt") == teacher_hash
    record = read_json(run / "students" / "mlp_self" / "born_again.json")
    assert [g["generation"] for g in record["per_generation"]] == [0, 1, 2]
    assert ev["models"]["mlp_self"]["train_seconds_total"] == record["train_seconds_total"]
    gen0 = run / "students" / "born_again" / "gen_0" / "model.pt"
    assert file_sha256(run / "students" / "mlp_hard" / "model.pt") == file_sha256(gen0)  # the hard twin

    ev = evaluate(mode="online")
    assert set(ev["models"]) == {"teacher", "mlp_online", "mlp_hard", "gbdt_distilled", "gbdt_hard"}
    assert not (run / "students" / "mlp_self").exists() and not (run / "export" / "mlp_self").exists()
    assert ev["models"]["mlp_online"]["train_seconds_total"] == stages()["train-teacher"]["seconds"]
    online = read_json(run / "students" / "mlp_online" / "online.json")
    assert online["joint"]["teacher_epochs"] == 1 and online["after"]["epochs_run"] >= 1
    assert (
        "served_as" in ev["models"]["mlp_online"] and "train s (total)" in (run / "evaluation.md").read_text()
    )
    capsys.readouterr()
    evaluate(mode="online")  # unchanged: nothing reruns
    assert capsys.readouterr().out.count("skipped (inputs unchanged)") == 9

    cfg = load_config(_config(tmp_path, mode="online"))
    assert cfg.distill.mode == "online"
