"""Where every artefact of a run lives (``runs/<name>/...``; the README lists them)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recdistill.config import RunConfig, to_mapping
from recdistill.data.readers import criteo_schema
from recdistill.data.schema import Schema
from recdistill.data.splits import find_split
from recdistill.errors import ConfigError
from recdistill.io_utils import tree_sha256


@dataclass(frozen=True)
class RunContext:
    cfg: RunConfig
    config_path: str = "<defaults>"

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run_dir)

    # -- artefact directories --------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def preprocess_dir(self) -> Path:
        return self.run_dir / "preprocess"

    @property
    def teacher_dir(self) -> Path:
        return self.run_dir / "teacher"

    @property
    def fold_teachers_dir(self) -> Path:
        return self.run_dir / "fold_teachers"

    @property
    def soft_labels_dir(self) -> Path:
        return self.run_dir / "soft_labels"

    @property
    def students_dir(self) -> Path:
        return self.run_dir / "students"

    @property
    def export_dir(self) -> Path:
        return self.run_dir / "export"

    @property
    def repository_dir(self) -> Path:
        return self.run_dir / "model_repository"

    @property
    def loadtest_dir(self) -> Path:
        return self.run_dir / "loadtest"

    # -- data ------------------------------------------------------------------------------------
    def split_path(self, split: str) -> Path | None:
        """The file of one split: generated into ``data/`` or the user's configured file."""
        d = self.cfg.data
        if d.source != "files":  # generated or built into data/
            return find_split(self.data_dir, split)
        configured = getattr(d, split)
        return Path(configured) if configured else None

    def student_dir(self, name: str) -> Path:
        return self.students_dir / name

    def version_dir(self, model: str) -> Path:
        """The exported version folder of one model of the run (what evaluation and servers load)."""
        return self.export_dir / model

    def schema(self) -> Schema:
        d = self.cfg.data
        if d.source == "files" and d.format == "criteo" and d.schema is None:
            return criteo_schema()
        if d.source == "files":
            if d.schema is None:
                raise ConfigError(f"{self.config_path}: data.schema is required for data.source=files")
            return Schema.load(d.schema)
        if d.source == "movielens100k" and not (self.data_dir / "schema.json").exists():
            from recdistill.datasets.movielens import movielens_schema

            return movielens_schema(d.dataset.scenario)  # before the data stage has run
        return Schema.load(self.data_dir)

    # -- fingerprints ----------------------------------------------------------------------------
    def hash_path(self, path: str | Path | None) -> str:
        if path is None:
            return "absent"
        p = Path(path)
        return tree_sha256(p) if p.exists() else "absent"

    @staticmethod
    def hash_config(section: Any) -> str:
        blob = json.dumps(to_mapping(section), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()
