"""Sharded scoring: the ranks of one ``torchrun`` job score disjoint row ranges into part files.

Layout (what :func:`recdistill.students.soft_labels.load_soft_labels` reads as one table per split)::

    soft_labels/manifest.json                       "layout": "sharded"; per split its parts in order
    soft_labels/<split>.parquet/part-00000.parquet  rows [0, P) of the split
    soft_labels/<split>.parquet/part-00001.parquet  rows [P, 2P) ...

Every split is cut into row ranges of ``part_rows`` rows (:func:`recdistill.row_ranges.plan_ranges`:
the same cut whatever the number of ranks, uneven at the end); :func:`assign_parts` shares the
parts out by rows (largest first, each to the rank with the fewest rows so far: every rank
computes the same answer). A rank streams each of its ranges in chunks
(bounded memory) through the same scorer as a single process, with every row's global position
in its split (the out-of-fold scorer indexes the fold assignment by position).

Each part is written atomically and carries its *job key* in its metadata: a hash of the teacher(s),
the method, the preprocessing, the source file (path, size, modification time) and the rows. A
rerun keeps the parts whose key matches (``resume``) and redoes the others, e.g. those of a killed
rank. Rank 0 removes the manifest before any part is written and writes it back only when every
part is there, so no reader ever sees a half-written run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow.parquet as pq
import torch.distributed as dist

from recdistill.errors import ArtefactError
from recdistill.io_utils import atomic_write_json
from recdistill.row_ranges import RowRange, iter_row_range, plan_ranges

if TYPE_CHECKING:
    from collections.abc import Iterator

    from recdistill.data.batch import ModelBatch, Targets
    from recdistill.teacher.distributed import DistContext
    from recdistill.teacher.score import ScoreJob

PART_KEY = b"recdistill.soft_label_part"  # JSON: job key, split, index, start, stop, rank
PART_CHUNKS = 1  # default part size in chunks of ``chunk_rows`` rows


class Ranks(Protocol):
    """The processes of one job: this one's rank, how many, a barrier and an all-gather."""

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    def barrier(self) -> None: ...

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        ...


@dataclass(frozen=True)
class _OneRank:
    rank: int = 0
    world_size: int = 1

    def barrier(self) -> None:
        return None

    def gather(self, obj: Any) -> list[Any]:
        return [obj]


ONE_RANK: Ranks = _OneRank()


class TorchRanks:
    """:class:`Ranks` over the ``torch.distributed`` process group of a ``torchrun`` launch."""

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx

    @property
    def rank(self) -> int:
        return self.ctx.rank

    @property
    def world_size(self) -> int:
        return self.ctx.world_size

    def barrier(self) -> None:
        self.ctx.barrier()

    def gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.ctx.world_size
        dist.all_gather_object(out, obj)
        return out


@dataclass(frozen=True)
class ShardedResult:
    """What a sharded run did (the same on every rank): rows per split, wall seconds, teacher
    seconds summed over the ranks, the ranks, and the rows scored now (the rest were kept)."""

    rows: dict[str, int]
    seconds: float
    model_seconds: float
    ranks: int
    rows_scored: int


@dataclass(frozen=True)
class ScorePart:
    """Rows ``rows`` of ``split``, written to ``<split>.parquet/part-<index>.parquet``."""

    split: str
    index: int
    rows: RowRange

    @property
    def file(self) -> str:
        return f"{self.split}.parquet/part-{self.index:05d}.parquet"


def plan_parts(totals: dict[str, int], part_rows: int) -> list[ScorePart]:
    """Every split's row ranges, splits in the given order."""
    return [
        ScorePart(split, i, r) for split, n in totals.items() for i, r in enumerate(plan_ranges(n, part_rows))
    ]


def assign_parts(parts: list[ScorePart], world_size: int) -> list[list[ScorePart]]:
    """Each rank's parts (in plan order): largest part first to the rank with the fewest rows so
    far, ties to the lower part index and the lower rank; the same on every rank."""
    load = [0] * world_size
    mine: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(len(parts)), key=lambda i: (-len(parts[i].rows), i)):
        r = min(range(world_size), key=lambda r: (load[r], r))
        mine[r].append(i)
        load[r] += len(parts[i].rows)
    return [[parts[i] for i in sorted(m)] for m in mine]


def job_key(job: ScoreJob, part: ScorePart, preprocess_hash: str) -> str:
    """What a part's soft labels depend on; a finished part with another key is redone."""
    src = job.paths[part.split].resolve()
    stat = src.stat()
    blob = {
        "teacher": job.teacher.sha256,
        "fold_teachers": None if job.folds is None else [t.sha256 for t in job.folds.teachers],
        "method": job.method,
        "heldout": job.heldout if job.folds is not None and part.split != "train" else None,
        "preprocess": preprocess_hash,
        "source": [str(src), stat.st_size, stat.st_mtime_ns, job.totals[part.split]],
        "split": part.split,
        "rows": [part.rows.start, part.rows.stop],
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def read_part_info(path: Path) -> dict[str, Any] | None:
    """The part metadata of a finished part file (with its row count), or None when the file is
    absent, unreadable or no part."""
    try:
        meta = pq.read_schema(path).metadata or {}
        rows = pq.read_metadata(path).num_rows
    except (OSError, ValueError):  # absent, truncated or not Parquet
        return None
    raw = meta.get(PART_KEY)
    if raw is None:
        return None
    info: dict[str, Any] = json.loads(raw)
    info["num_rows"] = int(rows)
    return info


def _finished(path: Path, key: str, part: ScorePart) -> dict[str, Any] | None:
    info = read_part_info(path)
    if info is None or info.get("job") != key or info["num_rows"] != len(part.rows):
        return None
    return info


def _chunks(job: ScoreJob, part: ScorePart) -> Iterator[tuple[ModelBatch, Targets]]:
    from recdistill.data.raw import raw_batch_from_frame, targets_from_frame

    path = job.paths[part.split]
    schema = job.pre.schema
    for df in iter_row_range(path, part.rows.start, part.rows.stop, batch_rows=job.chunk):
        yield (
            job.pre.transform(raw_batch_from_frame(df, schema, source=str(path))),
            targets_from_frame(df, schema, source=str(path)),
        )


def _prepare_out(out: Path, job: ScoreJob, *, resume: bool) -> None:
    """Rank 0, before any part is written: no manifest; a part directory per split (a single
    file left by a single-process run is removed; without ``resume`` old parts go too)."""
    (out / "manifest.json").unlink(missing_ok=True)
    for split in job.paths:
        d = out / f"{split}.parquet"
        if d.is_file() or d.is_symlink():
            d.unlink()
        elif d.is_dir() and not resume:
            shutil.rmtree(d)
        d.mkdir(parents=True, exist_ok=True)


def _score_mine(
    job: ScoreJob, out: Path, parts: list[ScorePart], keys: dict[ScorePart, str], rank: int, progress: bool
) -> dict[str, Any]:
    """Score this rank's parts (keeping finished ones); returns its figures."""
    rows = kept = 0
    seconds = model_seconds = 0.0
    for part in parts:
        path = out / part.file
        if _finished(path, keys[part], part) is not None:
            kept += len(part.rows)
            continue
        t0 = time.perf_counter()
        meta = {"job": keys[part], "split": part.split, "index": part.index, "start": part.rows.start,
                "stop": part.rows.stop, "rank": rank}  # fmt: skip
        n, secs = job.write(
            _chunks(job, part),
            path,
            where=f"{job.paths[part.split]} rows [{part.rows.start}, {part.rows.stop})",
            split=part.split,
            first_row=part.rows.start,
            metadata={PART_KEY: json.dumps(meta).encode()},
        )
        seconds += time.perf_counter() - t0
        model_seconds += secs
        rows += n
        if progress:
            print(f"rank {rank}: scored {part.file} ({n:,} rows)", flush=True)
    return {"rank": rank, "rows": rows, "kept_rows": kept, "seconds": seconds, "model_seconds": model_seconds}


def _finish(
    job: ScoreJob, out: Path, parts: list[ScorePart], keys: dict[ScorePart, str], ranks_info: list[dict[str, Any]],
    *, part_rows: int, wall: float,
) -> dict[str, Any]:  # fmt: skip
    """Rank 0, after every rank is done: check every part, drop strays, write the manifest."""
    entries: dict[str, Any] = {}
    missing = []
    for split, src in job.paths.items():
        listed: list[dict[str, Any]] = []
        for part in (p for p in parts if p.split == split):
            info = _finished(out / part.file, keys[part], part)
            if info is None:
                missing.append(part.file)
                continue
            listed.append({"file": part.file, "start": part.rows.start, "rows": len(part.rows),
                           "rank": info.get("rank")})  # fmt: skip
        d = out / f"{split}.parquet"
        wanted = {Path(str(e["file"])).name for e in listed}
        for f in d.iterdir():  # parts of another cut, temporary files of a killed rank
            if f.name not in wanted:
                f.unlink() if f.is_file() else shutil.rmtree(f)
        entries[split] = {"file": f"{split}.parquet", "layout": "parts", "rows": job.totals[split],
                          "source": str(src), "parts": listed}  # fmt: skip
    if missing:
        raise ArtefactError(
            f"{out}: {len(missing)} soft-label parts were not written ({', '.join(missing[:5])}"
            f"{', …' if len(missing) > 5 else ''}); a rank failed: rerun the same command (finished parts are kept)"
        )
    scored = sum(r["rows"] for r in ranks_info)
    model_s = sum(r["model_seconds"] for r in ranks_info)
    manifest = {
        **job.manifest_head(),
        "layout": "sharded",
        "ranks": len(ranks_info),
        "part_rows": part_rows,
        "splits": entries,
        "rows_scored": scored,
        "rows_kept": sum(r["kept_rows"] for r in ranks_info),
        "seconds": wall,
        "rows_per_s": scored / wall if wall else 0.0,
        "model_rows_per_s": scored / model_s if model_s else 0.0,
        "per_rank": ranks_info,
    }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


def score_sharded(
    job: ScoreJob, out: Path, ranks: Ranks, *, part_rows: int, resume: bool = True, progress: bool = True
) -> ShardedResult:
    """Every rank calls this with the same ``job``; see the module docstring."""
    from recdistill.io_utils import tree_sha256

    parts = plan_parts(job.totals, part_rows)
    pre_hash = tree_sha256(job.preprocess_dir)
    keys = {p: job_key(job, p, pre_hash) for p in parts}
    if ranks.rank == 0:
        _prepare_out(out, job, resume=resume)
    ranks.barrier()
    t0 = time.perf_counter()
    mine = assign_parts(parts, ranks.world_size)[ranks.rank]
    info = _score_mine(job, out, mine, keys, ranks.rank, progress)
    everyone = ranks.gather(info)  # also waits for every rank
    wall = time.perf_counter() - t0
    error: str | None = None
    if ranks.rank == 0:
        try:
            manifest = _finish(job, out, parts, keys, everyone, part_rows=part_rows, wall=wall)
        except ArtefactError as e:
            error = str(e)
        else:
            if progress:
                print(
                    f"scored {manifest['rows_scored']:,} rows on {ranks.world_size} ranks in {wall:.1f}s "
                    f"({manifest['rows_per_s']:,.0f} rows/s; {manifest['rows_kept']:,} rows kept from an "
                    "earlier run)",
                    flush=True,
                )
    error = ranks.gather(error)[0]  # every rank returns (or fails) once rank 0 is done
    if error is not None:
        raise ArtefactError(error)
    return ShardedResult(
        rows=dict(job.totals),
        seconds=wall,
        model_seconds=sum(r["model_seconds"] for r in everyone),
        ranks=ranks.world_size,
        rows_scored=sum(r["rows"] for r in everyone),
    )
