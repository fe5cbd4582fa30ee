"""The one seam through which other packages extend recdistill: stages and command-line verbs.

A plugin is a :class:`Plugin` returned by a function named in the ``recdistill.plugins`` entry
point group of an installed distribution (this repository's ``pyproject.toml`` declares the
Triton layer this way)::

    [project.entry-points."recdistill.plugins"]
    serving = "serving.plugin:plugin"

recdistill never imports a plugin by name: it asks ``importlib.metadata`` which are installed, so
imports run one way (the plugin imports recdistill, never the reverse) and nothing registers
itself by import side effect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points

from recdistill.errors import ConfigError
from recdistill.pipeline.stages import Stage

ENTRY_POINT_GROUP = "recdistill.plugins"


@dataclass(frozen=True)
class Plugin:
    """Stages (run before the stage named ``before``, or last) and verbs (modules with ``register``)."""

    name: str
    stages: tuple[Stage, ...] = ()
    before: str | None = None
    commands: tuple[str, ...] = ()  # importable modules, each with register(subparsers)


@cache
def plugins() -> tuple[Plugin, ...]:
    """The installed plugins, sorted by entry-point name."""
    out = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        factory: Callable[[], object] = ep.load()
        plugin = factory()
        if not isinstance(plugin, Plugin):
            raise ConfigError(
                f"entry point {ep.name!r} ({ep.value}) in group {ENTRY_POINT_GROUP!r} returned "
                f"{type(plugin).__name__}, not a recdistill Plugin"
            )
        out.append(plugin)
    return tuple(out)
