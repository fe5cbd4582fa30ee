"""Search section: the distillation settings tried per student, chosen on the validation split.

Each list is one axis of a grid; an empty list keeps the value of the ``distill`` (MLP) or
``gbdt`` section. Every grid point trains one distilled student; the one with the best validation
AUC becomes ``mlp_distilled`` / ``gbdt_distilled`` (its settings and every point's validation
scores go into ``search.json`` beside it and into the report). The hard-label twin is not a grid
point: it is always trained, and the ``evaluate`` stage serves whichever variant validates best.
The test split is never read here. The default is small (two MLP points, three GBDT points):
on MovieLens-100k the settings that validated best differed by scenario and soft-label method
(``docs/experiments/real_data.md``), and no single setting was best everywhere. Empty lists
(``search: {mlp: {alpha: []}}``) turn an axis off. Example YAML::

    search:
      mlp: {alpha: [0.0, 0.5], listwise: [0.0, 1.0]}
      gbdt: {alpha: [0.3, 0.7]}
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

T = TypeVar("T")


def _check(name: str, values: tuple[float, ...], lo: float, hi: float | None) -> None:
    for v in values:
        if not (math.isfinite(v) and v >= lo and (hi is None or v <= hi)):
            bound = f"[{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
            raise ValueError(f"{name}: every value must be in {bound}, got {v}")


@dataclass(frozen=True)
class MlpSearchConfig:
    """Axes for the distilled MLP: ``alpha`` (hard-label weight), ``temperature`` (soft BCE),
    ``logit_mse`` and ``listwise`` (term weights); see :class:`~recdistill.config.distill.DistillLossConfig`."""

    alpha: tuple[float, ...] = (0.0, 0.5)
    temperature: tuple[float, ...] = ()
    logit_mse: tuple[float, ...] = ()
    listwise: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check("search.mlp.alpha", self.alpha, 0.0, 1.0)
        _check("search.mlp.logit_mse", self.logit_mse, 0.0, None)
        _check("search.mlp.listwise", self.listwise, 0.0, None)
        _check("search.mlp.temperature", self.temperature, 1e-6, None)


@dataclass(frozen=True)
class GbdtSearchConfig:
    """Axes for the distilled GBDT: ``alpha`` (weight of the click in the label)."""

    alpha: tuple[float, ...] = (0.1, 0.3, 0.5)

    def __post_init__(self) -> None:
        _check("search.gbdt.alpha", self.alpha, 0.0, 1.0)


@dataclass(frozen=True)
class SearchConfig:
    mlp: MlpSearchConfig = field(default_factory=MlpSearchConfig)
    gbdt: GbdtSearchConfig = field(default_factory=GbdtSearchConfig)


def grid(base: T, axes: Any) -> list[tuple[dict[str, float], T]]:
    """Every grid point: ``(the settings it changes, base with them)``; one point (``{}``) when no
    axis is set. Axes that hold only the base value add nothing."""
    names = [f.name for f in fields(axes) if getattr(axes, f.name)]
    values = [getattr(axes, n) for n in names]
    points = []
    for combo in itertools.product(*values) if names else [()]:
        changes = dict(zip(names, combo, strict=True))
        points.append((changes, replace(base, **changes)))  # type: ignore[type-var]
    return points
