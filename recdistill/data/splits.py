"""Where the splits of a data directory live: ``train``, ``valid``, ``test`` and ``transfer``."""

from __future__ import annotations

from pathlib import Path

from recdistill.errors import DataError

SPLITS: tuple[str, ...] = ("train", "valid", "test", "transfer")
LABELLED_SPLITS: tuple[str, ...] = ("train", "valid", "test")
_SUFFIXES = (".parquet", ".csv", ".tsv")


def find_split(data_dir: str | Path, split: str) -> Path | None:
    """``<data_dir>/<split>.{parquet,csv,tsv}`` if one exists."""
    for suffix in _SUFFIXES:
        p = Path(data_dir) / f"{split}{suffix}"
        if p.exists():
            return p
    return None


def split_path(data_dir: str | Path, split: str) -> Path:
    p = find_split(data_dir, split)
    if p is None:
        raise DataError(f"{data_dir}: no {split} split (expected {split}.parquet, .csv or .tsv)")
    return p
