from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np

from recdistill.report.charts import pareto_front
from recdistill.report.render import recommend, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _evaluation() -> dict[str, Any]:
    table = [
        {
            "bin_lo": i / 10,
            "bin_hi": (i + 1) / 10,
            "count": 10,
            "mean_pred": i / 10 + 0.05,
            "frac_pos": i / 10,
        }
        for i in range(3)
    ]
    return {
        "bayes_auc": 0.80,
        "models": {
            "teacher": {
                "role": "teacher",
                "served_as": "teacher",
                "auc": 0.79,
                "params": 30_000_000,
                "bytes": 120_000_000,
                "reliability": table,
            },
            "mlp_distilled": {
                "role": "student",
                "served_as": "mlp",
                "auc": 0.785,
                "auc_lift_kept": 0.98,
                "params": 400_000,
                "bytes": 1_600_000,
                "reliability": table,
            },
            "gbdt_distilled": {
                "role": "student",
                "served_as": "gbdt",
                "auc": 0.78,
                "params": 20_000,
                "bytes": 300_000,
            },
            "mlp_hard": {"role": "baseline", "auc": 0.77, "params": 400_000, "bytes": 1_600_000},
        },
    }


def _loadtest(mlp_p99: float = 1.5, gbdt_errors: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "rate": 200,
        "candidates": 128,
        "target_p99_ms": 10.0,
        "models": {
            "teacher": {
                "p50_ms": 20.0,
                "p99_ms": 45.0,
                "p999_ms": 60.0,
                "achieved_rps": 120.0,
                "errors": 0,
                "latencies_ms": list(rng.gamma(4, 5, 200)),
            },
            "mlp": {
                "p50_ms": 0.9,
                "p99_ms": mlp_p99,
                "p999_ms": 2.0,
                "achieved_rps": 199.0,
                "errors": 0,
                "latencies_ms": list(rng.gamma(4, 0.25, 200)),
            },
            "gbdt": {
                "p50_ms": 1.1,
                "p99_ms": 2.0,
                "p999_ms": 3.0,
                "achieved_rps": 200.0,
                "errors": gbdt_errors,
            },
        },
    }


def test_recommendation_picks_best_passing_student() -> None:
    rec = recommend(_evaluation(), _loadtest())
    assert rec.model == "mlp_distilled"
    assert "98.0% of the teacher's AUC lift" in rec.text and "75x fewer parameters" in rec.text
    # the MLP misses the target -> the GBDT is the best passing student
    assert recommend(_evaluation(), _loadtest(mlp_p99=12.0)).model == "gbdt_distilled"
    # errors disqualify too; then nothing passes and the report says so plainly
    rec = recommend(_evaluation(), _loadtest(mlp_p99=12.0, gbdt_errors=3))
    assert rec.model is None and rec.text.startswith("No student meets the p99 target of 10 ms")
    assert recommend(_evaluation(), None).model is None


def test_pareto_front() -> None:
    pts = [("a", 1.0, 0.7), ("b", 2.0, 0.8), ("c", 3.0, 0.75), ("d", 0.5, 0.6)]
    assert sorted(pareto_front(pts)) == ["a", "b", "d"]


def test_report_files_and_images_are_valid(tmp_path: Path) -> None:
    md, page = write_report(
        tmp_path, evaluation=_evaluation(), loadtest=_loadtest(), title="run x", machine="test box"
    )
    text = md.read_text()
    assert "| mlp_distilled | 0.7850 | 98.0%" in text
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(refs) == 4
    for ref in refs:
        p = tmp_path / ref
        assert p.read_bytes()[:8] == PNG_MAGIC
        assert mpimg.imread(p).shape[0] > 100  # decodes as an image
    doc = page.read_text()
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', doc)
    assert len(uris) == 4
    for u in uris:
        assert base64.b64decode(u)[:8] == PNG_MAGIC
    assert "<strong>Serve <code>mlp_distilled</code></strong>" in doc
