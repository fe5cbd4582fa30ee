"""The models a run trains, their roles in the report, and the name each one is served under.

Every trained model gets a version folder ``export/<model>/`` (written by the ``export`` stage);
evaluation loads those folders in process and the serving layer copies the served ones into a
Triton model repository, so the report's numbers are those of the artefacts that are served.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from recdistill.errors import ArtefactError
from recdistill.evaluate.candidates import Role
from recdistill.io_utils import read_json
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.manifest import MANIFEST_FILE
from recdistill.predictors.registry import PREDICTOR_FILE

# model in the run -> (role in the report, the served name it competes for)
MODELS: dict[str, tuple[Role, str]] = {
    "teacher": ("teacher", "teacher"),
    "mlp_distilled_transfer": ("student", "mlp"),
    "mlp_distilled": ("student", "mlp"),
    "mlp_online": ("student", "mlp"),
    "mlp_self": ("student", "mlp"),
    "mlp_hard": ("baseline", "mlp"),
    "gbdt_distilled": ("student", "gbdt"),
    "gbdt_hard": ("baseline", "gbdt"),
}
SELECTION_RULE = "the highest validation AUC among the variants of that student (the test split only reports)"


def version_dirs(ctx: RunContext) -> dict[str, Path]:
    """Exported version folders of the models this run trained (those that exist), in ``MODELS`` order."""
    teacher = ctx.version_dir("teacher")
    if not (teacher / PREDICTOR_FILE).exists():
        raise ArtefactError(f"{teacher}: the teacher's exported version is missing; rerun with --from export")
    dirs = {n: ctx.version_dir(n) for n in MODELS}
    return {n: d for n, d in dirs.items() if (d / PREDICTOR_FILE).exists()}


def choose_served(result: dict[str, Any]) -> None:
    """Give each served name (``mlp``, ``gbdt``) to the variant with the best validation AUC.

    ``result`` is an evaluation (``models.<name>.valid.auc``); fills ``models.<name>.served_as``
    and ``selection.<served>`` (every variant's validation AUC, the choice, the rule). A tie goes
    to the variant listed first in :data:`MODELS` (distilled before the hard twin).
    """
    models = result["models"]
    selection: dict[str, Any] = {}
    for served in dict.fromkeys(family for _, family in MODELS.values()):
        members = [n for n in MODELS if n in models and MODELS[n][1] == served]
        if not members:
            continue
        valid = {n: float(models[n].get("valid", {}).get("auc", float("nan"))) for n in members}
        best = max(
            members, key=lambda n: (valid[n] if valid[n] == valid[n] else -math.inf, -members.index(n))
        )
        for n in members:
            models[n]["served_as"] = served if n == best else None
        selection[served] = {"served": best, "valid_auc": valid, "rule": SELECTION_RULE}
    result["selection"] = selection


def served_models(evaluation: dict[str, Any]) -> dict[str, str]:
    """Served name -> run model, from an evaluation that :func:`choose_served` filled in."""
    return {m["served_as"]: n for n, m in evaluation["models"].items() if m.get("served_as")}


# models whose training needs the teacher's soft labels: the teacher, its fold teachers and the scoring count
_FROM_SOFT_LABELS = ("mlp_distilled", "mlp_distilled_transfer", "gbdt_distilled")


def train_seconds(ctx: RunContext) -> dict[str, float]:
    """Wall seconds it took to get each model of the run, from the stage records of ``manifest.json``.

    * teacher: the ``train-teacher`` stage (online: its share of the joint loop);
    * distilled offline (``mlp_distilled``, ``_transfer``, ``gbdt_distilled``): the teacher, the fold
      teachers (``cross-fit``), the scoring, its own training and the search grid that chose its
      settings, if any;
    * ``mlp_online``: the whole ``train-teacher`` stage (the joint loop, the rescoring, the
      remaining epochs);
    * ``mlp_self``: every born-again generation and the scoring between them;
    * hard twins: their own training.

    Models without a recorded time (a run of an older recdistill) are left out.
    """
    path = ctx.run_dir / MANIFEST_FILE
    stages: dict[str, Any] = read_json(path).get("stages", {}) if path.exists() else {}

    def seconds(stage: str) -> float:
        return float(stages.get(stage, {}).get("seconds", 0.0))

    teacher = stages.get("train-teacher", {})
    metrics = teacher.get("metrics", {})
    out: dict[str, float] = {}
    if teacher:
        out["teacher"] = float(metrics.get("teacher_seconds", seconds("train-teacher")))
    if "mlp_online" in metrics:
        out["mlp_online"] = seconds("train-teacher")
    upstream = seconds("train-teacher") + seconds("cross-fit") + seconds("score")
    for stage, family in (("distill-mlp", "mlp"), ("distill-gbdt", "gbdt")):
        m = stages.get(stage, {}).get("metrics", {})
        search = float(m.get("search_seconds", 0.0))
        for name, rec in m.items():
            if name not in MODELS or not isinstance(rec, dict) or "seconds" not in rec:
                continue
            own = float(rec["seconds"])
            if name in _FROM_SOFT_LABELS:
                own += upstream + (
                    search if family == "mlp" else 0.0
                )  # the GBDT's own seconds hold its search
            out[name] = round(own, 2)
    return out
