"""Student section: the embedding-MLP student's architecture and training loop.

The student sees only serving-time features (no ``teacher_only`` ones). Its size is set by
``embedding_dim`` and ``max_rows_per_table``: a table whose preprocessed vocabulary has more
rows is folded (hashed) into that many rows, so a 50k-item vocabulary costs at most
``max_rows_per_table * embedding_dim`` parameters. Example YAML::

    student_mlp:
      embedding_dim: 8
      hidden: [64, 32]
      max_rows_per_table: 20000
      epochs: 5

The distillation objective is the separate ``distill`` section
(:class:`recdistill.config.distill.DistillLossConfig`); the hard-label twin is the same config
with ``distill.kind: hard``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Pooling = Literal["mean", "sum"]


@dataclass(frozen=True)
class MlpStudentConfig:
    """Architecture, optimisation and training-loop settings of the embedding-MLP student.

    Architecture: one ``embedding_dim`` vector per categorical feature and one pooled
    (``pooling`` over the non-padding slots) per multi-valued feature; features that share a
    vocabulary (``vocab_from``) share a table. Tables with more than ``max_rows_per_table`` rows
    are folded (``None``: never). The concatenation with the student's dense columns goes
    through ``hidden`` (1-3 ReLU layers) and one linear logit.

    Optimisation: Adam at ``lr`` with ``weight_decay``, ``batch_size`` rows per step (whole
    requests when a listwise loss is on). Training stops after ``patience`` epochs without a
    validation AUC gain of at least ``min_delta``; the best epoch is kept.

    Transfer set: with ``use_transfer`` and a ``kd`` loss, teacher-scored unlabelled rows join
    the training rows (they feed the soft terms only). The hard-label twin never uses them.
    """

    # architecture
    embedding_dim: int = 8
    hidden: tuple[int, ...] = (64, 32)
    max_rows_per_table: int | None = 20_000
    pooling: Pooling = "mean"
    # optimisation
    epochs: int = 5
    batch_size: int = 2048
    eval_batch_size: int = 16_384
    lr: float = 3e-3
    weight_decay: float = 0.0
    patience: int = 1
    min_delta: float = 1e-4
    # data and runtime
    use_transfer: bool = True
    seed: int = 0
    num_threads: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.embedding_dim <= 64:
            raise ValueError(
                f"embedding_dim must be in [1, 64] (a student is small), got {self.embedding_dim}"
            )
        if not 1 <= len(self.hidden) <= 3 or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must hold 1 to 3 layer widths >= 1, got {list(self.hidden)}")
        if self.max_rows_per_table is not None and self.max_rows_per_table < 3:
            raise ValueError(
                "max_rows_per_table must be >= 3 (rows 0 and 1 are padding and out-of-vocabulary) "
                f"or null for no folding, got {self.max_rows_per_table}"
            )
        if self.pooling not in ("mean", "sum"):
            raise ValueError(f"pooling must be 'mean' or 'sum', got {self.pooling!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "patience", "num_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        for name in ("weight_decay", "min_delta"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
