"""Where every artefact of a run lives (``runs/<name>/...``; the README lists them)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recdistill.config import RunConfig, to_mapping
from recdistill.data.readers import Format, criteo_schema, detect_format, resolve_source
from recdistill.data.schema import Schema
from recdistill.data.splits import SPLITS, find_split
from recdistill.data.write_splits import Source
from recdistill.errors import ConfigError, DataError
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
        """The file of one split in the run's ``data/`` (every source writes its splits there)."""
        return find_split(self.data_dir, split)

    def sources(self) -> list[Source]:
        """``data.source: files``: the user's files, as the ``data`` stage reads them: one log
        (``data.path``, split for you) or one source per split, plus the transfer set if any."""
        d = self.cfg.data
        keys = ["path", "transfer"] if d.path is not None else list(SPLITS)
        out = []
        for key in keys:
            value = getattr(d, key)
            if value is None:
                continue
            try:
                paths = resolve_source(value)
            except DataError as e:
                raise ConfigError(f"{self.config_path}: data.{key}: {e}") from e
            out.append(Source("log" if key == "path" else key, tuple(paths)))
        return out

    def source_format(self) -> Format:
        """``data.format``, or the format of the first source file's name."""
        d = self.cfg.data
        if d.format is not None:
            return d.format
        return detect_format(self.sources()[0].paths[0])

    def student_dir(self, name: str) -> Path:
        return self.students_dir / name

    def version_dir(self, model: str) -> Path:
        """The exported version folder of one model of the run (what evaluation and servers load)."""
        return self.export_dir / model

    def schema(self) -> Schema:
        """The run's schema: ``data/schema.json`` once the ``data`` stage wrote it (with the row key
        the split files have), else :meth:`source_schema`."""
        if (self.data_dir / "schema.json").exists() or self.cfg.data.source == "generate":
            return Schema.load(self.data_dir)
        return self.source_schema()

    def source_schema(self) -> Schema:
        """The schema the ``data`` stage starts from: the user's ``schema.json``, Criteo's built-in
        one, or MovieLens's; for generated data the one the generator wrote."""
        d = self.cfg.data
        if d.source == "files":
            if d.schema is not None:
                return Schema.load(d.schema)
            if self.source_format() == "criteo":
                return criteo_schema()
            raise ConfigError(f"{self.config_path}: data.schema is required for data.source=files")
        if d.source == "movielens100k":
            from recdistill.datasets.movielens import movielens_schema

            return movielens_schema(d.dataset.scenario)
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
