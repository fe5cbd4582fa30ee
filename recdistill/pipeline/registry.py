"""Every stage of ``recdistill run``, in order: recdistill's own, with the plugins' stages inserted."""

from __future__ import annotations

from functools import cache

from recdistill.errors import ConfigError
from recdistill.pipeline.plugins import plugins
from recdistill.pipeline.stages import DATA_STAGES, Stage
from recdistill.pipeline.stages_export import EXPORT_STAGES
from recdistill.pipeline.stages_models import MODEL_STAGES

CORE_STAGES: tuple[Stage, ...] = (*DATA_STAGES, *MODEL_STAGES, *EXPORT_STAGES)


@cache
def all_stages() -> tuple[Stage, ...]:
    """The core stages plus each installed plugin's, placed before the stage it names."""
    stages = list(CORE_STAGES)
    for plugin in plugins():
        names = [s.name for s in stages]
        clash = sorted({s.name for s in plugin.stages} & set(names))
        if clash:
            raise ConfigError(f"plugin {plugin.name!r}: stage names {clash} are taken")
        if plugin.before is None:
            at = len(stages)
        elif plugin.before in names:
            at = names.index(plugin.before)
        else:
            raise ConfigError(f"plugin {plugin.name!r}: no stage {plugin.before!r} to insert before")
        stages[at:at] = plugin.stages
    return tuple(stages)


def stage_names() -> list[str]:
    return [s.name for s in all_stages()]


def find_stage(name: str) -> Stage:
    for s in all_stages():
        if s.name == name:
            return s
    raise ConfigError(f"{name!r} is not a stage; stages are {', '.join(stage_names())}")
