from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np

from recdistill.report.charts import pareto_front
from recdistill.report.recommendation import distillation_verdicts, recommend
from recdistill.report.render import write_report

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
                "valid": {"auc": 0.80},
                "auc": 0.79,
                "params": 30_000_000,
                "bytes": 120_000_000,
                "reliability": table,
            },
            "mlp_distilled": {
                "role": "student",
                "served_as": "mlp",
                "valid": {"auc": 0.79},
                "auc": 0.785,
                "auc_lift_kept": 0.98,
                "params": 400_000,
                "bytes": 1_600_000,
                "reliability": table,
            },
            "gbdt_distilled": {
                "role": "student",
                "served_as": "gbdt",
                "valid": {"auc": 0.775},
                "auc": 0.78,
                "params": 20_000,
                "bytes": 300_000,
            },
            "mlp_hard": {
                "role": "baseline",
                "served_as": None,
                "valid": {"auc": 0.77},
                "auc": 0.77,
                "params": 400_000,
                "bytes": 1_600_000,
            },
            "gbdt_hard": {"role": "baseline", "served_as": None, "valid": {"auc": 0.776}, "auc": 0.779},
        },
        "selection": {"mlp": {"served": "mlp_distilled"}, "gbdt": {"served": "gbdt_distilled"}},
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


def test_recommendation_picks_the_best_validation_auc_that_meets_the_target() -> None:
    rec = recommend(_evaluation(), _loadtest())
    assert rec.model == "mlp_distilled"  # the teacher (valid 0.80) misses the p99 target
    assert "validation AUC (0.7900)" in rec.text and "Test AUC 0.7850" in rec.text
    assert "98.0% of the teacher's AUC lift" in rec.text and "75x fewer parameters" in rec.text
    # the MLP misses the target -> the GBDT is the best passing model
    assert recommend(_evaluation(), _loadtest(mlp_p99=12.0)).model == "gbdt_distilled"
    # errors disqualify too; then nothing passes and the report says so plainly
    rec = recommend(_evaluation(), _loadtest(mlp_p99=12.0, gbdt_errors=3))
    assert rec.model is None and rec.text.startswith("No model meets the p99 target of 10 ms")
    assert recommend(_evaluation(), None).model is None


def test_the_choice_never_reads_the_test_split() -> None:
    ev = _evaluation()
    ev["models"]["gbdt_distilled"]["auc"] = 0.99  # best on test, worse on validation: not chosen
    assert recommend(ev, _loadtest()).model == "mlp_distilled"
    ev["models"]["gbdt_distilled"]["valid"] = {"auc": 0.795}
    assert recommend(ev, _loadtest()).model == "gbdt_distilled"


def test_distillation_verdicts_say_whether_it_paid_off_and_why_not() -> None:
    ev = _evaluation()
    mlp, gbdt = distillation_verdicts(ev)
    assert mlp.startswith("Distillation paid off for the embedding-MLP student")
    assert "validation AUC 0.7900 vs 0.7700, test AUC 0.7850 vs 0.7700" in mlp
    assert gbdt.startswith("Distillation did not pay off for the LightGBM student")
    assert "The teacher is better on validation (AUC 0.8000 vs the twin's 0.7760)" in gbdt
    ev["models"]["teacher"]["valid"] = {"auc": 0.770}
    ev["selection"]["gbdt"]["served"] = "gbdt_hard"
    gbdt = distillation_verdicts(ev)[1]
    assert "no better than the twin on validation (AUC 0.7700 vs 0.7760)" in gbdt
    assert "`gbdt_hard` is served as `gbdt`" in gbdt


def test_pareto_front() -> None:
    pts = [("a", 1.0, 0.7), ("b", 2.0, 0.8), ("c", 3.0, 0.75), ("d", 0.5, 0.6)]
    assert sorted(pareto_front(pts)) == ["a", "b", "d"]


def test_report_files_and_images_are_valid(tmp_path: Path) -> None:
    md, page = write_report(
        tmp_path, evaluation=_evaluation(), loadtest=_loadtest(), title="run x", machine="test box"
    )
    text = md.read_text()
    assert "| mlp_distilled | mlp | 0.7900 | 0.7850 | 98.0%" in text
    assert "Did distillation pay off?" in text
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
