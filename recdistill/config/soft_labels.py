"""Soft-label section: how the teacher's scores for the training rows are made.

A teacher's scores on the rows it was trained on are partly memorised: the closer it fits the
clicks of its own training rows, the less its soft labels say beyond those clicks. Cross-fitting
(``out_of_fold``) trains ``folds`` extra teachers, each on the training rows outside one fold, and
scores every training row with the teacher that never saw it; rows of one user (or request) share
a fold, so nothing a row's group did leaks into its score. Validation, test and transfer rows are
never trained on; ``heldout`` says who scores them: the full teacher (``full``, the teacher the
report compares with) or the mean logit of the fold teachers (``fold_mean``).

The default, ``auto``, decides once the teacher has trained: it cross-fits when the teacher
memorised its training rows (:func:`recdistill.teacher.memorisation.memorisation` above
``memorisation_threshold``), which happens when validation keeps a later epoch than the first, and
scores in sample otherwise (one pass over the data: nothing to memorise, no fold teachers to pay
for). Folds by ``row`` by default: on MovieLens-100k, holding out whole users (or user-days) left
each fold teacher without the held-out users' embeddings and validated worse than rows
(``docs/experiments/real_data.md``). Example YAML::

    soft_labels:
      method: out_of_fold
      folds: 5
      group_by: user
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SoftLabelMethod = Literal["auto", "in_sample", "out_of_fold"]
METHODS: tuple[str, ...] = ("auto", "in_sample", "out_of_fold")


@dataclass(frozen=True)
class SoftLabelConfig:
    """``method``: ``in_sample`` (the full teacher scores every row), ``out_of_fold``, or ``auto``
    (``out_of_fold`` when the trained teacher's memorisation exceeds ``memorisation_threshold``).

    ``folds`` (>= 2) teachers for ``out_of_fold``, rows assigned to folds by a fixed hash of their
    ``group_by`` id (``user``, ``request`` or ``row``; a schema without that column falls back to
    ``request``, then ``row``), seeded by ``seed``. ``heldout``: who scores the rows no teacher
    trained on (``full`` or ``fold_mean``). The fold teachers use the ``teacher`` section's settings.
    """

    method: SoftLabelMethod = "auto"
    folds: int = 5
    group_by: Literal["user", "request", "row"] = "row"
    heldout: Literal["full", "fold_mean"] = "full"
    seed: int = 0
    memorisation_threshold: float = 0.05

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.folds < 2:
            raise ValueError(
                f"folds must be >= 2 (each fold teacher trains on the other folds), got {self.folds}"
            )
        if self.group_by not in ("user", "request", "row"):
            raise ValueError(f"group_by must be user, request or row, got {self.group_by!r}")
        if not self.memorisation_threshold >= 0.0:
            raise ValueError(f"memorisation_threshold must be >= 0, got {self.memorisation_threshold}")
        if self.heldout not in ("full", "fold_mean"):
            raise ValueError(f"heldout must be full or fold_mean, got {self.heldout!r}")
