"""Teacher checkpoints: per-epoch distributed checkpoints and the final single-process model.

Layout of a teacher directory::

    teacher/
      checkpoints/epoch_0003/   torch.distributed.checkpoint (DCP) files of model + optimisers,
                                written by every rank, plus state.json (trainer state, fingerprint)
      model.pt                  the best epoch, unsharded: {"meta": ..., "state_dict": ...}
      teacher.json              meta, metrics and the sha256 of model.pt (the teacher hash)

An epoch checkpoint is written under a hidden temporary name and renamed once complete, so a
kill leaves either the previous checkpoint or the new one, never a half-written one that looks
complete. Every load first compares the stored fingerprint (format version, architecture,
input layout) and parameter shapes with what the caller expects, and names the first
difference, instead of failing deep inside ``load_state_dict``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp

from recdistill import __version__
from recdistill.config.loader import from_mapping, to_mapping
from recdistill.config.teacher import TeacherConfig
from recdistill.errors import ArtefactError
from recdistill.io_utils import atomic_write_json, atomic_write_with, file_sha256, read_json, tree_sha256
from recdistill.models.teacher import TeacherEnsemble, TeacherInputs, build_teacher

FORMAT_VERSION = 1
CHECKPOINTS = "checkpoints"
MODEL_FILE = "model.pt"
META_FILE = "teacher.json"
STATE_FILE = "state.json"

# Keys that change the parameters' shapes or meaning: a checkpoint only loads under the same ones.
ARCH_KEYS: tuple[str, ...] = (
    "embedding_dim",
    "tower_dims",
    "cross_layers",
    "cross_low_rank",
    "deep_dims",
    "over_dims",
    "ensemble_size",
    "ensemble_width_scales",
)
# Keys a resumed run must share with the interrupted one to continue the same trajectory.
RESUME_KEYS: tuple[str, ...] = (
    *ARCH_KEYS,
    "dropout",
    "batch_size",
    "lr_dense",
    "lr_sparse",
    "sparse_optimizer",
    "weight_decay",
    "schedule",
    "warmup_steps",
    "min_lr_ratio",
    "seed",
)


def fingerprint(cfg: TeacherConfig, inputs: TeacherInputs) -> dict[str, Any]:
    """What a checkpoint records about the model that wrote it."""
    return {
        "format": FORMAT_VERSION,
        "recdistill": __version__,
        "torch": str(torch.__version__),
        "config": to_mapping(cfg),
        "inputs": inputs.to_dict(),
    }


def check_fingerprint(
    stored: Mapping[str, Any], cfg: TeacherConfig, inputs: TeacherInputs, *, where: str, keys: tuple[str, ...]
) -> None:
    """Raise :class:`ArtefactError` naming the first way ``stored`` differs from ``cfg``/``inputs``."""
    fmt = stored.get("format")
    if fmt != FORMAT_VERSION:
        raise ArtefactError(
            f"{where}: checkpoint format {fmt} (written by recdistill {stored.get('recdistill', '?')}); this is "
            f"recdistill {__version__} with format {FORMAT_VERSION}. Retrain the teacher or use the matching version."
        )
    now = to_mapping(cfg)
    diffs = [
        f"{k}: checkpoint {stored['config'].get(k)!r}, now {now[k]!r}"
        for k in keys
        if _norm(stored["config"].get(k)) != _norm(now[k])
    ]
    if diffs:
        raise ArtefactError(
            f"{where}: checkpoint was written with another teacher config: " + "; ".join(diffs)
        )
    theirs = TeacherInputs.from_dict(stored["inputs"])
    idiffs = theirs.differences(inputs)
    if idiffs:
        raise ArtefactError(
            f"{where}: checkpoint was trained on other model inputs (checkpoint vs now): "
            + "; ".join(idiffs)
            + ". Was the preprocessing refitted or the schema changed?"
        )


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, list | tuple) else v


def check_state_shapes(
    model_state: Mapping[str, Any], loaded_state: Mapping[str, Any], *, where: str
) -> None:
    """Names missing/unexpected parameters and the first shape mismatch, before ``load_state_dict``."""
    missing = sorted(set(model_state) - set(loaded_state))
    extra = sorted(set(loaded_state) - set(model_state))
    if missing or extra:
        raise ArtefactError(
            f"{where}: parameters do not match the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}"
        )
    for name, t in model_state.items():
        a, b = tuple(loaded_state[name].shape), tuple(t.shape)
        if a != b:
            raise ArtefactError(
                f"{where}: parameter {name!r} has shape {list(a)} in the checkpoint, the model expects {list(b)}"
            )


# -- per-epoch distributed checkpoints -------------------------------------------------------------
def epoch_dir(out_dir: Path, epoch: int) -> Path:
    return out_dir / CHECKPOINTS / f"epoch_{epoch:04d}"


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete epoch checkpoint (one with its state file), or None."""
    root = out_dir / CHECKPOINTS
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("epoch_*") if (p / STATE_FILE).exists())
    return done[-1] if done else None


def save_epoch(
    out_dir: Path,
    epoch: int,
    state: dict[str, Any],
    trainer_state: dict[str, Any],
    *,
    rank: int,
    barrier: Any,
) -> Path:
    """Write one epoch's DCP checkpoint from every rank; rank 0 renames it into place.

    ``state`` is ``{"model": dmp.state_dict(), "optim": optimizer.state_dict()}``.
    ``barrier`` is a no-argument collective (``dist.barrier``).
    """
    final = epoch_dir(out_dir, epoch)
    tmp = final.with_name(f".{final.name}.tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    dcp.save(state, checkpoint_id=str(tmp))
    barrier()
    if rank == 0:
        (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    barrier()
    return final


def prune_checkpoints(out_dir: Path, keep: set[int]) -> None:
    """Delete epoch checkpoints not in ``keep`` and leftovers of interrupted writes (rank 0 only)."""
    root = out_dir / CHECKPOINTS
    for p in root.glob("epoch_*"):
        if int(p.name.split("_")[1]) not in keep:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".epoch_*.tmp"):
        shutil.rmtree(p, ignore_errors=True)


def read_trainer_state(ckpt: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = read_json(ckpt / STATE_FILE)
    except (OSError, json.JSONDecodeError) as e:
        raise ArtefactError(f"{ckpt}: unreadable {STATE_FILE} ({e}); delete this checkpoint directory") from e
    return state


def load_epoch_into(ckpt: Path, state: dict[str, Any]) -> None:
    """Load a DCP checkpoint in place into ``state`` (sharded or not, any world size)."""
    try:
        dcp.load(state, checkpoint_id=str(ckpt))
    except Exception as e:  # DCP raises CheckpointException wrapping per-rank errors
        raise ArtefactError(f"{ckpt}: could not load the distributed checkpoint: {e}") from e


def teacher_from_epoch_checkpoint(ckpt: Path) -> tuple[TeacherEnsemble, dict[str, Any]]:
    """Rebuild the unsharded teacher of one epoch checkpoint in this (single) process.

    Loads the distributed checkpoint written by any number of ranks into a plain model.
    """
    trainer_state = read_trainer_state(ckpt)
    fp = trainer_state["fingerprint"]
    cfg = from_mapping(TeacherConfig, fp["config"], source=str(ckpt / STATE_FILE))
    inputs = TeacherInputs.from_dict(fp["inputs"])
    check_fingerprint(fp, cfg, inputs, where=str(ckpt), keys=ARCH_KEYS)
    model = build_teacher(inputs, cfg)
    sd = {f"model.{k}": v for k, v in model.state_dict().items()}
    try:
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.filterwarnings("ignore", message=".*single process.*")
            dcp.load({"model": sd}, checkpoint_id=str(ckpt), no_dist=True)
    except Exception as e:
        raise ArtefactError(
            f"{ckpt}: could not load the distributed checkpoint into a single-process teacher: {e}"
        ) from e
    model.load_state_dict({k[len("model.") :]: v for k, v in sd.items()})
    model.eval()
    return model, trainer_state


# -- the final single-process model ---------------------------------------------------------------
def save_model(out_dir: Path, model: TeacherEnsemble, meta: dict[str, Any]) -> str:
    """Write ``model.pt`` atomically and return its sha256 (the teacher hash)."""
    payload = {"meta": meta, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    atomic_write_with(out_dir / MODEL_FILE, lambda p: torch.save(payload, p))
    return file_sha256(out_dir / MODEL_FILE)


@dataclass(frozen=True)
class LoadedTeacher:
    model: TeacherEnsemble
    cfg: TeacherConfig
    inputs: TeacherInputs
    meta: dict[str, Any]
    sha256: str
    path: Path


def load_teacher(path: str | Path) -> LoadedTeacher:
    """Load a trained teacher for scoring or export (eval mode, CPU).

    ``path`` is a teacher directory (reads ``model.pt``), a ``model.pt`` file, or an epoch
    checkpoint directory (a distributed checkpoint, loaded unsharded).
    """
    p = Path(path)
    if p.is_dir() and (p / STATE_FILE).exists():
        model, state = teacher_from_epoch_checkpoint(p)
        fp = state["fingerprint"]
        cfg = from_mapping(TeacherConfig, fp["config"], source=str(p / STATE_FILE))
        # tree_sha256 skips dot-files, so DCP's .metadata is hashed separately
        digest = hashlib.sha256((tree_sha256(p) + file_sha256(p / ".metadata")).encode()).hexdigest()
        return LoadedTeacher(
            model, cfg, TeacherInputs.from_dict(fp["inputs"]), {"fingerprint": fp}, digest, p
        )
    file = p / MODEL_FILE if p.is_dir() else p
    if not file.exists():
        hint = (
            " (training may have stopped early; `train-teacher --resume` finishes it)"
            if (p / CHECKPOINTS).is_dir()
            else ""
        )
        raise ArtefactError(f"{file}: no trained teacher here{hint}")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ArtefactError(f"{file}: not a readable teacher checkpoint ({e})") from e
    if not isinstance(payload, dict) or "meta" not in payload or "state_dict" not in payload:
        raise ArtefactError(f"{file}: not a recdistill teacher checkpoint (no 'meta'/'state_dict')")
    meta = payload["meta"]
    fp = meta.get("fingerprint", {})
    if fp.get("format") != FORMAT_VERSION:
        raise ArtefactError(
            f"{file}: checkpoint format {fp.get('format')} (written by recdistill {fp.get('recdistill', '?')}); "
            f"this is recdistill {__version__} with format {FORMAT_VERSION}. Retrain the teacher."
        )
    cfg = from_mapping(TeacherConfig, fp["config"], source=str(file))
    inputs = TeacherInputs.from_dict(fp["inputs"])
    model = build_teacher(inputs, cfg, table_device="meta")  # the tables are the file's, not drawn
    check_state_shapes(model.state_dict(), payload["state_dict"], where=str(file))
    model.load_state_dict(payload["state_dict"], assign=True)
    model.eval()
    return LoadedTeacher(model, cfg, inputs, meta, file_sha256(file), file)


def load_model_state(
    model: TeacherEnsemble, path: str | Path, cfg: TeacherConfig, inputs: TeacherInputs
) -> None:
    """Load ``model.pt`` into an existing ``model`` built from ``cfg``/``inputs``, with clear errors."""
    file = Path(path)
    payload = torch.load(file, map_location="cpu", weights_only=True)
    check_fingerprint(payload["meta"]["fingerprint"], cfg, inputs, where=str(file), keys=ARCH_KEYS)
    check_state_shapes(model.state_dict(), payload["state_dict"], where=str(file))
    model.load_state_dict(payload["state_dict"])


def write_meta(out_dir: Path, meta: dict[str, Any]) -> None:
    atomic_write_json(out_dir / META_FILE, meta)
