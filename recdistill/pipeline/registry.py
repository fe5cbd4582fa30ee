"""Every stage of ``recdistill run``, in order."""

from __future__ import annotations

from recdistill.pipeline.stages import DATA_STAGES, Stage
from recdistill.pipeline.stages_models import MODEL_STAGES
from recdistill.pipeline.stages_serving import SERVING_STAGES

STAGES: tuple[Stage, ...] = (*DATA_STAGES, *MODEL_STAGES, *SERVING_STAGES)


def stage_names() -> list[str]:
    return [s.name for s in STAGES]
