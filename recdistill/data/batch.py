"""The tensors every model sees: raw request tensors (the serving contract) and model-ready ones.

Raw request tensors — the one input contract of every served model (teacher and students),
one row per candidate, features in schema order within each kind:

  ``dense``  FP32  ``[B, n_dense]``           raw values, NaN = missing
  ``ids``    INT64 ``[B, n_categorical]``      raw ids, -1 = missing
  ``multi``  INT64 ``[B, n_multi, max_len]``   raw ids, left-aligned, padded with -1

``max_len`` is the largest ``max_len`` over the schema's multi-valued features; a feature with a
smaller ``max_len`` is truncated to its own length (keeping the last, most recent entries) and
padded. Students receive the full contract too and ignore ``teacher_only`` columns, so the
ranking endpoint can switch between models without the caller noticing.

Model tensors — what :class:`recdistill.data.preprocess.Preprocessor` produces:

  ``dense``  FP32  ``[B, dense_dim]``          standardised values, then missing indicators
  ``ids``    INT64 ``[B, n_categorical]``      embedding rows: 0 missing, 1 out-of-vocabulary, 2.. ids
  ``multi``  INT64 ``[B, n_multi, max_len]``   embedding rows: 0 padding, 1 out-of-vocabulary, 2.. ids
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recdistill.errors import DataError

MISSING_ID = -1
PAD_ROW = 0  # embedding row for a missing id / a padding slot
OOV_ROW = 1  # embedding row for an id not in the vocabulary
FIRST_ID_ROW = 2

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class RawBatch:
    """Raw request tensors (see module docstring): what a client sends."""

    dense: F32
    ids: I64
    multi: I64

    def __len__(self) -> int:
        return int(self.dense.shape[0])

    def slice(self, start: int, stop: int) -> RawBatch:
        return RawBatch(self.dense[start:stop], self.ids[start:stop], self.multi[start:stop])

    def ids_well_formed(self) -> bool:
        """``ids`` and ``multi`` are INT64 with every id >= ``MISSING_ID``: what the one-gather
        transforms (preprocessing, GBDT featurizing) take; anything else goes through their
        per-feature reference paths, which raise the errors that name the bad values."""
        return all(
            x.dtype == np.int64 and (x.size == 0 or int(x.min()) >= MISSING_ID)
            for x in (self.ids, self.multi)
        )


@dataclass(frozen=True)
class ModelBatch:
    """Preprocessed tensors (see module docstring): what a model's ``forward`` receives."""

    dense: F32
    ids: I64
    multi: I64

    def __len__(self) -> int:
        return int(self.dense.shape[0])

    def slice(self, start: int, stop: int) -> ModelBatch:
        return ModelBatch(self.dense[start:stop], self.ids[start:stop], self.multi[start:stop])

    def take(self, index: npt.NDArray[np.int64]) -> ModelBatch:
        return ModelBatch(self.dense[index], self.ids[index], self.multi[index])


def check_model_batch(
    batch: ModelBatch,
    *,
    dense_dim: int,
    n_categorical: int,
    n_multi: int,
    max_len: int,
    where: str,
    reader: str,
) -> None:
    """Raise :class:`DataError` unless ``batch`` has the full contract widths a model reads.

    ``dense [B, dense_dim]``, ``ids [B, n_categorical]``, ``multi [B, n_multi, max_len]``
    (teacher-only columns included); ``reader`` names the model in the message, ``where`` the data.

    Example::

        check_model_batch(mb, dense_dim=9, n_categorical=4, n_multi=2, max_len=50,
                          where="valid split", reader="the teacher")
    """
    n = len(batch)
    expected = {"dense": (n, dense_dim), "ids": (n, n_categorical), "multi": (n, n_multi, max_len)}
    for name, shape in expected.items():
        got = tuple(getattr(batch, name).shape)
        if got != shape:
            raise DataError(
                f"{where}: model tensor {name!r} has shape {list(got)}, {reader} expects {list(shape)}; "
                "was it preprocessed with another preprocessor?"
            )


@dataclass(frozen=True)
class Targets:
    """Per-row targets and keys that travel beside a batch (not model inputs).

    ``label`` is NaN for unlabelled rows (transfer set). ``request_id``/``user_id`` are -1 when
    the schema has no such column. ``true_ctr`` is NaN when unknown.
    """

    row_key: I64
    label: F32
    request_id: I64
    user_id: I64
    true_ctr: F32

    def __len__(self) -> int:
        return int(self.row_key.shape[0])

    def slice(self, start: int, stop: int) -> Targets:
        return Targets(
            self.row_key[start:stop],
            self.label[start:stop],
            self.request_id[start:stop],
            self.user_id[start:stop],
            self.true_ctr[start:stop],
        )

    def take(self, index: npt.NDArray[np.int64]) -> Targets:
        return Targets(
            self.row_key[index],
            self.label[index],
            self.request_id[index],
            self.user_id[index],
            self.true_ctr[index],
        )
