"""The input contract every served model shares: raw request tensors, derived from the schema.

Teacher and students take the same raw tensors, one row per candidate, and return one click
probability per row (names as in ONNX files and Triton configs)::

  input  ``dense``  FP32   [B, n_dense]            NaN = missing
  input  ``ids``    INT64  [B, n_ids]              -1 = missing
  input  ``multi``  INT64  [B, n_multi, max_len]   left-aligned, padded with -1
  output ``prob``   FP32   [B, 1]                  click probability

:class:`InputContract` holds the true widths (0 allowed: a schema may have no dense, no
categorical or no multi-valued feature); how a zero width travels over Triton's wire is the
serving layer's business (``serving/contract.py``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from recdistill.data.schema import Schema
from recdistill.errors import SchemaError

DENSE = "dense"
IDS = "ids"
MULTI = "multi"
PROB = "prob"
INPUT_NAMES: tuple[str, ...] = (DENSE, IDS, MULTI)


@dataclass(frozen=True)
class InputContract:
    """True feature widths of the raw request tensors (0 allowed; see the module docstring)."""

    n_dense: int
    n_ids: int
    n_multi: int
    max_len: int

    def __post_init__(self) -> None:
        for name in ("n_dense", "n_ids", "n_multi", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SchemaError(f"input contract: {name} must be an integer >= 0, got {value!r}")
        if self.n_multi > 0 and self.max_len < 1:
            raise SchemaError(
                f"input contract: n_multi={self.n_multi} needs max_len >= 1, got {self.max_len}"
            )

    @classmethod
    def from_schema(cls, schema: Schema) -> InputContract:
        """The contract of ``schema``: every feature, ``teacher_only`` included (students ignore those).

        ``max_len`` is :func:`recdistill.data.raw.max_multi_len` (1 without multi features), so the
        tensors the server hands a predictor have the shapes ``raw_batch_from_frame`` produces.
        """
        from recdistill.data.raw import max_multi_len  # polars: only where a schema is at hand

        return cls(
            n_dense=len(schema.dense),
            n_ids=len(schema.categorical),
            n_multi=len(schema.multi),
            max_len=max_multi_len(schema),
        )

    # -- (de)serialisation (e.g. into a model config) ------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, where: str) -> InputContract:
        try:
            raw: Any = json.loads(text)
        except json.JSONDecodeError as e:
            raise SchemaError(f"{where}: input contract is not valid JSON ({e})") from e
        keys = {"n_dense", "n_ids", "n_multi", "max_len"}
        if not isinstance(raw, dict) or set(raw) != keys:
            raise SchemaError(f"{where}: input contract must be an object with keys {sorted(keys)}")
        try:
            return cls(**raw)
        except SchemaError as e:
            raise SchemaError(f"{where}: {e}") from e
