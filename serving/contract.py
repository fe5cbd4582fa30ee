"""The serving input contract as Triton sees it: tensor names, dtypes and wire widths.

Every served model (teacher and students) takes the raw request tensors of
:mod:`recdistill.data.batch` and returns one click probability per row::

  input  ``dense``  TYPE_FP32   dims [n_dense]            (+ batch dim)  NaN = missing
  input  ``ids``    TYPE_INT64  dims [n_ids]              (+ batch dim)  -1 = missing
  input  ``multi``  TYPE_INT64  dims [n_multi, max_len]   (+ batch dim)  padded with -1
  output ``prob``   TYPE_FP32   dims [1]                  (+ batch dim)  click probability

Zero-width features. A Triton tensor dimension cannot be 0, yet a schema may have no dense,
no categorical or no multi-valued features. Such a tensor travels with a *dummy width-1
column* (``dims [1]``, or ``[1, 1]`` for ``multi``): :class:`~serving.client.RankingClient`
fills it with the missing marker (NaN / -1), the server checks its dtype and shape like any
other input and then drops it unread, so a predictor always receives the true widths
(``[B, 0]``, ``[B, 0, max_len]``). The true widths travel in each model's ``config.pbtxt`` as the
``recdistill_contract`` parameter, which is how the backend tells "one feature" from "dummy".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from recdistill.data.batch import MISSING_ID, RawBatch
from recdistill.data.schema import Schema
from recdistill.errors import ServingError

DENSE = "dense"
IDS = "ids"
MULTI = "multi"
PROB = "prob"
INPUT_NAMES: tuple[str, ...] = (DENSE, IDS, MULTI)
CONTRACT_PARAMETER = "recdistill_contract"  # config.pbtxt parameter holding the true widths


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, Triton dtype (``TYPE_FP32``) and dims without the batch dim."""

    name: str
    dtype: str
    dims: tuple[int, ...]


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
                raise ServingError(f"input contract: {name} must be an integer >= 0, got {value!r}")
        if self.n_multi > 0 and self.max_len < 1:
            raise ServingError(
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

    # -- wire shapes (what Triton sees) ----------------------------------------------------------
    @property
    def wire_dims(self) -> dict[str, tuple[int, ...]]:
        """Dims per input without the batch dim; a zero width becomes the dummy width 1."""
        return {
            DENSE: (max(self.n_dense, 1),),
            IDS: (max(self.n_ids, 1),),
            MULTI: (max(self.n_multi, 1), max(self.max_len, 1)),
        }

    @property
    def true_dims(self) -> dict[str, tuple[int, ...]]:
        return {DENSE: (self.n_dense,), IDS: (self.n_ids,), MULTI: (self.n_multi, self.max_len)}

    def inputs(self) -> tuple[TensorSpec, ...]:
        dims = self.wire_dims
        return (
            TensorSpec(DENSE, "TYPE_FP32", dims[DENSE]),
            TensorSpec(IDS, "TYPE_INT64", dims[IDS]),
            TensorSpec(MULTI, "TYPE_INT64", dims[MULTI]),
        )

    @staticmethod
    def outputs() -> tuple[TensorSpec, ...]:
        return (TensorSpec(PROB, "TYPE_FP32", (1,)),)

    # -- (de)serialisation into config.pbtxt ----------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, where: str) -> InputContract:
        try:
            raw: Any = json.loads(text)
        except json.JSONDecodeError as e:
            raise ServingError(f"{where}: parameter {CONTRACT_PARAMETER!r} is not valid JSON ({e})") from e
        keys = {"n_dense", "n_ids", "n_multi", "max_len"}
        if not isinstance(raw, dict) or set(raw) != keys:
            raise ServingError(
                f"{where}: parameter {CONTRACT_PARAMETER!r} must be an object with keys {sorted(keys)}"
            )
        try:
            return cls(**raw)
        except ServingError as e:
            raise ServingError(f"{where}: {e}") from e


def contract_io(
    n_dense: int, n_ids: int, n_multi: int, max_len: int
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """``(inputs, outputs)`` of the standard contract with these true widths (wire widths >= 1)."""
    contract = InputContract(n_dense=n_dense, n_ids=n_ids, n_multi=n_multi, max_len=max_len)
    return contract.inputs(), contract.outputs()


def to_wire(raw: RawBatch) -> dict[str, np.ndarray]:
    """Request tensors for ``raw``: contiguous arrays of the contract dtypes, zero widths padded.

    ``dense`` ``[B, max(n_dense, 1)]`` FP32, ``ids`` ``[B, max(n_ids, 1)]`` INT64,
    ``multi`` ``[B, max(n_multi, 1), max(max_len, 1)]`` INT64.
    """
    b = len(raw)
    dense = np.ascontiguousarray(raw.dense, dtype=np.float32)
    ids = np.ascontiguousarray(raw.ids, dtype=np.int64)
    multi = np.ascontiguousarray(raw.multi, dtype=np.int64)
    if dense.ndim == 2 and dense.shape[1] == 0:
        dense = np.full((b, 1), np.nan, dtype=np.float32)
    if ids.ndim == 2 and ids.shape[1] == 0:
        ids = np.full((b, 1), MISSING_ID, dtype=np.int64)
    if multi.ndim == 3 and multi.shape[1] == 0:
        multi = np.full((b, 1, max(multi.shape[2], 1)), MISSING_ID, dtype=np.int64)
    return {DENSE: dense, IDS: ids, MULTI: multi}
