"""Which model to serve, and whether distillation paid off, from measured numbers.

The choice uses validation quality only: among the served models (the teacher and the variant of
each student the evaluate stage chose on validation; hard-label twins compete like any other
variant) that meet the p99 target at the tested rate with no errors, the one with the highest
validation AUC. Test numbers are reported beside it, never used to choose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STUDENTS = {"mlp": ("mlp_distilled", "mlp_hard"), "gbdt": ("gbdt_distilled", "gbdt_hard")}
NAMES = {"mlp": "embedding-MLP", "gbdt": "LightGBM"}


@dataclass(frozen=True)
class Recommendation:
    model: str | None
    text: str


def _valid_auc(m: Mapping[str, Any]) -> float:
    v = m.get("valid", {}).get("auc")
    return float(v) if v is not None else math.nan


def recommend(evaluation: Mapping[str, Any], loadtest: Mapping[str, Any] | None) -> Recommendation:
    """The served model with the best validation AUC that meets the p99 target with no errors."""
    if not loadtest:
        return Recommendation(None, "No load test was run, so no model can be recommended for serving.")
    target = float(loadtest["target_p99_ms"])
    rate = float(loadtest["rate"])
    served = loadtest["models"]
    passing: list[tuple[float, str, Mapping[str, Any]]] = []
    failing: list[str] = []
    for name, m in evaluation["models"].items():
        if not m.get("served_as") or m["served_as"] not in served:
            continue
        lt = served[m["served_as"]]
        ok = lt["p99_ms"] <= target and lt["errors"] == 0 and lt["achieved_rps"] >= 0.95 * rate
        if ok:
            score = _valid_auc(m)
            passing.append((score if score == score else -math.inf, name, lt))
        else:
            failing.append(
                f"{name} (p99 {lt['p99_ms']:.2f} ms, {lt['achieved_rps']:.0f} req/s, {lt['errors']} errors)"
            )
    if not passing:
        why = "; ".join(failing) if failing else "no model was served"
        return Recommendation(
            None, f"No model meets the p99 target of {target:g} ms at {rate:g} req/s: {why}."
        )
    _, name, lt = max(passing)
    m = evaluation["models"][name]
    teacher = evaluation["models"].get("teacher", {})
    kept = m.get("auc_lift_kept")
    parts = [
        f"**Serve `{name}`**: the highest validation AUC ({_valid_auc(m):.4f}) among the served models "
        f"that meet the p99 target of {target:g} ms at {rate:g} req/s.",
        f"Test AUC {m['auc']:.4f}"
        + (f" ({kept:.1%} of the teacher's AUC lift over 0.5)" if kept is not None else "")
        + ",",
        f"served p99 {lt['p99_ms']:.2f} ms at {lt['achieved_rps']:.0f} req/s with {lt['errors']} errors",
    ]
    if name != "teacher" and teacher.get("params") and m.get("params"):
        parts[-1] += ","
        parts.append(f"{teacher['params'] / max(m['params'], 1):.0f}x fewer parameters than the teacher.")
    else:
        parts[-1] += "."
    return Recommendation(name, " ".join(parts))


def _served_variant(evaluation: Mapping[str, Any], family: str) -> str | None:
    sel = evaluation.get("selection", {}).get(family)
    return str(sel["served"]) if sel else None


def distillation_verdicts(evaluation: Mapping[str, Any]) -> list[str]:
    """One sentence per student: did the distilled variant beat its hard-label twin on validation?

    When it did not, the measured reason: the teacher's validation AUC below the twin's (nothing
    to distil), or above it (the teacher knows more, the student did not take it up).
    """
    models = evaluation["models"]
    teacher = models.get("teacher")
    out = []
    for family, (distilled, hard) in STUDENTS.items():
        if distilled not in models or hard not in models:
            continue
        d, h = models[distilled], models[hard]
        dv, hv = _valid_auc(d), _valid_auc(h)
        numbers = f"validation AUC {dv:.4f} vs {hv:.4f}, test AUC {d['auc']:.4f} vs {h['auc']:.4f}"
        if dv > hv:
            out.append(f"Distillation paid off for the {NAMES[family]} student: `{distilled}` beats its hard-label "
                       f"twin `{hard}` ({numbers}).")  # fmt: skip
            continue
        reason = ""
        if teacher is not None:
            tv = _valid_auc(teacher)
            if tv <= hv:
                reason = (f" The teacher itself is no better than the twin on validation (AUC {tv:.4f} vs "
                          f"{hv:.4f}): there is nothing for the student to learn from it.")  # fmt: skip
            else:
                reason = (f" The teacher is better on validation (AUC {tv:.4f} vs the twin's {hv:.4f}), but the "
                          "student did not take that up.")  # fmt: skip
        chosen = _served_variant(evaluation, family)
        served = f"; `{chosen}` is served as `{family}`" if chosen else ""
        out.append(f"Distillation did not pay off for the {NAMES[family]} student: `{distilled}` does not beat "
                   f"its hard-label twin `{hard}` ({numbers}){served}.{reason}")  # fmt: skip
    return out
