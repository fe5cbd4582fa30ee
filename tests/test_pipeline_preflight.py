"""A bad run configuration fails before any stage runs, naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recdistill.cli import main
from recdistill.config import load_config
from recdistill.errors import ConfigError
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.runner import run_pipeline


def _ctx(tmp_path: Path, raw: dict[str, object]) -> RunContext:
    raw = {"run_dir": str(tmp_path / "run"), **raw}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(raw))
    return RunContext(load_config(p), config_path=str(p))


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"data": {"source": "files", "format": "csv", "schema": "/nope/schema.json", "train": "/nope/t.csv",
                   "valid": "/nope/v.csv", "test": "/nope/x.csv"}}, "data.train names /nope/t.csv, which does not exist"),
        ({"data": {"source": "files", "format": "csv"}}, "data.train is required with data.source: files"),
        ({"serving": {"ranker_target": "xgboost"}}, "serving.ranker_target 'xgboost' is not a served model"),
        ({"loadtest": {"candidates": 512}, "serving": {"max_batch_size": 256}}, "loadtest.candidates (512) exceeds"),
        ({"distill": {"mode": "self", "kind": "hard"}}, "distill.mode self distils, but distill.kind is hard"),
        ({"distill": {"mode": "online", "online": {"share_embeddings": True}}, "teacher": {"embedding_dim": 128}},
         "share_embeddings gives the student the teacher's 128-wide tables"),
    ],
)  # fmt: skip
def test_bad_config_fails_before_any_stage(tmp_path: Path, raw: dict[str, object], fragment: str) -> None:
    ctx = _ctx(tmp_path, raw)
    with pytest.raises(ConfigError) as e:
        run_pipeline(ctx)
    assert fragment in str(e.value) and "c.yaml" in str(e.value)
    assert not (tmp_path / "run").exists()  # nothing ran


def test_listwise_without_request_ids_is_impossible(tmp_path: Path) -> None:
    from tests.test_readers import CRITEO_LINES

    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.tsv").write_text("\n".join(CRITEO_LINES) + "\n")
    files = {s: str(tmp_path / f"{s}.tsv") for s in ("train", "valid", "test")}
    ctx = _ctx(
        tmp_path, {"data": {"source": "files", "format": "criteo", **files}, "distill": {"listwise": 0.5}}
    )
    with pytest.raises(ConfigError, match="distill.listwise needs requests"):
        run_pipeline(ctx)


def test_cli_reports_unknown_stage_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("run_dir: x\nteacher:\n  embeding_dim: 3\n")
    assert main(["run", "--config", str(p)]) == 2
    assert "unknown key 'teacher.embeding_dim' (did you mean 'embedding_dim'?)" in capsys.readouterr().err
    p.write_text(f"run_dir: {tmp_path / 'r'}\n")
    assert main(["run", "--config", str(p), "--from", "trian"]) == 2
    assert "--from 'trian' is not a stage" in capsys.readouterr().err


def test_one_log_config_is_checked_before_any_stage(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(
        '{"label": "click", "row_key": null, "request_id": null, "user_id": null,'
        ' "features": [{"name": "x", "kind": "dense"}]}'
    )
    log = tmp_path / "log.csv"
    log.write_text("click,x\n1,0.5\n")
    cases = [
        (
            {"path": str(tmp_path / "logs" / "*.csv"), "split": {"by": "random"}},
            "data.path: ",
            "the glob matches no file",
        ),
        ({"path": str(log), "split": {"by": "user"}}, "data.split.by: user needs a user column", ""),
        (
            {"path": str(tmp_path / "nope.csv"), "split": {"by": "random"}},
            "data.path names",
            "does not exist",
        ),
    ]
    for data, fragment, more in cases:
        ctx = _ctx(tmp_path, {"data": {"source": "files", "schema": str(schema), **data}})
        with pytest.raises(ConfigError) as e:
            run_pipeline(ctx)
        assert fragment in str(e.value) and more in str(e.value) and "c.yaml" in str(e.value)
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"path": "log.csv", "train": "t.csv", "split": {"by": "random"}}, "either data.path"),
        ({"path": "log.csv"}, "data.split is required with data.path"),
        ({"train": "t.csv", "split": {"by": "random"}}, "data.split applies to data.path"),
        ({"path": "log.csv", "split": {"by": "time"}}, "split.column is required with split.by: time"),
        ({"path": "log.csv", "split": {"fractions": [0.9, 0.2, 0.1]}}, "split.fractions must be three"),
    ],
)
def test_bad_data_section(tmp_path: Path, data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match="c.yaml") as e:
        _ctx(tmp_path, {"data": {"source": "files", **data}})
    assert fragment in str(e.value)
