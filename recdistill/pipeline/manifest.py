"""``manifest.json``: what each stage of a run consumed and produced.

For every completed stage the manifest keeps the fingerprint of its inputs (content hashes of
input files and the config section it reads), its outputs, metrics, time taken and versions. A
stage whose fingerprint is unchanged and whose outputs still exist is skipped. The manifest is
rewritten atomically after each stage, so a crash leaves completed stages recorded.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recdistill import __version__
from recdistill.errors import ArtefactError
from recdistill.io_utils import atomic_write_json, read_json

MANIFEST_FILE = "manifest.json"


def fingerprint(inputs: dict[str, str]) -> str:
    """One hash over named input hashes (order-independent)."""
    blob = json.dumps(sorted(inputs.items())).encode()
    return hashlib.sha256(blob).hexdigest()


def versions() -> dict[str, str]:
    out = {"recdistill": __version__, "python": platform.python_version()}
    for mod in ("torch", "torchrec", "polars", "lightgbm", "onnxruntime"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # an optional stack piece not installed: record its absence
            out[mod] = "absent"
    return out


@dataclass
class StageRecord:
    fingerprint: str
    inputs: dict[str, str]
    outputs: list[str]
    seconds: float
    finished_at: str
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    path: Path
    stages: dict[str, StageRecord] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: str | Path) -> Manifest:
        path = Path(run_dir) / MANIFEST_FILE
        if not path.exists():
            return cls(path=path)
        try:
            raw = read_json(path)
            stages = {k: StageRecord(**v) for k, v in raw.get("stages", {}).items()}
        except (json.JSONDecodeError, TypeError) as e:
            raise ArtefactError(f"{path}: unreadable manifest ({e}); delete it to rerun every stage") from e
        return cls(path=path, stages=stages, config=raw.get("config", {}))

    def is_current(self, stage: str, fp: str, outputs: list[str]) -> bool:
        """Same inputs as last time and every output (as the stage names them now) still there."""
        rec = self.stages.get(stage)
        if rec is None or rec.fingerprint != fp:
            return False
        root = self.path.parent
        return all((root / o).exists() for o in outputs)

    def record(self, stage: str, rec: StageRecord) -> None:
        self.stages[stage] = rec
        self.save()

    def forget(self, stage: str) -> None:
        if self.stages.pop(stage, None) is not None:
            self.save()

    def save(self) -> None:
        atomic_write_json(
            self.path,
            {
                "recdistill": __version__,
                "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "versions": versions(),
                "config": self.config,
                "stages": {k: vars(v) for k, v in self.stages.items()},
            },
        )
