"""Read cached teacher soft labels and refuse any that do not belong to the data or the teacher.

Layout written by the teacher's scoring stage (``recdistill/teacher/score.py``)::

    soft_labels/manifest.json        {"teacher_hash": "<sha256 of teacher model.pt>", "row_key": "row_id",
                                      "method": "in_sample" | "out_of_fold",
                                      "splits": {"train": {"rows": N, ...}, ...}, ...}
    soft_labels/<split>.parquet      <row_key> int64, teacher_logit float32, teacher_prob float32;
                                     key-value metadata ``recdistill.teacher_hash`` and
                                     ``recdistill.soft_label_method``

or, scored sharded (``torchrun``, :mod:`recdistill.teacher.score_parts`), ``<split>.parquet`` is a
directory of part files that the manifest lists in order (``splits.<split>.parts``: file, first
row, rows); read together they are one table, which is what every reader here returns.

:func:`load_soft_labels` returns the teacher logits aligned row by row with a split's
:class:`~recdistill.data.batch.Targets`; :func:`load_soft_label_rows` reads one row range of a
split (a Dask partition) after :func:`check_soft_labels` checked the whole split from the file
footers. Every mismatch raises :class:`ArtefactError` naming the file before any training starts:
another teacher (hash), another soft-label method than the manifest's (in-sample and out-of-fold
files mixed in one directory), single-process and sharded files mixed for one split, a missing
part, another data file (row count, row keys), duplicated keys, NaN/inf logits, or probabilities
outside [0, 1] (counted, with example row keys).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from recdistill.data.batch import Targets
from recdistill.errors import ArtefactError

MANIFEST_FILE = "manifest.json"
LOGIT = "teacher_logit"
PROB = "teacher_prob"
HASH_KEY = b"recdistill.teacher_hash"  # written by recdistill.teacher.score into each file
METHOD_KEY = b"recdistill.soft_label_method"  # in_sample | out_of_fold (absent: in_sample)
PART_KEY = b"recdistill.soft_label_part"  # a sharded part: JSON with its rows (teacher/score_parts.py)
IN_SAMPLE = "in_sample"
_EXAMPLES = 5


def write_soft_labels_dir(
    soft_dir: str | Path,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    row_key: str,
    source_hash: str,
    source: str,
    method: str = IN_SAMPLE,
) -> Path:
    """Write soft labels held in memory: ``splits`` maps a split to (row keys INT64 ``[N]``, logits
    FP32 ``[N]``); one ``<split>.parquet`` each plus ``manifest.json``, in the layout above, each
    file atomically (``source_hash`` names the model that scored them, e.g. a student generation)."""
    import pyarrow as pa

    from recdistill.io_utils import atomic_path, atomic_write_json
    from recdistill.probability import sigmoid

    out = Path(soft_dir)
    meta = {HASH_KEY: source_hash.encode(), METHOD_KEY: method.encode()}
    rows = {}
    for split, (keys, logits) in splits.items():
        table = pa.table(
            {
                row_key: pa.array(np.asarray(keys, dtype=np.int64)),
                LOGIT: pa.array(np.asarray(logits, dtype=np.float32)),
                PROB: pa.array(sigmoid(logits).astype(np.float32)),
            }
        ).replace_schema_metadata(meta)
        with atomic_path(soft_label_path(out, split)) as tmp:
            pq.write_table(table, tmp)
        rows[split] = {"file": f"{split}.parquet", "rows": len(keys)}
    atomic_write_json(
        out / MANIFEST_FILE,
        {
            "teacher_hash": source_hash,
            "teacher": source,
            "method": method,
            "row_key": row_key,
            "splits": rows,
        },
    )
    return out


def read_manifest(soft_dir: str | Path) -> dict[str, Any]:
    """``soft_labels/manifest.json`` as a dict; it must name the teacher (``teacher_hash``)."""
    path = Path(soft_dir) / MANIFEST_FILE
    if not path.is_file():
        raise ArtefactError(f"{path}: soft-label manifest not found; score the data with the teacher first")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtefactError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("teacher_hash"), str):
        raise ArtefactError(f"{path}: must be a JSON object with a string 'teacher_hash'")
    return manifest


def soft_label_method(manifest: dict[str, Any]) -> str:
    """``in_sample`` or ``out_of_fold``: how the manifest says the training rows were scored."""
    method = manifest.get("method") or IN_SAMPLE
    return str(method)


def manifest_rows(manifest: dict[str, Any], split: str) -> int | None:
    """Row count the manifest records for ``split`` (``splits.<split>.rows`` or ``rows.<split>``)."""
    splits = manifest.get("splits")
    if isinstance(splits, dict) and isinstance(splits.get(split), dict) and "rows" in splits[split]:
        return int(splits[split]["rows"])
    rows = manifest.get("rows")
    if isinstance(rows, dict) and split in rows:
        return int(rows[split])
    return None


def soft_label_path(soft_dir: str | Path, split: str) -> Path:
    return Path(soft_dir) / f"{split}.parquet"


def has_soft_labels(soft_dir: str | Path, split: str) -> bool:
    """Whether ``split`` was scored (one file, or a directory of parts)."""
    return soft_label_path(soft_dir, split).exists()


@dataclass(frozen=True)
class SoftLabelFile:
    """One file of a split's soft labels: ``rows`` rows starting at split row ``start``."""

    path: Path
    start: int
    rows: int


@dataclass(frozen=True)
class SplitSoftLabels:
    """A split's soft-label files in row order, after the manifest, layout and footer checks."""

    manifest: dict[str, Any]
    manifest_path: Path
    path: Path  # soft_labels/<split>.parquet (a file, or the directory of parts)
    files: tuple[SoftLabelFile, ...]

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def open_soft_labels(
    soft_dir: str | Path, split: str, *, expected_teacher_hash: str | None
) -> SplitSoftLabels:
    """Check the manifest, the layout of ``split`` and every file's footer; read no rows."""
    manifest = read_manifest(soft_dir)
    man_path = Path(soft_dir) / MANIFEST_FILE
    if expected_teacher_hash is not None and manifest["teacher_hash"] != expected_teacher_hash:
        raise ArtefactError(
            f"{man_path}: soft labels come from teacher {manifest['teacher_hash'][:12]}… but the expected "
            f"teacher is {expected_teacher_hash[:12]}…; rescore the data with the current teacher"
        )
    path = soft_label_path(soft_dir, split)
    if not path.exists():
        raise ArtefactError(f"{path}: no soft labels for split {split!r}; score this split with the teacher")
    entry = (manifest.get("splits") or {}).get(split)
    parts = entry.get("parts") if isinstance(entry, dict) else None
    if parts is None:
        if path.is_dir():
            raise ArtefactError(
                f"{path}: a directory of sharded parts, but {man_path} describes a single-process file for "
                f"split {split!r}; single-process and sharded soft labels cannot be mixed for one split, "
                "rescore it"
            )
        files = [SoftLabelFile(path, 0, _footer(path, manifest, man_path)[1])]
    else:
        if not path.is_dir():
            raise ArtefactError(
                f"{path}: a single-process file, but {man_path} lists {len(parts)} sharded parts for split "
                f"{split!r}; single-process and sharded soft labels cannot be mixed for one split, rescore it"
            )
        files = _parts(Path(soft_dir), path, split, parts, manifest, man_path)
    return SplitSoftLabels(manifest, man_path, path, tuple(files))


def _parts(
    soft_dir: Path, path: Path, split: str, parts: Any, manifest: dict[str, Any], man_path: Path
) -> list[SoftLabelFile]:
    if not isinstance(parts, list) or not all(isinstance(e, dict) and "file" in e for e in parts):
        raise ArtefactError(f"{man_path}: splits.{split}.parts must be a list of {{file, start, rows}}")
    listed = {(soft_dir / str(e["file"])).name for e in parts}
    strays = sorted(f.name for f in path.iterdir() if not f.name.startswith(".") and f.name not in listed)
    if strays:
        raise ArtefactError(
            f"{path}: {strays[0]} is not one of the {len(parts)} parts {man_path} lists; files of another "
            "scoring run (single-process or sharded) cannot be mixed into one split, rescore it"
        )
    files, start = [], 0
    for e in parts:
        f = soft_dir / str(e["file"])
        stop = start + int(e.get("rows", 0))
        if not f.is_file():
            raise ArtefactError(
                f"{f}: soft-label part missing (rows [{start}, {stop}) of split {split!r}, listed in "
                f"{man_path}); rerun the sharded scoring, which keeps the parts that are there"
            )
        meta, rows = _footer(f, manifest, man_path)
        if int(e.get("start", start)) != start or rows != stop - start:
            raise ArtefactError(
                f"{f}: holds {rows} rows where {man_path} lists rows [{start}, {stop}); the file was "
                "changed or comes from another scoring run, rescore"
            )
        part = json.loads(meta.get(PART_KEY, b"{}"))
        if part and (part.get("start"), part.get("stop")) != (start, stop):
            raise ArtefactError(
                f"{f}: scored rows [{part.get('start')}, {part.get('stop')}) but {man_path} lists rows "
                f"[{start}, {stop}); the file comes from another scoring run, rescore"
            )
        files.append(SoftLabelFile(f, start, rows))
        start = stop
    return files


def _footer(path: Path, manifest: dict[str, Any], man_path: Path) -> tuple[dict[bytes, bytes], int]:
    """A soft-label file's key-value metadata and row count; refuses another teacher or method."""
    try:
        meta = pq.read_schema(path).metadata or {}
        rows = int(pq.read_metadata(path).num_rows)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise ArtefactError(f"{path}: not a readable parquet file ({e})") from e
    file_hash = meta.get(HASH_KEY)
    if file_hash is not None and file_hash.decode() != manifest["teacher_hash"]:
        raise ArtefactError(
            f"{path}: scored by teacher {file_hash.decode()[:12]}… but {man_path} names teacher "
            f"{manifest['teacher_hash'][:12]}…; the file comes from another scoring run, rescore"
        )
    file_method = (meta.get(METHOD_KEY) or IN_SAMPLE.encode()).decode()
    if file_method != soft_label_method(manifest):
        raise ArtefactError(
            f"{path}: soft labels made {file_method}, but {man_path} describes {soft_label_method(manifest)} "
            "soft labels; in-sample and out-of-fold files cannot be mixed in one run, rescore every split"
        )
    return meta, rows


def _read(files: Sequence[SoftLabelFile], start: int | None = None, stop: int | None = None) -> pl.DataFrame:
    """The rows ``[start, stop)`` (default: all) of a split's files, as one frame."""
    frames = []
    for f in files:
        lo = 0 if start is None else max(start - f.start, 0)
        hi = f.rows if stop is None else min(stop - f.start, f.rows)
        if lo >= hi:
            continue
        try:
            frames.append(pl.scan_parquet(f.path).slice(lo, hi - lo).collect())
        except Exception as e:  # polars raises several types for a corrupt file
            raise ArtefactError(f"{f.path}: not a readable parquet file ({e})") from e
    if not frames:
        return pl.read_parquet(files[0].path).head(0)
    return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]


def _row_key_column(df: pl.DataFrame, manifest: dict[str, Any], row_key: str | None, path: Path) -> str:
    if row_key is None and isinstance(manifest.get("row_key"), str):
        row_key = manifest["row_key"]
    if row_key is None:
        others = [c for c in df.columns if c not in (LOGIT, PROB)]
        if len(others) != 1:
            raise ArtefactError(f"{path}: cannot tell the row-key column among {others}; pass row_key=")
        row_key = others[0]
    missing = [c for c in (row_key, LOGIT) if c not in df.columns]
    if missing:
        raise ArtefactError(f"{path}: missing columns {missing}; expected {row_key!r}, {LOGIT!r}, {PROB!r}")
    return row_key


def check_soft_labels(
    soft_dir: str | Path, split: str, n_rows: int, *, expected_teacher_hash: str | None
) -> SplitSoftLabels:
    """:func:`open_soft_labels` plus the row count (manifest and data) of the whole split."""
    opened = open_soft_labels(soft_dir, split, expected_teacher_hash=expected_teacher_hash)
    _check_count(opened, split, n_rows)
    return opened


def _check_count(opened: SplitSoftLabels, split: str, expected: int) -> None:
    n, path = opened.rows, opened.path
    recorded = manifest_rows(opened.manifest, split)
    if recorded is not None and recorded != n:
        raise ArtefactError(
            f"{path}: holds {n} rows but {opened.manifest_path} records {recorded}; the file was changed or cut"
        )
    if n != expected:
        raise ArtefactError(
            f"{path}: {n} soft labels for a {split} split of {expected} rows; they were scored on other data"
        )


def load_soft_labels(
    soft_dir: str | Path,
    split: str,
    targets: Targets,
    *,
    expected_teacher_hash: str | None,
    row_key: str | None = None,
) -> np.ndarray:
    """Teacher logits FP32 ``[N]`` aligned with ``targets.row_key`` (``N = len(targets)``).

    ``row_key`` is the schema's row-key column (``Schema.row_key``); ``None`` takes the manifest's
    ``row_key``, else the file's one column besides the teacher columns. Rows may be stored in any
    order; they are matched by key. ``expected_teacher_hash`` (the sha256 of the teacher's
    ``model.pt``) is compared with the manifest when given.
    """
    opened = open_soft_labels(soft_dir, split, expected_teacher_hash=expected_teacher_hash)
    path = opened.path
    df = _read(opened.files)
    row_key = _row_key_column(df, opened.manifest, row_key, path)
    _check_count(opened, split, len(targets))
    keys = df.get_column(row_key).cast(pl.Int64).to_numpy()
    logits = df.get_column(LOGIT).cast(pl.Float64).fill_null(float("nan")).to_numpy()
    aligned = _align(keys, targets.row_key, path, row_key)
    _check_values(df, keys, logits, path, row_key)
    out = logits if aligned is None else logits[aligned]
    return out.astype(np.float32)


def load_soft_label_rows(
    opened: SplitSoftLabels, start: int, stop: int, row_keys: np.ndarray, *, row_key: str
) -> np.ndarray:
    """Teacher logits FP32 of split rows ``[start, stop)``, which must hold ``row_keys`` in order
    (soft labels are written in data order; a Dask partition reads only its own rows)."""
    df = _read(opened.files, start, stop)
    row_key = _row_key_column(df, opened.manifest, row_key, opened.path)
    keys = df.get_column(row_key).cast(pl.Int64).to_numpy()
    where = f"{opened.path} rows [{start}, {stop})"
    if not np.array_equal(keys, row_keys):
        bad = (
            np.flatnonzero(keys != row_keys) if keys.shape == row_keys.shape else np.arange(min(keys.size, 1))
        )
        raise ArtefactError(
            f"{where}: the soft labels are not in the data's row order ({row_key} {_examples(keys[bad])} "
            f"where the data has {_examples(row_keys[bad])}); they were scored on another file"
        )
    logits = df.get_column(LOGIT).cast(pl.Float64).fill_null(float("nan")).to_numpy()
    _check_values(df, keys, logits, Path(where), row_key)
    return logits.astype(np.float32)


def _check_values(df: pl.DataFrame, keys: np.ndarray, logits: np.ndarray, path: Path, row_key: str) -> None:
    _check_finite(logits, keys, path)
    if PROB in df.columns:
        probs = df.get_column(PROB).cast(pl.Float64).fill_null(float("nan")).to_numpy()
        bad = ~((probs >= 0.0) & (probs <= 1.0))  # NaN compares False
        if bad.any():
            raise ArtefactError(
                f"{path}: {int(bad.sum())} of {keys.size} rows have {PROB!r} NaN or outside [0, 1] "
                f"(e.g. {row_key} {_examples(keys[bad])}); the scoring run is broken, rescore"
            )


def _align(keys: np.ndarray, wanted: np.ndarray, path: Path, row_key: str) -> np.ndarray | None:
    """``None`` when ``keys == wanted``; else the permutation ``p`` with ``keys[p] == wanted``."""
    if np.array_equal(keys, wanted):
        return None
    uniq, counts = np.unique(keys, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise ArtefactError(
            f"{path}: {dup.size} {row_key} values appear more than once (e.g. {_examples(dup)})"
        )
    if np.unique(wanted).size != wanted.size:
        raise ArtefactError(
            f"{path}: the data split repeats {row_key} values, so soft labels cannot be matched"
        )
    absent = np.setdiff1d(wanted, keys)
    extra = np.setdiff1d(keys, wanted)
    if absent.size or extra.size:
        raise ArtefactError(
            f"{path}: row keys do not match the data: {absent.size} data rows have no soft label "
            f"(e.g. {row_key} {_examples(absent)}), {extra.size} soft labels have no data row "
            f"(e.g. {_examples(extra)}); they were scored on another file"
        )
    order = np.argsort(keys, kind="stable")
    return order[np.searchsorted(keys, wanted, sorter=order)]


def _check_finite(logits: np.ndarray, keys: np.ndarray, path: Path) -> None:
    bad = ~np.isfinite(logits)
    if bad.any():
        n_nan = int(np.isnan(logits).sum())
        raise ArtefactError(
            f"{path}: {int(bad.sum())} of {logits.size} rows have a non-finite {LOGIT!r} "
            f"({n_nan} NaN, {int(bad.sum()) - n_nan} inf; e.g. row keys {_examples(keys[bad])}); rescore"
        )


def _examples(values: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in values[:_EXAMPLES])
    return f"[{shown}{', …' if values.size > _EXAMPLES else ''}]"
