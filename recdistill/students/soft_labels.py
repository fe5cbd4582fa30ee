"""Read cached teacher soft labels and refuse any that do not belong to the data or the teacher.

Layout written by the teacher's scoring stage (``recdistill/teacher/score.py``)::

    soft_labels/manifest.json        {"teacher_hash": "<sha256 of teacher model.pt>", "row_key": "row_id",
                                      "method": "in_sample" | "out_of_fold",
                                      "splits": {"train": {"rows": N, ...}, ...}, ...}
    soft_labels/<split>.parquet      <row_key> int64, teacher_logit float32, teacher_prob float32;
                                     key-value metadata ``recdistill.teacher_hash`` and
                                     ``recdistill.soft_label_method``

:func:`load_soft_labels` returns the teacher logits aligned row by row with a split's
:class:`~recdistill.data.batch.Targets`. Every mismatch raises :class:`ArtefactError` naming
the file before any training starts: another teacher (hash), another soft-label method than the manifest's (in-sample and out-of-fold
files mixed in one directory), another data file (row count,
row keys), duplicated keys, NaN/inf logits, or probabilities outside [0, 1] (counted, with
example row keys).
"""

from __future__ import annotations

import json
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
    return soft_label_path(soft_dir, split).is_file()


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
    manifest = read_manifest(soft_dir)
    man_path = Path(soft_dir) / MANIFEST_FILE
    if expected_teacher_hash is not None and manifest["teacher_hash"] != expected_teacher_hash:
        raise ArtefactError(
            f"{man_path}: soft labels come from teacher {manifest['teacher_hash'][:12]}… but the expected "
            f"teacher is {expected_teacher_hash[:12]}…; rescore the data with the current teacher"
        )
    path = soft_label_path(soft_dir, split)
    if not path.is_file():
        raise ArtefactError(f"{path}: no soft labels for split {split!r}; score this split with the teacher")
    try:
        df = pl.read_parquet(path)
        file_meta = pq.read_schema(path).metadata or {}
    except Exception as e:  # polars and pyarrow raise several types for a corrupt file
        raise ArtefactError(f"{path}: not a readable parquet file ({e})") from e
    file_hash = file_meta.get(HASH_KEY)
    if file_hash is not None and file_hash.decode() != manifest["teacher_hash"]:
        raise ArtefactError(
            f"{path}: scored by teacher {file_hash.decode()[:12]}… but {man_path} names teacher "
            f"{manifest['teacher_hash'][:12]}…; the file comes from another scoring run, rescore"
        )
    file_method = (file_meta.get(METHOD_KEY) or IN_SAMPLE.encode()).decode()
    if file_method != soft_label_method(manifest):
        raise ArtefactError(
            f"{path}: soft labels made {file_method}, but {man_path} describes {soft_label_method(manifest)} "
            "soft labels; in-sample and out-of-fold files cannot be mixed in one run, rescore every split"
        )
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

    n, expected = df.height, len(targets)
    recorded = manifest_rows(manifest, split)
    if recorded is not None and recorded != n:
        raise ArtefactError(
            f"{path}: holds {n} rows but {man_path} records {recorded}; the file was changed or cut"
        )
    if n != expected:
        raise ArtefactError(
            f"{path}: {n} soft labels for a {split} split of {expected} rows; they were scored on other data"
        )

    keys = df.get_column(row_key).cast(pl.Int64).to_numpy()
    logits = df.get_column(LOGIT).cast(pl.Float64).fill_null(float("nan")).to_numpy()
    aligned = _align(keys, targets.row_key, path, row_key)
    _check_finite(logits, keys, path)
    if PROB in df.columns:
        probs = df.get_column(PROB).cast(pl.Float64).fill_null(float("nan")).to_numpy()
        bad = ~((probs >= 0.0) & (probs <= 1.0))  # NaN compares False
        if bad.any():
            raise ArtefactError(
                f"{path}: {int(bad.sum())} of {n} rows have {PROB!r} NaN or outside [0, 1] "
                f"(e.g. {row_key} {_examples(keys[bad])}); the scoring run is broken, rescore"
            )
    out = logits if aligned is None else logits[aligned]
    return out.astype(np.float32)


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
