"""The teacher's training data path: row groups -> TorchRec ``Batch`` (dense, KJT, labels), prefetched.

Each batch's ``KeyedJaggedTensor`` is built once, here, from the padded model tensors
(:func:`recdistill.models.teacher.teacher_batch`), never inside the model's ``forward``. With
``depth > 0`` a background thread builds the next ``depth`` batches while the current step
computes (NumPy gathers and the KJT's values/lengths; on GPU also the pinned-memory copy the
pipeline's host-to-device transfer needs), so the train pipeline finds its next batch ready.
``depth = 0`` builds each batch when the pipeline asks for it.

Example::

    with BatchStream(lambda rows: teacher_batch(inputs, split.take(rows), labels[rows]), groups) as s:
        for batch in s: ...
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
from torchrec.datasets.utils import Batch

Rows = npt.NDArray[np.int64]
_DONE = object()


class BatchStream(Iterator[Batch]):
    """Iterator over ``make(rows)`` for every row group in order; ``depth`` batches built ahead.

    Use it as a context manager: leaving the block stops the builder thread (also after an
    error in the training step). An error in ``make`` is raised by ``next``.
    """

    def __init__(self, make: Callable[[Rows], Batch], groups: Sequence[Rows], *, depth: int = 2) -> None:
        self._make = make
        self._groups = list(groups)
        self._next = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if depth > 0:
            self._thread = threading.Thread(target=self._build, name="teacher-batches", daemon=True)
            self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _build(self) -> None:
        try:
            for rows in self._groups:
                if not self._put(self._make(rows)):
                    return
        except BaseException as e:  # handed to the consumer, raised by __next__
            self._put(e)
            return
        self._put(_DONE)

    def __next__(self) -> Batch:
        if self._thread is None:
            if self._next >= len(self._groups):
                raise StopIteration
            self._next += 1
            return self._make(self._groups[self._next - 1])
        item = self._queue.get()
        if item is _DONE:
            self._queue.put(_DONE)  # later calls stop too
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
