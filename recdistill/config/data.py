"""Data section: where click logs come from (generated or the user's files) and how they are read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class GeneratorConfig:
    """Synthetic click logs with known ground truth (``data_gen``).

    ``rows`` counts labelled rows over all splits; ``transfer_rows`` adds unlabelled rows
    (a transfer set for distillation). Deterministic by ``seed``. Requests of
    ``candidates_per_request`` rows are never split, so ``rows`` is rounded up to whole requests.
    ``chunk_rows`` bounds memory (rows buffered per split = Parquet row-group size); the data
    itself does not depend on it. The generative process is documented in ``data_gen``.
    """

    seed: int = 0
    rows: int = 200_000
    transfer_rows: int = 0
    candidates_per_request: int = 128
    n_users: int = 20_000
    n_items: int = 50_000
    n_categories: int = 200
    n_contexts: int = 64
    n_age_buckets: int = 6
    latent_dim: int = 8
    # popularity of users, items, categories and contexts: weight (rank + zipf_offset) ** -zipf_exponent
    zipf_exponent: float = 1.05
    zipf_offset: float = 10.0
    history_len: int = 20
    long_history_len: int = 50
    # True: some signal lives only in teacher_only features (privileged-features scenario).
    # False: the same features exist but none is teacher_only (same-features scenario).
    privileged: bool = True
    base_ctr: float = 0.05
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    chunk_rows: int = 250_000

    def __post_init__(self) -> None:
        if self.rows < 1:
            raise ValueError(f"rows must be >= 1, got {self.rows}")
        if self.candidates_per_request < 1:
            raise ValueError(f"candidates_per_request must be >= 1, got {self.candidates_per_request}")
        if abs(sum(self.split) - 1.0) > 1e-6 or any(s < 0 for s in self.split):
            raise ValueError(f"split must be three non-negative fractions summing to 1, got {self.split}")
        if not 0.0 < self.base_ctr < 1.0:
            raise ValueError(f"base_ctr must be in (0, 1), got {self.base_ctr}")
        if self.transfer_rows < 0:
            raise ValueError(f"transfer_rows must be >= 0, got {self.transfer_rows}")
        for name in (
            "n_users",
            "n_categories",
            "n_contexts",
            "n_age_buckets",
            "latent_dim",
            "history_len",
            "long_history_len",
            "chunk_rows",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_items < max(self.candidates_per_request, self.n_categories):
            raise ValueError(
                f"n_items ({self.n_items}) must be >= candidates_per_request ({self.candidates_per_request}) "
                f"and >= n_categories ({self.n_categories}): candidates in a request are distinct items "
                "and every category holds at least one item"
            )
        if self.zipf_exponent < 0 or self.zipf_offset < 0:
            raise ValueError(
                f"zipf_exponent and zipf_offset must be >= 0, got {self.zipf_exponent}, {self.zipf_offset}"
            )


@dataclass(frozen=True)
class PublicDatasetConfig:
    """A public click log built into the run's ``data/`` (``source: movielens100k``).

    ``scenario``: ``same_features`` or ``privileged`` (a long history only the teacher sees; see
    :mod:`recdistill.datasets.movielens`). ``max_users`` keeps a fixed subset of users (tests).
    ``cache_dir``: where the downloaded files are kept (default ``$RECDISTILL_CACHE`` or
    ``~/.cache/recdistill``).
    """

    scenario: Literal["same_features", "privileged"] = "same_features"
    max_users: int | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.scenario not in ("same_features", "privileged"):
            raise ValueError(f"scenario must be same_features or privileged, got {self.scenario!r}")
        if self.max_users is not None and self.max_users < 2:
            raise ValueError(f"max_users must be >= 2 (or null for every user), got {self.max_users}")


@dataclass(frozen=True)
class SplitConfig:
    """How one click log (``data.path``) is split into train / valid / test (:mod:`recdistill.data.split_log`).

    * ``time``: by the ``column`` (numbers or dates): every train row is earlier than every valid
      row, every valid row than every test row; rows at the same time are never split apart.
    * ``user``: no user in two splits; ``column`` defaults to the schema's ``user_id``.
    * ``random``: rows drawn at random by ``seed``; with a ``column`` (default: the schema's
      ``request_id``, when it names one) whole groups of it (requests) are drawn, never split.

    ``fractions`` are of rows (train, valid, test); user and request splits hit them up to one group.
    """

    by: Literal["time", "random", "user"] = "random"
    column: str | None = None
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0

    def __post_init__(self) -> None:
        if abs(sum(self.fractions) - 1.0) > 1e-6 or any(f < 0 for f in self.fractions):
            raise ValueError(
                f"split.fractions must be three non-negative numbers summing to 1, got {self.fractions}"
            )
        if self.by == "time" and not self.column:
            raise ValueError("split.column is required with split.by: time (the time column's name)")


@dataclass(frozen=True)
class DataConfig:
    """``source: generate`` makes synthetic data; ``source: files`` reads the user's click log;
    ``source: movielens100k`` builds the MovieLens-100k click log (``dataset`` section).

    With ``files``, either one log, ``path`` (a file, a folder of parts, or a glob) with ``split``
    (how to cut it into train / valid / test), or three split files ``train``/``valid``/``test``;
    ``transfer`` (unlabelled rows) is optional in both. ``schema`` is the path of ``schema.json``
    (``recdistill init-schema`` writes one); with the ``criteo`` format it is built in (label,
    I1..I13, C1..C26) and may be omitted. ``format``: ``parquet``, ``csv``, ``tsv`` (with a
    header) or ``criteo``; by default it follows the file names (``.parquet``, ``.csv``, ``.tsv`` =
    Criteo). The ``data`` stage writes every split as Parquet into ``runs/<name>/data/``, and
    every later stage reads those.
    """

    source: Literal["generate", "files", "movielens100k"] = "generate"
    format: Literal["parquet", "csv", "tsv", "criteo"] | None = None
    path: str | None = None
    split: SplitConfig | None = None
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    transfer: str | None = None
    schema: str | None = None
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    dataset: PublicDatasetConfig = field(default_factory=PublicDatasetConfig)

    def __post_init__(self) -> None:
        given = [k for k in ("train", "valid", "test") if getattr(self, k) is not None]
        if self.path is not None and given:
            raise ValueError(
                f"set either data.path (one log, split for you) or data.train/valid/test, not both "
                f"(found path and {', '.join(given)})"
            )
        if self.path is not None and self.split is None:
            raise ValueError("data.split is required with data.path, e.g. split: {by: time, column: ts}")
        if self.split is not None and self.path is None:
            raise ValueError("data.split applies to data.path (one log); it is set but data.path is not")
