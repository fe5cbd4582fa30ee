"""``recdistill report``: report.md and report.html of a run, with the recommendation."""

from __future__ import annotations

from typing import Any

from recdistill.commands.stage_verb import register_stage_verb


def register(sub: Any) -> None:
    register_stage_verb(
        sub,
        "report",
        help="write report.md and report.html (quality, latency, sizes, recommendation)",
        description="Render the run's evaluation and (when the load test ran) latency results into report.md "
        "and a self-contained report.html, and write recommendation.json.",
    )
