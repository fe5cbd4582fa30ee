"""Student section: the embedding-MLP student's architecture and training loop.

The student sees only serving-time features (no ``teacher_only`` ones). Its size is set by
``embedding_dim`` and ``max_rows_per_table``: a table whose preprocessed vocabulary has more
rows is folded (hashed) into that many rows, so a 50k-item vocabulary costs at most
``max_rows_per_table * embedding_dim`` parameters. Example YAML::

    student_mlp:
      embedding_dim: 8
      hidden: [64, 32]
      max_rows_per_table: 5000
      dot_interaction: true
      history_match: true
      epochs: 12

The defaults are the ones measured best on the privileged-features benchmark (see
``docs/experiments/students.md``): explicit interactions lifted the hard-label student from
0.789 to 0.805 test AUC, 5k-row item tables cost nothing against 20k, and a distilled student
keeps improving for ~6-10 epochs where the hard-label twin peaks after the first.

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
    through ``hidden`` (1-3 ReLU layers, ``dropout`` after each) and one linear logit.
    Interactions beside the embeddings (see :class:`recdistill.models.student_mlp.StudentMLP`):
    ``dot_interaction`` (dot products of every pair of feature vectors), ``history_match``
    (``log1p`` of list lengths and of how often the candidate's id occurs in a list sharing its
    table) and ``id_bias`` (one scalar per id of every categorical feature, tables folded only
    above ``max_bias_rows_per_table``).

    Optimisation: Adam at ``lr`` (embedding and bias tables at ``embedding_lr``, ``None``: ``lr``),
    multiplied by ``lr_decay`` after every epoch, with ``weight_decay``, ``batch_size`` rows per step (whole
    requests when a listwise loss is on). Training stops after ``patience`` epochs without a
    validation AUC gain of at least ``min_delta``; the best epoch is kept.

    Transfer set: with ``use_transfer`` and a ``kd`` loss, teacher-scored unlabelled rows join
    the training rows (they feed the soft terms only). The hard-label twin never uses them.
    """

    # architecture
    embedding_dim: int = 8
    hidden: tuple[int, ...] = (64, 32)
    max_rows_per_table: int | None = 5_000
    pooling: Pooling = "mean"
    dot_interaction: bool = True
    history_match: bool = True
    id_bias: bool = False
    max_bias_rows_per_table: int | None = 50_000
    dropout: float = 0.0
    # optimisation
    epochs: int = 12
    batch_size: int = 2048
    eval_batch_size: int = 16_384
    lr: float = 3e-3
    lr_decay: float = 1.0
    embedding_lr: float | None = None
    weight_decay: float = 0.0
    patience: int = 3
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
        if self.max_bias_rows_per_table is not None and self.max_bias_rows_per_table < 3:
            raise ValueError(
                f"max_bias_rows_per_table must be >= 3 or null, got {self.max_bias_rows_per_table}"
            )
        if not (math.isfinite(self.dropout) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.embedding_lr is not None and not (math.isfinite(self.embedding_lr) and self.embedding_lr > 0):
            raise ValueError(
                f"embedding_lr must be a finite number > 0 or null (= lr), got {self.embedding_lr}"
            )
        if not (math.isfinite(self.lr_decay) and 0.0 < self.lr_decay <= 1.0):
            raise ValueError(
                f"lr_decay (the lr factor applied after every epoch) must be in (0, 1], got {self.lr_decay}"
            )
        for name in ("weight_decay", "min_delta"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
