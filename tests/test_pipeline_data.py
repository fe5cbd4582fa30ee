"""The ``data`` stage on the user's files: skipped when unchanged, rerun when the log changes, and a
failed run leaves the previous split files intact."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from recdistill.config import load_config
from recdistill.errors import DataError
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.runner import run_pipeline
from tests.test_write_splits import LOG_SCHEMA, click_log


def _ctx(tmp_path: Path) -> RunContext:
    (tmp_path / "schema.json").write_text(json.dumps(LOG_SCHEMA))
    raw = {
        "run_dir": str(tmp_path / "run"),
        "data": {
            "source": "files",
            "path": str(tmp_path / "log.csv"),
            "schema": str(tmp_path / "schema.json"),
            "split": {"by": "time", "column": "ts"},
        },
    }
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(raw))
    return RunContext(load_config(p), config_path=str(p))


def test_data_stage_skips_reruns_and_survives_a_failed_rerun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    click_log().write_csv(tmp_path / "log.csv")
    ctx = _ctx(tmp_path)
    run_pipeline(ctx, until="preprocess")
    assert ctx.split_path("train") == tmp_path / "run" / "data" / "train.parquet"
    first = pl.read_parquet(ctx.split_path("train"))
    capsys.readouterr()
    run_pipeline(ctx, until="preprocess")
    assert capsys.readouterr().out.count("skipped (inputs unchanged)") == 2
    # a changed log reruns data (and preprocess after it)
    click_log(seed=1).write_csv(tmp_path / "log.csv")
    run_pipeline(ctx, until="preprocess")
    out = capsys.readouterr().out
    assert "skipped" not in out and "writing train, valid, test" in out
    second = pl.read_parquet(ctx.split_path("train"))
    assert not second.equals(first)
    # a bad log fails the stage; the split files of the last good run are still there, whole
    click_log(seed=2).with_columns(pl.lit(3).alias("click")).write_csv(tmp_path / "log.csv")
    with pytest.raises(DataError, match="log.csv: label column 'click'"):
        run_pipeline(ctx, until="preprocess")
    assert pl.read_parquet(ctx.split_path("train")).equals(second)
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".data")) == []
