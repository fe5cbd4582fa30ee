"""Logits to click probabilities: the one sigmoid every stage uses (training metrics, soft labels,
export parity checks, predictors)."""

from __future__ import annotations

import numpy as np


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float64, any shape (a new array; the input is not changed).

    Capping ``-x`` at 700 avoids an overflow in ``exp`` (and its warning); it changes only logits
    below -700 (about 1e-304 instead of 0.0; as FP32 both are 0.0). Cast to FP32 where a model
    output is due.

    Example::

        sigmoid(np.array([0.0, 800.0]))  # array([0.5, 1.0])
    """
    x = np.array(logits, dtype=np.float64)  # a copy we own: the steps below run in place
    np.negative(x, out=x)
    np.minimum(x, 700.0, out=x)
    e = np.exp(x)  # out of place, as every earlier caller computed it (bit-identical results)
    e += 1.0
    np.divide(1.0, e, out=e)
    return e
