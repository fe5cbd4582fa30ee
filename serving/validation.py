"""Request validation, run by the Python backend before any kernel sees the data.

Rules (every message names the tensor, the count of offending values and the first example):

* ``dense`` FP32 ``[B, n_dense]``, ``ids`` INT64 ``[B, n_ids]``, ``multi`` INT64
  ``[B, n_multi, max_len]`` with the contract's wire widths (a zero width travels as a dummy
  width-1 column that is dropped here, unread; see :mod:`serving.contract`).
* the batch dimension agrees across the three tensors and is at least 1 (an empty batch is an error).
* ``dense``: NaN means *missing* and is accepted (preprocessing imputes it); +/-inf is rejected.
* ``ids``/``multi``: ``-1`` means missing / padding; any id below ``-1`` is rejected. There is no
  upper bound: raw ids are open-ended and unseen ones map to the out-of-vocabulary row.
"""

from __future__ import annotations

import numpy as np

from recdistill.data.batch import F32, MISSING_ID, RawBatch
from recdistill.data.contract import DENSE, IDS, MULTI, InputContract
from recdistill.errors import ServingError
from serving.contract import wire_dims

_EXPECTED = {
    DENSE: (np.dtype(np.float32), "FP32", 2),
    IDS: (np.dtype(np.int64), "INT64", 2),
    MULTI: (np.dtype(np.int64), "INT64", 3),
}


class InvalidRequestError(ServingError):
    """A request's tensors break the input contract; the message says which tensor and how."""


def validate_request(
    dense: np.ndarray | None,
    ids: np.ndarray | None,
    multi: np.ndarray | None,
    contract: InputContract,
    *,
    max_batch_size: int | None = None,
) -> RawBatch:
    """Check one request's wire tensors and return them as a :class:`RawBatch` with true widths.

    Raises :class:`InvalidRequestError` naming the tensor and the problem.
    """
    tensors = {DENSE: dense, IDS: ids, MULTI: multi}
    wire = wire_dims(contract)
    for name, arr in tensors.items():
        dtype, dtype_name, rank = _EXPECTED[name]
        if arr is None:
            raise InvalidRequestError(f"input {name!r} is missing; a request needs {list(tensors)}")
        if arr.dtype != dtype:
            raise InvalidRequestError(f"input {name!r} has dtype {arr.dtype}, expected {dtype_name}")
        if arr.ndim != rank:
            raise InvalidRequestError(
                f"input {name!r} has shape {list(arr.shape)} (rank {arr.ndim}), expected rank {rank}: "
                f"[B, {', '.join(map(str, wire[name]))}]"
            )
        if tuple(arr.shape[1:]) != wire[name]:
            raise InvalidRequestError(
                f"input {name!r} has shape {list(arr.shape)}, expected [B, {', '.join(map(str, wire[name]))}]"
            )
    assert dense is not None and ids is not None and multi is not None  # checked above
    sizes = {name: int(arr.shape[0]) for name, arr in tensors.items() if arr is not None}
    if len(set(sizes.values())) != 1:
        raise InvalidRequestError(f"inputs disagree on the batch size: {sizes}")
    b = sizes[DENSE]
    if b == 0:
        raise InvalidRequestError("empty batch: the request has 0 rows; send at least one candidate")
    if max_batch_size is not None and b > max_batch_size:
        raise InvalidRequestError(f"batch of {b} rows exceeds max_batch_size {max_batch_size}")

    raw = RawBatch(
        dense=dense[:, : contract.n_dense],
        ids=ids[:, : contract.n_ids],
        multi=multi[:, : contract.n_multi, : contract.max_len],
    )
    inf = np.isinf(raw.dense)
    if inf.any():
        row, col = (int(v) for v in np.argwhere(inf)[0])
        raise InvalidRequestError(
            f"input 'dense' has {int(inf.sum())} infinite value(s) (first {raw.dense[row, col]} at row {row}, "
            f"column {col}); NaN means missing and is allowed, inf is not"
        )
    for name, arr in ((IDS, raw.ids), (MULTI, raw.multi)):
        bad = arr < MISSING_ID
        if bad.any():
            first = tuple(int(v) for v in np.argwhere(bad)[0])
            raise InvalidRequestError(
                f"input {name!r} has {int(bad.sum())} id(s) below {MISSING_ID} (first {int(arr[first])} at "
                f"index {list(first)}); ids are >= 0, and {MISSING_ID} means missing"
            )
    return raw


def check_predictions(prob: np.ndarray, batch_size: int, *, source: str) -> F32:
    """A predictor's output as FP32 ``[B]``; raises :class:`ServingError` on a wrong shape or value."""
    out = np.asarray(prob)
    if out.shape not in ((batch_size,), (batch_size, 1)):
        raise ServingError(f"{source} returned shape {list(out.shape)}, expected [{batch_size}]")
    out = out.reshape(batch_size).astype(np.float32, copy=False)
    bad = ~((out >= 0.0) & (out <= 1.0))  # NaN is bad too
    if bad.any():
        i = int(np.argmax(bad))
        raise ServingError(
            f"{source} returned {int(bad.sum())} value(s) outside [0, 1] (first {out[i]} at row {i}); "
            "a predictor returns click probabilities"
        )
    return out
