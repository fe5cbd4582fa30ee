"""The input contract (:mod:`recdistill.data.contract`) as Triton sees it: dtypes and wire widths.

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

from dataclasses import dataclass

import numpy as np

from recdistill.data.batch import MISSING_ID, RawBatch
from recdistill.data.contract import DENSE, IDS, MULTI, PROB, InputContract

CONTRACT_PARAMETER = "recdistill_contract"  # config.pbtxt parameter holding the true widths


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, Triton dtype (``TYPE_FP32``) and dims without the batch dim."""

    name: str
    dtype: str
    dims: tuple[int, ...]


def wire_dims(contract: InputContract) -> dict[str, tuple[int, ...]]:
    """Dims per input without the batch dim; a zero width becomes the dummy width 1."""
    return {
        DENSE: (max(contract.n_dense, 1),),
        IDS: (max(contract.n_ids, 1),),
        MULTI: (max(contract.n_multi, 1), max(contract.max_len, 1)),
    }


def input_specs(contract: InputContract) -> tuple[TensorSpec, ...]:
    """The three inputs with their Triton dtypes and wire dims."""
    dims = wire_dims(contract)
    return (
        TensorSpec(DENSE, "TYPE_FP32", dims[DENSE]),
        TensorSpec(IDS, "TYPE_INT64", dims[IDS]),
        TensorSpec(MULTI, "TYPE_INT64", dims[MULTI]),
    )


def output_specs() -> tuple[TensorSpec, ...]:
    return (TensorSpec(PROB, "TYPE_FP32", (1,)),)


def contract_io(
    n_dense: int, n_ids: int, n_multi: int, max_len: int
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """``(inputs, outputs)`` of the standard contract with these true widths (wire widths >= 1)."""
    contract = InputContract(n_dense=n_dense, n_ids=n_ids, n_multi=n_multi, max_len=max_len)
    return input_specs(contract), output_specs()


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
