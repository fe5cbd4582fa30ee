"""GBDT student section: a LightGBM model distilled from the teacher's click probabilities.

The label is ``alpha * y + (1 - alpha) * p_teacher`` (``hard: true`` -> ``y``), trained with
``objective: cross_entropy``, early-stopped on the validation split's hard-label log loss.
Example YAML::

    gbdt:
      alpha: 0.3
      num_leaves: 63
      num_boost_round: 300
      use_transfer: true
      distributed:            # optional: train on a Dask cluster with lightgbm.dask
        engine: dask
        scheduler: local      # or the address of a running scheduler, tcp://host:8786
        workers: 2
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

ENGINES: tuple[str, ...] = ("single_process", "dask")


@dataclass(frozen=True)
class GbdtDistributedConfig:
    """Where the GBDT student trains (``gbdt.distributed``).

    ``engine``: ``single_process`` (LightGBM in this process) or ``dask`` (``lightgbm.dask``: the
    split files are read as Dask partitions of ``partition_rows`` rows, the featurizer is fitted
    once from statistics summed over the partitions, trees train data-parallel on the workers).
    ``scheduler``: ``local`` starts a ``distributed.LocalCluster`` on 127.0.0.1 with ``workers``
    worker processes of ``threads_per_worker`` threads each, for this run only; any other value is
    the address of a running scheduler (``tcp://host:8786``) whose workers can import recdistill
    and read the run's files: training waits at most ``connect_timeout_s`` seconds for it to
    answer and for ``workers`` workers to join, then fails naming the address.
    """

    engine: Literal["single_process", "dask"] = "single_process"
    scheduler: str = "local"
    workers: int = 2
    threads_per_worker: int = 1
    partition_rows: int = 262_144
    connect_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        for name in ("workers", "threads_per_worker", "partition_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.scheduler.strip():
            raise ValueError("scheduler must be 'local' or a scheduler address such as tcp://host:8786")
        if not (math.isfinite(self.connect_timeout_s) and self.connect_timeout_s > 0):
            raise ValueError(f"connect_timeout_s must be > 0, got {self.connect_timeout_s}")


@dataclass(frozen=True)
class GbdtStudentConfig:
    """Label mix, LightGBM budget and the categorical encodings of :class:`GbdtFeaturizer`.

    Label: ``alpha`` in [0, 1] weighs the hard click, ``1 - alpha`` the teacher probability.
    ``use_transfer`` adds the unlabelled transfer rows with label ``p_teacher`` (distilled run only).

    Trees: ``num_leaves``, ``learning_rate``, ``min_data_in_leaf``, ``feature_fraction``,
    ``bagging_fraction`` (1 = off), ``lambda_l2``, ``max_bin``; at most ``num_boost_round`` trees,
    stopping after ``early_stopping_rounds`` rounds without a validation log-loss gain.
    ``num_threads`` trains, ``seed`` fixes every random choice (LightGBM runs ``deterministic``).

    Encodings (fitted on the training rows only): a categorical with at most ``max_cat_levels``
    distinct training ids becomes a LightGBM native categorical; larger ones get frequency plus
    out-of-fold (``oof_folds`` folds by request) target and teacher-score means, smoothed towards
    the prior with ``smoothing`` pseudo-rows. Ids seen fewer than ``min_id_count`` times count as
    unseen (keeps the artefact small). ``history_match`` adds, per multi-valued feature that shares a
    vocabulary with a categorical, "candidate in history" and "history items sharing the
    candidate's <attribute>" counts (attributes found as near-functional dependencies,
    purity >= ``history_match_purity``).

    ``distributed``: :class:`GbdtDistributedConfig` (default: one process). The Dask engine trains
    the same featurizer and the same LightGBM parameters; it has no early stopping of its own
    (``lightgbm.dask`` has none), so it grows ``num_boost_round`` trees and keeps the iteration the
    same rule picks on the validation split (lowest log loss, stopping after
    ``early_stopping_rounds`` rounds without a gain).
    """

    alpha: float = 0.3
    use_transfer: bool = True
    # trees
    num_leaves: int = 63
    learning_rate: float = 0.05
    num_boost_round: int = 300
    early_stopping_rounds: int = 30
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.9
    bagging_fraction: float = 1.0
    lambda_l2: float = 1.0
    max_bin: int = 255
    num_threads: int = 2
    seed: int = 0
    # encodings
    max_cat_levels: int = 64
    oof_folds: int = 5
    smoothing: float = 20.0
    min_id_count: int = 1
    history_match: bool = True
    history_match_purity: float = 0.99
    # where it trains (one process, or a Dask cluster)
    distributed: GbdtDistributedConfig = field(default_factory=GbdtDistributedConfig)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.alpha) and 0.0 <= self.alpha <= 1.0):
            raise ValueError(f"alpha (weight of the hard label) must be in [0, 1], got {self.alpha}")
        for name in ("num_leaves", "max_bin"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)}")
        for name in (
            "num_boost_round",
            "early_stopping_rounds",
            "min_data_in_leaf",
            "num_threads",
            "min_id_count",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.oof_folds < 2:
            raise ValueError(
                f"oof_folds must be >= 2 (out-of-fold encodings need another fold), got {self.oof_folds}"
            )
        if self.max_cat_levels < 0:
            raise ValueError(
                f"max_cat_levels must be >= 0 (0 = no native categoricals), got {self.max_cat_levels}"
            )
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0.0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("feature_fraction", "bagging_fraction"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0.0 < v <= 1.0):
                raise ValueError(f"{name} must be in (0, 1], got {v}")
        if not (math.isfinite(self.smoothing) and self.smoothing >= 0.0):
            raise ValueError(f"smoothing (pseudo-rows towards the prior) must be >= 0, got {self.smoothing}")
        if not (math.isfinite(self.lambda_l2) and self.lambda_l2 >= 0.0):
            raise ValueError(f"lambda_l2 must be >= 0, got {self.lambda_l2}")
        if not 0.5 < self.history_match_purity <= 1.0:
            raise ValueError(f"history_match_purity must be in (0.5, 1], got {self.history_match_purity}")
