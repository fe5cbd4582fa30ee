"""The models a run trains, their roles in the report, and the name each one is served under.

Every trained model gets a version folder ``export/<model>/`` (written by the ``export`` stage);
evaluation loads those folders in process and the serving layer copies the served ones into a
Triton model repository, so the report's numbers are those of the artefacts that are served.
"""

from __future__ import annotations

from pathlib import Path

from recdistill.errors import ArtefactError
from recdistill.evaluate.candidates import Role
from recdistill.pipeline.context import RunContext
from recdistill.predictors.registry import PREDICTOR_FILE

# model in the run -> (role, served name or None)
# (``mlp_distilled`` is served as ``mlp`` only when no transfer-set variant was trained)
MODELS: dict[str, tuple[Role, str | None]] = {
    "teacher": ("teacher", "teacher"),
    "mlp_distilled_transfer": ("student", "mlp"),
    "mlp_distilled": ("student", "mlp"),
    "gbdt_distilled": ("student", "gbdt"),
    "mlp_hard": ("baseline", None),
    "gbdt_hard": ("baseline", None),
}


def version_dirs(ctx: RunContext) -> dict[str, Path]:
    """Exported version folders of the models this run trained (those that exist), in ``MODELS`` order."""
    teacher = ctx.version_dir("teacher")
    if not (teacher / PREDICTOR_FILE).exists():
        raise ArtefactError(f"{teacher}: the teacher's exported version is missing; rerun with --from export")
    dirs = {n: ctx.version_dir(n) for n in MODELS}
    return {n: d for n, d in dirs.items() if (d / PREDICTOR_FILE).exists()}


def served_names(names: list[str]) -> dict[str, str | None]:
    """Run model -> served name; each served name goes to the first model that claims it."""
    taken: set[str] = set()
    out: dict[str, str | None] = {}
    for n in names:
        served = MODELS[n][1]
        out[n] = served if served is not None and served not in taken else None
        if served is not None:
            taken.add(served)
    return out
