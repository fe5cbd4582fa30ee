"""How the serving layer plugs into recdistill: its stages and verbs, declared as an entry point.

``pyproject.toml``::

    [project.entry-points."recdistill.plugins"]
    serving = "serving.plugin:plugin"

(see :mod:`recdistill.pipeline.plugins`).
"""

from __future__ import annotations

from recdistill.pipeline.plugins import Plugin


def plugin() -> Plugin:
    from serving.stages import SERVING_STAGES

    return Plugin(
        name="serving",
        stages=SERVING_STAGES,
        before="report",
        commands=("serving.commands.serve", "serving.commands.loadtest"),
    )
