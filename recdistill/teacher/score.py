"""Soft labels: stream every split through the teacher and write ``soft_labels/<split>.parquet``.

Each output table has one row per input row, in input order::

    <row key> int64 | teacher_logit float32 | teacher_prob float32

with the teacher hash (sha256 of ``model.pt``) and the method (``in_sample`` or ``out_of_fold``)
in the Parquet key-value metadata, and ``soft_labels/manifest.json`` records both, the rows per
split and the throughput. Splits are read in chunks of ``chunk_rows`` rows, so memory stays
bounded whatever the file size. Every compatibility check (data schema vs preprocessing vs
teacher, the columns of every split, the fold assignment) runs before the first row is scored.

Out of fold (``folds_dir`` given, see :mod:`recdistill.teacher.cross_fit`): every training row is
scored by the fold teacher that did not train on it; the other splits by the full teacher
(``heldout="full"``) or by the mean logit of the fold teachers (``"fold_mean"``).

Sharded (under ``torchrun --nproc_per_node N -m recdistill score ...``, or ``sharded=True`` in
one process): ``<split>.parquet`` is a directory of part files, one per row range, written by
the ranks side by side (:mod:`recdistill.teacher.score_parts`); the manifest lists the parts and
readers see one table per split (:func:`recdistill.students.soft_labels.load_soft_labels`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from recdistill.data.batch import ModelBatch, Targets
from recdistill.data.schema import SCHEMA_FILE, Schema
from recdistill.errors import ArtefactError, ConfigError, SchemaError
from recdistill.io_utils import atomic_path, atomic_write_json, tree_sha256
from recdistill.models.teacher import TeacherEnsemble, TeacherInputs
from recdistill.modules.sparse import padded_to_kjt
from recdistill.probability import sigmoid
from recdistill.teacher.checkpoint import LoadedTeacher, load_teacher

MANIFEST = "manifest.json"
LOGIT_COLUMN = "teacher_logit"
PROB_COLUMN = "teacher_prob"
HASH_KEY = b"recdistill.teacher_hash"
METHOD_KEY = b"recdistill.soft_label_method"
IN_SAMPLE = "in_sample"
OUT_OF_FOLD = "out_of_fold"
Scorer = Callable[[ModelBatch, int], np.ndarray]  # (chunk, offset of its first row) -> logits [B]


@dataclass
class ScoreResult:
    out_dir: Path
    teacher_hash: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # wall time: read + preprocess + teacher + write
    model_seconds: float = 0.0  # teacher forward only (summed over ranks when sharded)
    ranks: int = 1  # processes that scored (sharded) or 1
    rows_scored: int | None = None  # rows scored by this run when finished parts were kept

    @property
    def rows_per_s(self) -> float:
        rows = sum(self.rows.values()) if self.rows_scored is None else self.rows_scored
        return rows / self.seconds if self.seconds else 0.0


def check_data_schema(data_dir: str | Path, schema: Schema) -> None:
    """The data directory's ``schema.json`` (if any) must equal the one preprocessing was fitted on."""
    path = Path(data_dir) / SCHEMA_FILE
    if not path.exists():
        return
    data_schema = Schema.load(path)
    if data_schema == schema:
        return
    a = {f.name: f for f in data_schema.features}
    b = {f.name: f for f in schema.features}
    diffs = [f"{n!r} only in the data" for n in a if n not in b] + [
        f"{n!r} only in training" for n in b if n not in a
    ]
    diffs += [f"{n!r} differs ({a[n]} vs {b[n]})" for n in a if n in b and a[n] != b[n]]
    if not diffs:
        diffs = ["column roles (label/keys) or feature order differ"]
    raise SchemaError(
        f"{path}: the data's schema differs from the one the preprocessing and teacher were fitted on "
        f"({schema.source}): " + "; ".join(diffs)
    )


def check_teacher_inputs(teacher: LoadedTeacher, inputs: TeacherInputs, preprocess_dir: str | Path) -> None:
    diffs = teacher.inputs.differences(inputs)
    if diffs:
        raise ArtefactError(
            f"{teacher.path}: the teacher was trained on other model inputs than {preprocess_dir} produces "
            "(teacher vs preprocessing): " + "; ".join(diffs)
        )


def predict_logits(model: TeacherEnsemble, batch: ModelBatch, *, micro_batch: int = 1024) -> np.ndarray:
    """FP32 logits ``[B]`` of an unsharded teacher, ``micro_batch`` rows per forward (1024 keeps the
    activations in cache: about twice the rows/s of 8192 on this machine). Each micro-batch's KJT
    is built here, before the forward (:func:`~recdistill.modules.sparse.padded_to_kjt`)."""
    out = np.empty(len(batch), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, len(batch), micro_batch):
            b = batch.slice(s, s + micro_batch)
            logits = model(
                torch.from_numpy(np.ascontiguousarray(b.dense)), padded_to_kjt(b.ids, b.multi, model.keys)
            )
            out[s : s + len(b)] = logits.float().numpy()
    return out


def soft_label_table(row_key_name: str, targets: Targets, logits: np.ndarray) -> pa.Table:
    prob = sigmoid(logits).astype(np.float32)
    return pa.table(
        {
            row_key_name: pa.array(targets.row_key, type=pa.int64()),
            LOGIT_COLUMN: pa.array(logits, type=pa.float32()),
            PROB_COLUMN: pa.array(prob, type=pa.float32()),
        }
    )


def write_soft_labels(
    teacher: LoadedTeacher,
    chunks: Iterable[tuple[ModelBatch, Targets]],
    out_path: Path,
    *,
    row_key: str,
    where: str,
    bar: Any = None,
    scorer: Scorer | None = None,
    method: str = IN_SAMPLE,
    first_row: int = 0,
    metadata: dict[bytes, bytes] | None = None,
) -> tuple[int, float]:
    """Score ``chunks`` and write them to ``out_path`` atomically; returns (rows, scoring seconds).

    ``scorer`` (default: ``teacher`` on every row) maps a chunk and the position of its first row
    in the split to logits; ``teacher`` names the soft labels (its hash goes into the file).
    ``first_row``: the split position of the first chunk's first row (a part of a sharded run);
    ``metadata``: more key-value pairs for the file.
    """
    schema = pa.schema(
        [(row_key, pa.int64()), (LOGIT_COLUMN, pa.float32()), (PROB_COLUMN, pa.float32())],
        metadata={HASH_KEY: teacher.sha256.encode(), METHOD_KEY: method.encode(), **(metadata or {})},
    )
    score = scorer or (lambda b, _: predict_logits(teacher.model, b))
    rows, seconds = 0, 0.0
    with atomic_path(out_path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for batch, targets in chunks:
            teacher.inputs.check_batch(batch, where)
            t0 = time.perf_counter()
            logits = score(batch, first_row + rows)
            seconds += time.perf_counter() - t0
            writer.write_table(
                soft_label_table(row_key, targets, logits).replace_schema_metadata(schema.metadata)
            )
            rows += len(batch)
            if bar is not None:
                bar.update(len(batch))
    return rows, seconds


def run_score(
    data_dir: str | Path,
    preprocess_dir: str | Path,
    teacher_dir: str | Path,
    out_dir: str | Path,
    *,
    splits: Sequence[str] | None = None,
    chunk_rows: int | None = None,
    progress: bool = True,
    folds_dir: str | Path | None = None,
    heldout: str = "full",
    sharded: bool | None = None,
    part_rows: int | None = None,
    resume: bool = True,
) -> ScoreResult:
    """``recdistill score``: soft labels for every split in ``data_dir`` (and the transfer set).

    ``folds_dir`` (fold teachers of :mod:`recdistill.teacher.cross_fit`): the training rows are
    scored out of fold, the other splits by the full teacher or (``heldout="fold_mean"``) by the
    fold teachers' mean logit.

    Sharded scoring (``sharded``; default: when ``torchrun`` started more than one process): each
    rank scores its share of the row ranges of ``part_rows`` rows (default one chunk) into part
    files; ``resume`` keeps the parts an interrupted run of the same job finished.
    """
    from recdistill.data.preprocess import Preprocessor
    from recdistill.teacher import score_parts

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if sharded is None:
        sharded = world > 1
    if world > 1 and not sharded:
        raise ConfigError(
            f"{world} processes (torchrun) would write one file per split side by side; "
            "score sharded (the default under torchrun) or run one process"
        )
    pre = Preprocessor.load(preprocess_dir)
    teacher = load_teacher(teacher_dir)
    folds = _FoldTeachers.load(Path(folds_dir), data_dir, pre) if folds_dir is not None else None
    threads = torch.get_num_threads()
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # ranks sharing this machine's cores
    torch.set_num_threads(max(1, teacher.cfg.num_threads // local_ranks))
    try:
        job = _prepare(data_dir, pre, preprocess_dir, teacher, splits=splits, chunk_rows=chunk_rows,
                       folds=folds, heldout=heldout)  # fmt: skip
        if not sharded:
            return _score_single(job, Path(out_dir), progress=progress)
        rows = part_rows or score_parts.PART_CHUNKS * job.chunk
        if world == 1:
            done = score_parts.score_sharded(job, Path(out_dir), score_parts.ONE_RANK, part_rows=rows,
                                             resume=resume, progress=progress)  # fmt: skip
        else:
            from recdistill.teacher.distributed import distributed_context

            with distributed_context() as ctx:
                done = score_parts.score_sharded(job, Path(out_dir), score_parts.TorchRanks(ctx),
                                                 part_rows=rows, resume=resume, progress=progress)  # fmt: skip
        return ScoreResult(Path(out_dir), teacher.sha256, done.rows, done.seconds, done.model_seconds,
                           ranks=done.ranks, rows_scored=done.rows_scored)  # fmt: skip
    finally:
        torch.set_num_threads(threads)


class _FoldTeachers:
    """The fold teachers and the fold of every training row (checked against ``folds.json``)."""

    def __init__(self, teachers: list[LoadedTeacher], folds: np.ndarray, info: dict[str, Any]) -> None:
        self.teachers = teachers
        self.folds = folds
        self.info = info

    @classmethod
    def load(cls, folds_dir: Path, data_dir: str | Path, pre: Any) -> _FoldTeachers:
        from recdistill.config.soft_labels import SoftLabelConfig
        from recdistill.data.raw import targets_from_frame
        from recdistill.data.readers import read_frame
        from recdistill.data.splits import split_path
        from recdistill.teacher.folds import fold_assignment, fold_dir, read_folds

        info = read_folds(folds_dir)
        train = split_path(data_dir, "train")
        cols = [c for c in pre.schema.key_columns if c is not None]
        targets = targets_from_frame(read_frame(train, columns=[*cols, pre.schema.label]), pre.schema,
                                     source=str(train))  # fmt: skip
        cfg = SoftLabelConfig(method="out_of_fold", folds=int(info["folds"]), seed=int(info["seed"]),
                              group_by=info["group_by"])  # fmt: skip
        folds, now = fold_assignment(targets, pre.schema, cfg, where=str(train))
        if now["digest"] != info["digest"]:
            raise ArtefactError(
                f"{folds_dir / 'folds.json'}: the fold teachers were trained on another fold assignment "
                f"than {train} gives now; rerun the cross-fit stage"
            )
        teachers = [load_teacher(fold_dir(folds_dir, k)) for k in range(cfg.folds)]
        return cls(teachers, folds, info)

    def out_of_fold(self, batch: ModelBatch, offset: int) -> np.ndarray:
        fold = self.folds[offset : offset + len(batch)]
        out = np.empty(len(batch), dtype=np.float32)
        for k, t in enumerate(self.teachers):
            rows = np.flatnonzero(fold == k)
            if rows.size:
                out[rows] = predict_logits(t.model, batch.take(rows))
        return out

    def mean(self, batch: ModelBatch, offset: int) -> np.ndarray:
        logits = np.mean([predict_logits(t.model, batch) for t in self.teachers], axis=0)
        return logits.astype(np.float32)


@dataclass
class ScoreJob:
    """What a scoring run does, checked before any row is scored: the split files to score and
    who scores each one (shared by the single-process and the sharded writers)."""

    pre: Any
    preprocess_dir: Path
    teacher: LoadedTeacher
    folds: _FoldTeachers | None
    heldout: str
    method: str
    chunk: int
    paths: dict[str, Path]
    totals: dict[str, int]

    def scorer(self, split: str) -> Scorer | None:
        """Who scores ``split``'s rows (None: the full teacher)."""
        if self.folds is None:
            return None
        if split == "train":
            return self.folds.out_of_fold
        return self.folds.mean if self.heldout == "fold_mean" else None

    def write(
        self, chunks: Iterable[tuple[ModelBatch, Targets]], out_path: Path, *, where: str, split: str,
        first_row: int = 0, metadata: dict[bytes, bytes] | None = None, bar: Any = None,
    ) -> tuple[int, float]:  # fmt: skip
        """:func:`write_soft_labels` with this job's teacher, method and the scorer of ``split``."""
        return write_soft_labels(self.teacher, chunks, out_path, row_key=self.pre.schema.row_key, where=where,
                                 bar=bar, scorer=self.scorer(split), method=self.method, first_row=first_row,
                                 metadata=metadata)  # fmt: skip

    def manifest_head(self) -> dict[str, Any]:
        """The manifest's fields that describe the teacher(s), the method and the inputs."""
        folds = self.folds
        return {
            "teacher_hash": self.teacher.sha256,
            "teacher": str(self.teacher.path),
            "method": self.method,
            "heldout": None if folds is None else self.heldout,
            "fold_teachers": None if folds is None else [t.sha256 for t in folds.teachers],
            "folds": None if folds is None else {k: v for k, v in folds.info.items() if k != "teachers"},
            "preprocess_hash": tree_sha256(self.preprocess_dir),
            "row_key": self.pre.schema.row_key,
            "columns": [self.pre.schema.row_key, LOGIT_COLUMN, PROB_COLUMN],
            "chunk_rows": self.chunk,
        }


def _prepare(
    data_dir: str | Path,
    pre: Any,
    preprocess_dir: str | Path,
    teacher: LoadedTeacher,
    *,
    splits: Sequence[str] | None,
    chunk_rows: int | None,
    folds: _FoldTeachers | None = None,
    heldout: str = "full",
) -> ScoreJob:
    """Every check before any work; the splits to score with their row counts."""
    from recdistill.data.readers import count_rows, scan
    from recdistill.data.splits import SPLITS, find_split
    from recdistill.data.validate import check_columns

    chunk = chunk_rows or teacher.cfg.score_chunk_rows
    check_data_schema(data_dir, pre.schema)
    check_teacher_inputs(teacher, TeacherInputs.from_preprocessor(pre), preprocess_dir)
    for t in folds.teachers if folds is not None else ():
        check_teacher_inputs(t, TeacherInputs.from_preprocessor(pre), preprocess_dir)
    if folds is not None and splits is not None and "train" not in splits:
        raise ArtefactError("out-of-fold scoring rescores every split: the train split cannot be left out")
    method = IN_SAMPLE if folds is None else OUT_OF_FOLD
    wanted = list(splits) if splits is not None else list(SPLITS)
    paths: dict[str, Path] = {}
    for split in wanted:
        p = find_split(data_dir, split)
        if p is None:
            if splits is not None:
                raise ArtefactError(f"{data_dir}: no {split} split to score")
            continue
        columns = dict(scan(p).collect_schema())
        check_columns(
            columns, pre.schema, str(p), labelled=split != "transfer" and pre.schema.label in columns
        )
        paths[split] = p
    if not paths:
        raise ArtefactError(
            f"{data_dir}: no split files to score (expected train/valid/test/transfer.parquet)"
        )
    totals = {split: count_rows(p) for split, p in paths.items()}
    if folds is not None and "train" in totals and totals["train"] != folds.folds.size:
        raise ArtefactError(
            f"{paths['train']}: {totals['train']} rows, but the fold assignment has {folds.folds.size}"
        )
    return ScoreJob(pre, Path(preprocess_dir), teacher, folds, heldout, method, chunk, paths, totals)


def _score_single(job: ScoreJob, out: Path, *, progress: bool) -> ScoreResult:
    """One process: every split into one ``<split>.parquet`` file, then the manifest."""
    from recdistill.data.preprocess import iter_split

    result = ScoreResult(out_dir=out, teacher_hash=job.teacher.sha256)
    entries: dict[str, Any] = {}
    for split, p in job.paths.items():
        t0 = time.perf_counter()
        with tqdm(total=job.totals[split], desc=f"score {split}", unit="row", disable=not progress,
                  leave=False) as bar:  # fmt: skip
            rows, secs = job.write(
                iter_split(p, job.pre, batch_rows=job.chunk), out / f"{split}.parquet", where=str(p), split=split,
                bar=bar,
            )  # fmt: skip
        wall = time.perf_counter() - t0
        result.rows[split] = rows
        result.seconds += wall
        result.model_seconds += secs
        entries[split] = {
            "file": f"{split}.parquet",
            "rows": rows,
            "source": str(p),
            "rows_per_s": rows / wall if wall else 0.0,
            "model_rows_per_s": rows / secs if secs else 0.0,
        }
        if progress:
            print(
                f"scored {split}: {rows:,} rows, {entries[split]['rows_per_s']:,.0f} rows/s end to end "
                f"({entries[split]['model_rows_per_s']:,.0f} rows/s in the teacher)",
                flush=True,
            )
    atomic_write_json(
        out / MANIFEST,
        {
            **job.manifest_head(),
            "layout": "single_process",
            "splits": entries,
            "rows_per_s": result.rows_per_s,
            "model_rows_per_s": sum(result.rows.values()) / result.model_seconds
            if result.model_seconds
            else 0.0,
        },
    )
    return result
