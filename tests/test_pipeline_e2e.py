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
