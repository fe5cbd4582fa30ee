"""``recdistill evaluate``: every exported model of a run, loaded in process, on the test split."""

from __future__ import annotations

from typing import Any

from recdistill.commands.stage_verb import register_stage_verb


def register(sub: Any) -> None:
    register_stage_verb(
        sub,
        "evaluate",
        help="compare teacher, students and baselines on the test split (evaluation.json, evaluation.md)",
        description="Load every version folder under runs/<name>/export/ as a server would and score the test "
        "split: AUC, logloss, GAUC, NDCG@k, ECE, fidelity to the teacher, parameters and bytes.",
    )
