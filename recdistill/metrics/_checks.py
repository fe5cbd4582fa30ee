"""Input checks shared by the metric functions: 1-D arrays, equal lengths, valid labels and probabilities.

Every error names the argument, says what was wrong and where (first offending row).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recdistill.errors import DataError

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class MetricInputError(DataError, ValueError):
    """A metric received arrays of the wrong shape, length or value range.

    It is a :class:`~recdistill.errors.DataError` (printed without a traceback by the CLI) and a
    :class:`ValueError` (what numerical callers expect).
    """


def as_1d(name: str, values: npt.ArrayLike) -> npt.NDArray[np.generic]:
    """``values`` as a 1-D numpy array, or :class:`MetricInputError` naming ``name``."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise MetricInputError(f"{name}: expected a 1-D array, got shape {array.shape}")
    return array


def check_lengths(**arrays: npt.NDArray[np.generic] | None) -> int:
    """Return the common length of the given (non-``None``) arrays; raise naming the first mismatch."""
    given = [(name, array) for name, array in arrays.items() if array is not None]
    first_name, first = given[0]
    for name, array in given[1:]:
        if len(array) != len(first):
            raise MetricInputError(
                f"{name} has {len(array)} rows but {first_name} has {len(first)}: "
                "all arrays must describe the same rows"
            )
    return len(first)


def _first_bad(name: str, bad: npt.NDArray[np.bool_], values: npt.NDArray[np.generic], what: str) -> None:
    if bad.any():
        row = int(np.argmax(bad))
        raise MetricInputError(
            f"{name}: {int(bad.sum())} value(s) {what} (first at row {row}: {values[row]!r})"
        )


def as_scores(name: str, values: npt.ArrayLike) -> F64:
    """Ranking scores (logits or probabilities) as float64; NaN is rejected, ±inf allowed."""
    array = as_1d(name, values).astype(np.float64, copy=False)
    _first_bad(name, np.isnan(array), array, "are NaN; scores must be comparable")
    return array


def as_probs(name: str, values: npt.ArrayLike) -> F64:
    """Probabilities as float64; NaN and values outside [0, 1] are rejected."""
    array = as_1d(name, values).astype(np.float64, copy=False)
    _first_bad(name, np.isnan(array), array, "are NaN; expected probabilities in [0, 1]")
    _first_bad(
        name, (array < 0.0) | (array > 1.0), array, "are outside [0, 1]; pass probabilities, not logits"
    )
    return array


def as_binary_labels(name: str, values: npt.ArrayLike) -> F64:
    """Click labels (bool, int or float 0/1) as float64; NaN and other values are rejected."""
    array = as_1d(name, values).astype(np.float64, copy=False)
    _first_bad(
        name, np.isnan(array), array, "are NaN; drop unlabelled rows first (ranking_metrics does this)"
    )
    _first_bad(name, (array != 0.0) & (array != 1.0), array, "are not 0 or 1; expected binary labels")
    return array


def as_soft_labels(name: str, values: npt.ArrayLike) -> F64:
    """Targets in [0, 1] (hard clicks or a teacher's probabilities) as float64."""
    array = as_1d(name, values).astype(np.float64, copy=False)
    _first_bad(
        name, np.isnan(array), array, "are NaN; drop unlabelled rows first (ranking_metrics does this)"
    )
    _first_bad(name, (array < 0.0) | (array > 1.0), array, "are outside [0, 1]; expected targets in [0, 1]")
    return array


def as_ids(name: str, values: npt.ArrayLike) -> npt.NDArray[np.generic]:
    """Group ids (user or request): any sortable 1-D array; float ids must not be NaN."""
    array = as_1d(name, values)
    if array.dtype.kind == "f":
        _first_bad(name, np.isnan(array), array, "are NaN; every row needs a group id")
    return array
