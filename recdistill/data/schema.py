"""Dataset schema: which columns are labels, keys, dense, categorical and multi-valued features.

The schema lives in ``schema.json`` beside the data files. It is the single description every
stage reads: preprocessing, teacher, students, export and the serving input contract.

Example::

    {
      "version": 1,
      "label": "click",
      "row_key": "row_id",
      "request_id": "request_id",
      "user_id": "user_id",
      "true_ctr": "true_ctr",
      "ignore": ["timestamp"],
      "features": [
        {"name": "item_price", "kind": "dense", "group": "item", "transform": "log1p"},
        {"name": "item_id", "kind": "categorical", "group": "item", "min_count": 2},
        {"name": "user_hist", "kind": "multi", "group": "user", "max_len": 20},
        {"name": "item_genres", "kind": "multi", "group": "item", "max_len": 6, "sep": "|"},
        {"name": "user_long_hist", "kind": "multi", "group": "user", "max_len": 50,
         "teacher_only": true}
      ]
    }

Feature kinds:
  * ``dense``: a float column. ``transform`` is ``log1p`` (signed, ``sign(x) * log1p(|x|)``) or
    ``identity``; standardisation is always fitted on the training split. NaN/null means missing.
  * ``categorical``: one integer id per row (strings are hashed to ids, see ``readers``).
    Either a vocabulary (``min_count``, ids seen fewer times go to the out-of-vocabulary row) or
    ``hash_buckets`` (ids hashed into a fixed number of rows). Null means missing.
  * ``multi``: a list of integer ids per row (e.g. recent items), truncated to the last
    ``max_len`` entries. ``vocab_from`` may name another id feature whose vocabulary it shares.
    ``sep`` (e.g. ``"|"``): the column may also be text, ``"5|14|17"``, split on ``sep``; an empty
    string is an empty list (see :func:`recdistill.data.raw.parse_id_lists`).

Row key: ``row_key`` names a column of unique integers that identifies a row (soft labels are
matched to rows by it). ``"row_key": null`` (or a named column the data does not have) keys rows
by their position in each split file: the ``data`` stage writes the split files into the run
directory with a column :data:`ROW_POSITION` (0, 1, 2, ... in file order), so every later stage
reads a row key column whatever the source. In memory such a schema has
``row_key == ROW_POSITION``; in ``schema.json`` it is written as ``null``.

``ignore`` lists columns of the data files that are not used (a timestamp, a raw rating): they
are allowed in the files and left out of the split files the run writes.

``group`` (``user``, ``item`` or ``context``) decides the teacher tower a feature feeds.
``teacher_only`` marks privileged features that a served student must not use.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from recdistill.errors import SchemaError
from recdistill.io_utils import atomic_write_text

SCHEMA_FILE = "schema.json"
SCHEMA_VERSION = 1

FeatureKind = Literal["dense", "categorical", "multi"]
FEATURE_KINDS: tuple[str, ...] = ("dense", "categorical", "multi")
GROUPS: tuple[str, ...] = ("user", "item", "context")
DENSE_TRANSFORMS: tuple[str, ...] = ("identity", "log1p")
# The row key column the data stage writes when the schema names none (positions in a split file).
ROW_POSITION = "_row_position"


@dataclass(frozen=True)
class FeatureSpec:
    """One model input column."""

    name: str
    kind: str
    group: str = "context"
    teacher_only: bool = False
    # dense
    transform: str = "identity"
    # categorical / multi
    min_count: int = 1
    hash_buckets: int | None = None
    max_id: int | None = None
    max_len: int = 1
    vocab_from: str | None = None
    # multi: separator of a text column ("5|14|17"); None = the column holds lists
    sep: str | None = None

    @property
    def is_id(self) -> bool:
        return self.kind in ("categorical", "multi")


@dataclass(frozen=True)
class Schema:
    """Column roles of a click log. See the module docstring for the JSON layout."""

    label: str
    features: tuple[FeatureSpec, ...]
    row_key: str = "row_id"
    request_id: str | None = "request_id"
    user_id: str | None = "user_id"
    true_ctr: str | None = None
    ignore: tuple[str, ...] = ()
    version: int = SCHEMA_VERSION
    source: str = field(default="<memory>", compare=False)

    # -- views ------------------------------------------------------------------------------
    def by_kind(self, kind: str, *, student: bool = False) -> tuple[FeatureSpec, ...]:
        """Features of one kind, in schema order; ``student=True`` drops ``teacher_only`` ones."""
        return tuple(f for f in self.features if f.kind == kind and not (student and f.teacher_only))

    @property
    def dense(self) -> tuple[FeatureSpec, ...]:
        return self.by_kind("dense")

    @property
    def categorical(self) -> tuple[FeatureSpec, ...]:
        return self.by_kind("categorical")

    @property
    def multi(self) -> tuple[FeatureSpec, ...]:
        return self.by_kind("multi")

    def feature(self, name: str) -> FeatureSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise SchemaError(f"{self.source}: no feature named {name!r}; features are {self.feature_names}")

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def keyed_by_position(self) -> bool:
        """True when rows are keyed by their position in each split file (see the module docstring)."""
        return self.row_key == ROW_POSITION

    @property
    def key_columns(self) -> list[str]:
        """Non-feature columns: row key, request id, user id (those that are set)."""
        cols = [self.row_key, self.request_id, self.user_id]
        return [c for c in cols if c is not None]

    @property
    def all_columns(self) -> list[str]:
        """Every column a labelled data file must have (true_ctr is optional), each once."""
        return list(dict.fromkeys([*self.key_columns, self.label, *self.feature_names]))

    def student_view(self) -> Schema:
        """The same schema without ``teacher_only`` features (what a served student sees)."""
        return replace(self, features=tuple(f for f in self.features if not f.teacher_only))

    def with_teacher_only(self, names: Sequence[str]) -> Schema:
        """A copy where exactly ``names`` are marked ``teacher_only``."""
        unknown = set(names) - set(self.feature_names)
        if unknown:
            raise SchemaError(f"{self.source}: teacher_only names unknown features {sorted(unknown)}")
        return replace(self, features=tuple(replace(f, teacher_only=f.name in names) for f in self.features))

    # -- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "label": self.label,
            "row_key": None if self.keyed_by_position else self.row_key,
            "request_id": self.request_id,
            "user_id": self.user_id,
            "true_ctr": self.true_ctr,
        }
        if self.ignore:
            out["ignore"] = list(self.ignore)
        out["features"] = [_feature_to_dict(f) for f in self.features]
        return out

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / SCHEMA_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<memory>") -> Schema:
        return _parse_schema(raw, source)

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        """Load ``schema.json`` (a file, or a directory that holds one)."""
        p = Path(path)
        if p.is_dir():
            p = p / SCHEMA_FILE
        if not p.exists():
            raise SchemaError(f"{p}: schema file not found (expected {SCHEMA_FILE} beside the data)")
        try:
            raw = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise SchemaError(f"{p}: not valid JSON ({e})") from e
        return _parse_schema(raw, str(p))


_FEATURE_KEYS = {
    "name",
    "kind",
    "group",
    "teacher_only",
    "transform",
    "min_count",
    "hash_buckets",
    "max_id",
    "max_len",
    "vocab_from",
    "sep",
}
_SCHEMA_KEYS = {"version", "label", "row_key", "request_id", "user_id", "true_ctr", "ignore", "features"}


def _feature_to_dict(f: FeatureSpec) -> dict[str, Any]:
    d = asdict(f)
    defaults = asdict(FeatureSpec(name=f.name, kind=f.kind))
    # keep the file short: only name, kind, group and non-default values
    return {k: v for k, v in d.items() if k in ("name", "kind", "group") or v != defaults[k]}


def _parse_schema(raw: Any, source: str) -> Schema:
    if not isinstance(raw, dict):
        raise SchemaError(f"{source}: schema must be a JSON object, got {type(raw).__name__}")
    extra = set(raw) - _SCHEMA_KEYS
    if extra:
        raise SchemaError(f"{source}: unknown schema keys {sorted(extra)}; allowed: {sorted(_SCHEMA_KEYS)}")
    if "label" not in raw or "features" not in raw:
        raise SchemaError(f"{source}: schema needs 'label' and 'features'")
    version = raw.get("version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise SchemaError(f"{source}: schema version {version} is not supported (expected {SCHEMA_VERSION})")
    if not isinstance(raw["features"], list) or not raw["features"]:
        raise SchemaError(f"{source}: 'features' must be a non-empty list")
    features = tuple(_parse_feature(i, f, source) for i, f in enumerate(raw["features"]))
    ignore = raw.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(c, str) and c for c in ignore):
        raise SchemaError(f"{source}: 'ignore' must be a list of column names, got {ignore!r}")
    row_key = raw.get("row_key", "row_id")
    schema = Schema(
        label=_str(raw, "label", source),
        features=features,
        row_key=ROW_POSITION if row_key is None else _str(raw, "row_key", source, default="row_id"),
        ignore=tuple(ignore),
        request_id=_opt_str(raw, "request_id", source, default="request_id"),
        user_id=_opt_str(raw, "user_id", source, default="user_id"),
        true_ctr=_opt_str(raw, "true_ctr", source, default=None),
        version=version,
        source=source,
    )
    _check_schema(schema)
    return schema


def _parse_feature(i: int, raw: Any, source: str) -> FeatureSpec:
    where = f"{source}: features[{i}]"
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: must be an object")
    extra = set(raw) - _FEATURE_KEYS
    if extra:
        raise SchemaError(f"{where}: unknown keys {sorted(extra)}; allowed: {sorted(_FEATURE_KEYS)}")
    if "name" not in raw or "kind" not in raw:
        raise SchemaError(f"{where}: every feature needs 'name' and 'kind'")
    name = raw["name"]
    where = f"{source}: feature {name!r}"
    kind = raw["kind"]
    if kind not in FEATURE_KINDS:
        raise SchemaError(f"{where}: kind {kind!r} is not one of {list(FEATURE_KINDS)}")
    group = raw.get("group", "context")
    if group not in GROUPS:
        raise SchemaError(f"{where}: group {group!r} is not one of {list(GROUPS)}")
    transform = raw.get("transform", "identity")
    if transform not in DENSE_TRANSFORMS:
        raise SchemaError(f"{where}: transform {transform!r} is not one of {list(DENSE_TRANSFORMS)}")
    if kind != "dense" and "transform" in raw:
        raise SchemaError(f"{where}: 'transform' only applies to dense features")
    if kind == "dense" and any(k in raw for k in ("min_count", "hash_buckets", "max_len", "vocab_from")):
        raise SchemaError(f"{where}: vocabulary keys do not apply to a dense feature")
    if kind != "multi" and "max_len" in raw:
        raise SchemaError(f"{where}: 'max_len' only applies to multi-valued features")
    sep = raw.get("sep")
    if kind != "multi" and "sep" in raw:
        raise SchemaError(f"{where}: 'sep' only applies to multi-valued features")
    if sep is not None and (not isinstance(sep, str) or not sep):
        raise SchemaError(f"{where}: 'sep' must be a non-empty string such as \"|\", got {sep!r}")
    spec = FeatureSpec(
        name=name,
        kind=kind,
        group=group,
        teacher_only=_bool(raw, "teacher_only", where),
        transform=transform,
        min_count=_int(raw, "min_count", where, default=1, minimum=1),
        hash_buckets=_opt_int(raw, "hash_buckets", where, minimum=1),
        max_id=_opt_int(raw, "max_id", where, minimum=0),
        max_len=_int(raw, "max_len", where, default=1, minimum=1),
        vocab_from=raw.get("vocab_from"),
        sep=sep,
    )
    if spec.hash_buckets is not None and "min_count" in raw:
        raise SchemaError(f"{where}: set either 'min_count' (vocabulary) or 'hash_buckets', not both")
    return spec


def _check_schema(schema: Schema) -> None:
    # request_id / user_id may double as categorical features (a user id is both a key and an
    # input); every other column has exactly one role.
    names = [schema.row_key, schema.label, *schema.feature_names]
    if schema.true_ctr is not None:
        names.append(schema.true_ctr)
    roles = [schema.request_id, schema.user_id]
    names += [c for c in schema.ignore if c not in roles]  # a role column listed in ignore: caught below
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise SchemaError(f"{schema.source}: column {n!r} is named twice in the schema")
        seen.add(n)
    for c in roles:
        if c is not None and c in schema.ignore:
            raise SchemaError(
                f"{schema.source}: column {c!r} is named twice in the schema (a key and in 'ignore')"
            )
    if ROW_POSITION in [schema.label, *schema.feature_names, *schema.ignore, *roles]:
        raise SchemaError(
            f"{schema.source}: {ROW_POSITION!r} is the row key recdistill writes itself; rename that column"
        )
    for role in ("request_id", "user_id"):
        col = getattr(schema, role)
        if col is not None and col in (schema.row_key, schema.label, schema.true_ctr):
            raise SchemaError(f"{schema.source}: {role} column {col!r} already has another role")
        if col is not None and col in schema.feature_names and schema.feature(col).kind != "categorical":
            raise SchemaError(
                f"{schema.source}: {role} column {col!r} doubles as a feature, so it must be categorical"
            )
    ids = {f.name: f for f in schema.features if f.is_id}
    for f in schema.features:
        if f.vocab_from is None:
            continue
        src = ids.get(f.vocab_from)
        if src is None:
            raise SchemaError(
                f"{schema.source}: feature {f.name!r} has vocab_from={f.vocab_from!r}, which is not an id feature"
            )
        if src.vocab_from is not None:
            raise SchemaError(
                f"{schema.source}: feature {f.name!r}: vocab_from must name a feature that owns its vocabulary"
            )
    if not any(not f.teacher_only for f in schema.features):
        raise SchemaError(f"{schema.source}: every feature is teacher_only; a student would have no input")


def _str(raw: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    v = raw.get(key, default)
    if not isinstance(v, str) or not v:
        raise SchemaError(f"{where}: '{key}' must be a non-empty string, got {v!r}")
    return v


def _opt_str(raw: dict[str, Any], key: str, where: str, default: str | None) -> str | None:
    v = raw.get(key, default)
    if v is not None and (not isinstance(v, str) or not v):
        raise SchemaError(f"{where}: '{key}' must be a column name or null, got {v!r}")
    return v


def _bool(raw: dict[str, Any], key: str, where: str) -> bool:
    v = raw.get(key, False)
    if not isinstance(v, bool):
        raise SchemaError(f"{where}: '{key}' must be true or false, got {v!r}")
    return v


def _int(raw: dict[str, Any], key: str, where: str, default: int, minimum: int) -> int:
    v = raw.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise SchemaError(f"{where}: '{key}' must be an integer >= {minimum}, got {v!r}")
    return v


def _opt_int(raw: dict[str, Any], key: str, where: str, minimum: int) -> int | None:
    if raw.get(key) is None:
        return None
    return _int(raw, key, where, default=0, minimum=minimum)
