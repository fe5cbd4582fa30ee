"""Teacher section: the heavy TorchRec ranker's architecture, optimisers and training loop.

Sizes are per ensemble member. The default is four members with 64-dimensional embeddings
(about 2.5 million parameters on MovieLens-100k, most of them embedding rows, so the count grows
with the vocabularies), trained until validation AUC stops improving. Example YAML::

    teacher:
      embedding_dim: 64
      deep_dims: [512, 256]
      ensemble_size: 1
      batch_size: 1024
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SparseOptimizer = Literal["rowwise_adagrad", "adagrad", "adam", "sgd"]
Schedule = Literal["constant", "cosine", "linear"]
Monitor = Literal["logloss", "auc"]
Sharding = Literal["auto", "table_wise", "row_wise", "column_wise", "data_parallel"]


@dataclass(frozen=True)
class TeacherConfig:
    """Architecture (per member), optimisation and training-loop settings of the teacher.

    Architecture: every id and multi-valued feature gets a pooled ``embedding_dim`` vector from a
    TorchRec ``EmbeddingBagCollection``; one tower per feature group (user/item/context) maps its
    embeddings and dense columns through ``tower_dims``; a DCN-v2 cross network
    (``cross_layers`` layers, rank ``cross_low_rank``, 0 = full rank) and a deep MLP
    (``deep_dims``) read all features; the over-arch (``over_dims``) maps their concatenation,
    plus the dot products between tower embeddings, to one click logit.

    Ensemble: ``ensemble_size`` members with seeds ``seed + k``; ``ensemble_width_scales`` (empty or
    one factor per member) scales member k's tower, deep and over-arch widths. Logits are averaged.

    Optimisation: ``batch_size`` is the global batch (split evenly across ranks). Embeddings use
    a fused sparse optimiser (``sparse_optimizer`` at ``lr_sparse``), dense layers Adam(W) at
    ``lr_dense`` (``weight_decay`` applies to dense layers only: FBGEMM's CPU kernels ignore a
    sparse weight decay). ``schedule`` scales both rates after ``warmup_steps`` of linear warm-up, down to
    ``min_lr_ratio``. Training stops once more than ``patience`` epochs in a row fail to improve the
    ``monitor``ed validation metric (``logloss``: lower, ``auc``: higher) by ``min_delta``
    (``patience: 0`` stops at the first); the best epoch by that metric is kept.

    Runtime: ``prefetch_batches`` training batches (TorchRec ``Batch`` with the teacher's
    ``KeyedJaggedTensor``) are built ahead on a background thread while a step computes; 0 builds
    each batch when the train pipeline asks for it.

    Defaults, measured (``docs/experiments/real_data.md``): up to 8 epochs at a constant rate,
    stopped on validation AUC with patience 1, the best epoch kept. On MovieLens-100k validation AUC
    peaks at epoch 2 while validation logloss already rises after epoch 1 (the teacher grows
    overconfident before it stops ranking better), so stopping on logloss would keep the worse
    ranker; on the synthetic click logs (128 candidates per request) it peaks at epoch 1 and a
    second pass memorises the training rows (validation AUC 0.83 -> 0.76; the "one-epoch
    phenomenon" of deep CTR models, ``docs/experiments/teacher.md``), and early stopping keeps
    epoch 1. Four 64-dimensional members matched two 256-dimensional ones on both synthetic
    scenarios' validation AUC (0.8308 vs 0.8310, 0.8457 vs 0.8444) and beat them on MovieLens
    (0.6965 vs 0.6950) with half the parameters. Within an epoch, more and smaller steps help
    (batch 256 beat 1024 by 0.003 AUC on 0.5M rows); what closes the gap to the Bayes-optimal AUC
    is more data, not more parameters or members.
    """

    # architecture
    embedding_dim: int = 64
    tower_dims: tuple[int, ...] = (256, 64)
    cross_layers: int = 2
    cross_low_rank: int = 32
    deep_dims: tuple[int, ...] = (256, 128)
    over_dims: tuple[int, ...] = (128,)
    dropout: float = 0.0
    ensemble_size: int = 4
    ensemble_width_scales: tuple[float, ...] = ()
    # optimisation
    batch_size: int = 512
    eval_batch_size: int = 2048
    epochs: int = 8
    lr_dense: float = 2e-3
    lr_sparse: float = 0.05
    sparse_optimizer: SparseOptimizer = "rowwise_adagrad"
    weight_decay: float = 0.0
    schedule: Schedule = "constant"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    patience: int = 1
    min_delta: float = 1e-4
    monitor: Monitor = "auc"
    # runtime
    seed: int = 0
    num_threads: int = 2
    sharding: Sharding = "auto"
    score_chunk_rows: int = 65536
    prefetch_batches: int = 2

    def __post_init__(self) -> None:
        positive = {
            "embedding_dim": self.embedding_dim,
            "ensemble_size": self.ensemble_size,
            "batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size,
            "epochs": self.epochs,
            "num_threads": self.num_threads,
            "score_chunk_rows": self.score_chunk_rows,
        }
        for name, v in positive.items():
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        for name, dims in (("tower_dims", self.tower_dims), ("deep_dims", self.deep_dims)):
            if not dims or any(d < 1 for d in dims):
                raise ValueError(f"{name} must be a non-empty list of positive widths, got {list(dims)}")
        if any(d < 1 for d in self.over_dims):
            raise ValueError(f"over_dims must hold positive widths, got {list(self.over_dims)}")
        if self.cross_layers < 0 or self.cross_low_rank < 0:
            raise ValueError("cross_layers and cross_low_rank must be >= 0 (cross_low_rank 0 = full rank)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.ensemble_width_scales and len(self.ensemble_width_scales) != self.ensemble_size:
            raise ValueError(
                f"ensemble_width_scales has {len(self.ensemble_width_scales)} entries; "
                f"give none or one per member (ensemble_size={self.ensemble_size})"
            )
        if any(s <= 0 for s in self.ensemble_width_scales):
            raise ValueError(
                f"ensemble_width_scales must be positive, got {list(self.ensemble_width_scales)}"
            )
        if self.lr_dense <= 0 or self.lr_sparse <= 0:
            raise ValueError(
                f"learning rates must be > 0, got lr_dense={self.lr_dense}, lr_sparse={self.lr_sparse}"
            )
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.monitor not in ("logloss", "auc"):
            raise ValueError(f"monitor must be logloss or auc, got {self.monitor!r}")
        if self.warmup_steps < 0 or self.patience < 0 or self.weight_decay < 0 or self.prefetch_batches < 0:
            raise ValueError("warmup_steps, patience, weight_decay and prefetch_batches must be >= 0")

    def width_scale(self, member: int) -> float:
        """Width factor of ensemble member ``member`` (1.0 unless ``ensemble_width_scales`` is set)."""
        return self.ensemble_width_scales[member] if self.ensemble_width_scales else 1.0
