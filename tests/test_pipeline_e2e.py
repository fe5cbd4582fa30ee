"""End to end: `recdistill run` on tiny generated data (with a real Triton server), resume/skip
behaviour, and bring-your-own-data runs on a CSV click log and on Criteo TSV files."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from recdistill.cli import main
from recdistill.io_utils import read_json
from recdistill.pipeline.registry import stage_names

PNG = b"\x89PNG\r\n\x1a\n"
TINY = Path(__file__).parent.parent / "configs" / "tiny.yaml"


def _config(tmp_path: Path, **sections: Any) -> Path:
    raw = yaml.safe_load(TINY.read_text())
    raw["run_dir"] = str(tmp_path / "run")
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key].update(value)
        else:
            raw[key] = value
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.slow
@pytest.mark.triton
def test_run_end_to_end_then_skip_then_rerun_from(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    run = tmp_path / "run"
    assert main(["run", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    for model in ("teacher", "mlp", "gbdt", "noop", "ranker"):
        m = re.search(
            rf"parity {model}\s+(\d+) rows over HTTP\+gRPC: max \|served - in-process\| = (\S+)", out
        )
        assert m is not None, out
        assert int(m.group(1)) >= 1000 and float(m.group(2)) <= 1e-5
    summary = read_json(run / "loadtest" / "summary.json")
    assert set(summary["models"]) == {"teacher", "mlp", "gbdt", "noop"}
    assert all(m["errors"] == 0 for m in summary["models"].values())
    evaluation = read_json(run / "evaluation.json")
    assert set(evaluation["models"]) == {
        "teacher",
        "mlp_distilled",
        "mlp_distilled_transfer",
        "mlp_hard",
        "gbdt_distilled",
        "gbdt_hard",
    }
    assert evaluation["models"]["teacher"]["params"] > 5 * evaluation["models"]["mlp_distilled"]["params"]
    # the report: every image the markdown references exists and is a PNG; the HTML embeds them
    md = (run / "report.md").read_text()
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(refs) >= 4 and all((run / r).read_bytes()[:8] == PNG for r in refs)
    html = (run / "report.html").read_text()
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(uris) == len(refs) and all(base64.b64decode(u)[:8] == PNG for u in uris)
    assert read_json(run / "recommendation.json")["text"]

    # unchanged inputs: every stage is skipped
    assert main(["run", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    n = len(stage_names())
    assert out.count("skipped (inputs unchanged)") == n, out
    # --from distill-mlp reruns that stage and what follows, not what precedes it
    manifest_before = read_json(run / "manifest.json")["stages"]
    assert main(["run", "--config", str(cfg), "--from", "distill-mlp", "--until", "distill-gbdt"]) == 0
    out = capsys.readouterr().out
    pos = {name: i for i, name in enumerate(stage_names(), 1)}
    assert f"[{pos['train-teacher']}/{n}] train-teacher  skipped" in out
    assert f"[{pos['distill-mlp']}/{n}] distill-mlp    distil" in out
    after = read_json(run / "manifest.json")["stages"]
    assert after["train-teacher"] == manifest_before["train-teacher"]
    assert after["distill-mlp"]["finished_at"] >= manifest_before["distill-mlp"]["finished_at"]


@pytest.mark.slow
def test_bring_your_own_csv(tmp_path: Path) -> None:
    """A user's CSV click log with string categories, a schema file, three split files."""
    rng = np.random.default_rng(0)
    schema = {
        "label": "clicked", "row_key": "impression_id", "request_id": "page_view", "user_id": "visitor",
        "features": [
            {"name": "visitor", "kind": "categorical", "group": "user"},
            {"name": "ad", "kind": "categorical", "group": "item", "min_count": 2},
            {"name": "site", "kind": "categorical", "group": "context", "hash_buckets": 64},
            {"name": "bid", "kind": "dense", "group": "item", "transform": "log1p"},
            {"name": "quality", "kind": "dense", "group": "item", "teacher_only": True},
        ],
    }  # fmt: skip
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    paths = {}
    for i, split in enumerate(("train", "valid", "test")):
        n = 3000 if split == "train" else 640
        ad = rng.integers(0, 50, n)
        quality = rng.normal(size=n)
        logit = -2.0 + 0.04 * ad + 1.5 * quality
        df = pl.DataFrame({
            "impression_id": np.arange(n) + 100_000 * i,
            "page_view": np.arange(n) // 32 + 10_000 * i,
            "visitor": [f"v{x}" for x in rng.integers(0, 40, n)],
            "clicked": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
            "ad": [f"ad-{x}" for x in ad],
            "site": [f"site{x}" for x in rng.integers(0, 9, n)],
            "bid": rng.lognormal(0, 1, n),
            "quality": quality,
        })  # fmt: skip
        paths[split] = tmp_path / f"{split}_log.csv"
        df.write_csv(paths[split])
    cfg = _config(
        tmp_path,
        data={
            "source": "files",
            "format": "csv",
            "schema": str(tmp_path / "schema.json"),
            **{k: str(v) for k, v in paths.items()},
        },
        loadtest={"candidates": 32},
        # enough steps for the teacher to learn (tiny.yaml's batch 1024 gives 2 warm-up steps on
        # 3,000 rows: the AUC was the initial weights' luck)
        teacher={"epochs": 4, "batch_size": 256},
    )
    assert main(["run", "--config", str(cfg), "--until", "evaluate"]) == 0
    evaluation = read_json(tmp_path / "run" / "evaluation.json")
    assert evaluation["models"]["teacher"]["auc"] > 0.6
    assert "gauc" in evaluation["models"]["mlp_distilled"]


CRITEO_ROW = "\t".join(["{label}", *["{i}"] * 13, *["{c:08x}"] * 26])


@pytest.mark.slow
def test_bring_your_own_criteo_tsv(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    paths = {}
    for split, n in (("train", 2000), ("valid", 400), ("test", 400)):
        lines = []
        for _ in range(n):
            c = int(rng.integers(0, 30))
            label = int(rng.random() < (0.5 if c < 5 else 0.1))
            row = CRITEO_ROW.format(label=label, i=int(rng.integers(0, 100)), c=c)
            fields = row.split("\t")
            if rng.random() < 0.2:
                fields[3] = ""  # a missing integer feature
            lines.append("\t".join(fields))
        paths[split] = tmp_path / f"{split}.tsv"
        paths[split].write_text("\n".join(lines) + "\n")
    cfg = _config(
        tmp_path,
        data={"source": "files", "format": "criteo", **{k: str(v) for k, v in paths.items()}},
        loadtest={"candidates": 32},
        teacher={"epochs": 4, "batch_size": 256},
    )
    assert main(["run", "--config", str(cfg), "--until", "evaluate"]) == 0
    evaluation = read_json(tmp_path / "run" / "evaluation.json")
    assert evaluation["models"]["teacher"]["auc"] > 0.6  # the planted category signal is learnt
    assert "gauc" not in evaluation["models"]["teacher"]  # Criteo has no user column


def _own_click_log(path: Path, n: int = 6000) -> None:
    """One CSV log as a user has it: text ids, a `|` list column, an unused column, a timestamp,
    no row id. Clicks depend on the item and on one genre (learnable signal)."""
    rng = np.random.default_rng(7)
    item = rng.integers(0, 60, n)
    genres = [sorted({int(g) for g in rng.integers(0, 12, rng.integers(0, 4))}) for _ in range(n)]
    has_7 = np.array([7 in g for g in genres])
    logit = -1.5 + 1.5 * (item % 3 == 0) + 2.0 * has_7
    pl.DataFrame({
        "ts": np.sort(rng.integers(1_700_000_000, 1_700_900_000, n)),
        "visitor": [f"v{x}" for x in rng.integers(0, 150, n)],
        "ad_id": [f"ad-{x}" for x in item],
        "genres": ["|".join(str(g) for g in gs) for gs in genres],
        "bid": rng.lognormal(0, 1, n),
        "comment": rng.normal(size=n),  # unused
        "click": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
    }).write_csv(path)  # fmt: skip


def test_your_data_in_three_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README "Your data in three steps": init-schema, edit, run (on a one-file CSV split by time)."""
    log = tmp_path / "clicks.csv"
    _own_click_log(log)
    schema_path = tmp_path / "mylog" / "schema.json"
    # 1. init-schema
    args = [
        "init-schema",
        str(log),
        "--label",
        "click",
        "--user",
        "visitor",
        "--time",
        "ts",
        "--out",
        str(schema_path),
    ]
    assert main(args) == 0
    assert "text lists separated by '|'" in capsys.readouterr().out
    # 2. edit: the unused column out, tiny model sizes into the run config
    schema = json.loads(schema_path.read_text())
    assert {f["name"]: f["kind"] for f in schema["features"]}["genres"] == "multi"
    schema["features"] = [f for f in schema["features"] if f["name"] != "comment"]
    schema["ignore"].append("comment")
    schema_path.write_text(json.dumps(schema, indent=2))
    run_yaml = schema_path.parent / "run.yaml"
    cfg = yaml.safe_load(run_yaml.read_text())
    tiny = yaml.safe_load(TINY.read_text())
    cfg.update({k: v for k, v in tiny.items() if k not in ("run_dir", "data")})
    cfg["run_dir"] = str(tmp_path / "run")
    cfg["loadtest"]["candidates"] = 32
    cfg["teacher"].update({"epochs": 3, "batch_size": 256})
    run_yaml.write_text(yaml.safe_dump(cfg))
    # 3. run
    assert main(["run", "--config", str(run_yaml), "--until", "evaluate"]) == 0
    run = tmp_path / "run"
    data = read_json(run / "manifest.json")["stages"]["data"]["metrics"]
    assert data["row_key"] == "position" and data["train"]["rows"] > 4 * data["test"]["rows"] > 0
    ts = pl.read_csv(log).get_column("ts").sort()
    assert data["train"]["rows"] == int((ts < ts[int(0.8 * len(ts))]).sum())  # the time rule
    test = pl.read_parquet(run / "data" / "test.parquet")
    assert (
        "comment" not in test.columns
        and "ts" not in test.columns
        and test.schema["genres"] == pl.List(pl.Int64)
    )
    soft = pl.read_parquet(run / "soft_labels" / "test.parquet")
    assert sorted(soft.get_column("_row_position").to_list()) == list(range(test.height))
    evaluation = read_json(run / "evaluation.json")
    assert evaluation["models"]["teacher"]["auc"] > 0.65 and "gauc" in evaluation["models"]["mlp_distilled"]
    capsys.readouterr()
    assert main(["run", "--config", str(run_yaml), "--until", "evaluate"]) == 0
    assert capsys.readouterr().out.count("skipped (inputs unchanged)") == stage_names().index("evaluate") + 1
