"""Client for the ranking endpoint: raw request tensors in, click probabilities out.

Example::

    client = RankingClient(server.grpc_url, protocol="grpc")          # model "ranker"
    prob = client.predict(raw)                                         # FP32 [B]
    prob = await client.predict_async(raw)                             # asyncio, gRPC only

Zero-width feature kinds are padded to the contract's dummy width-1 column here (see
:mod:`serving.contract`), so callers always pass true widths. Server-side errors
(invalid input, unknown model, timeouts) raise :class:`ServingError` with the server's message.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from recdistill.data.batch import F32, RawBatch
from recdistill.data.contract import PROB
from recdistill.data.schema import Schema
from recdistill.errors import ServingError
from serving.contract import to_wire
from serving.repository import RANKER

Protocol = Literal["http", "grpc"]
_DTYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


def _strip_scheme(url: str) -> str:
    for scheme in ("http://", "https://", "grpc://"):
        if url.startswith(scheme):
            return url[len(scheme) :].rstrip("/")
    return url.rstrip("/")


class RankingClient:
    """Synchronous HTTP or gRPC client (plus :meth:`predict_async` over gRPC asyncio)."""

    def __init__(
        self, url: str, *, protocol: Protocol = "grpc", model: str = RANKER, timeout_s: float = 30.0
    ) -> None:
        if protocol not in ("http", "grpc"):
            raise ServingError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
        self.url = _strip_scheme(url)
        self.protocol = protocol
        self.model = model
        self.timeout_s = timeout_s
        self._client: Any
        if protocol == "http":
            self._client = httpclient.InferenceServerClient(
                self.url, connection_timeout=timeout_s, network_timeout=timeout_s
            )
        else:
            self._client = grpcclient.InferenceServerClient(self.url)
        self._aio: grpcaio.InferenceServerClient | None = None

    # -- synchronous --------------------------------------------------------------------------------
    def predict(self, raw: RawBatch) -> F32:
        """Click probabilities FP32 ``[B]`` for the rows of ``raw`` (``B >= 1``)."""
        self._check_not_empty(raw)
        inputs = self._inputs(raw)
        try:
            if self.protocol == "http":
                result = self._client.infer(self.model, inputs)  # network_timeout bounds it
            else:
                result = self._client.infer(self.model, inputs, client_timeout=self.timeout_s)
        except InferenceServerException as e:
            raise ServingError(self._describe(e)) from e
        return self._output(result, len(raw))

    def is_ready(self) -> bool:
        """True when the server is live and ready and the model is ready; False if unreachable."""
        try:
            return bool(
                self._client.is_server_live()
                and self._client.is_server_ready()
                and self._client.is_model_ready(self.model)
            )
        except Exception:  # connection refused, timeouts: "not ready" is the answer
            return False

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RankingClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- asyncio (gRPC) -----------------------------------------------------------------------------
    async def predict_async(self, raw: RawBatch) -> F32:
        """Like :meth:`predict`, over ``tritonclient.grpc.aio`` (the client of the load tester).

        The aio client is created on first use in the running event loop; call :meth:`aclose`
        in that loop when done.
        """
        if self.protocol != "grpc":
            raise ServingError(
                f"predict_async uses gRPC; create the client with protocol='grpc' (got {self.protocol!r})"
            )
        self._check_not_empty(raw)
        if self._aio is None:
            self._aio = grpcaio.InferenceServerClient(self.url)
        inputs = self._grpc_inputs(raw)
        try:
            result = await self._aio.infer(self.model, inputs, client_timeout=self.timeout_s)
        except InferenceServerException as e:
            raise ServingError(self._describe(e)) from e
        return self._output(result, len(raw))

    async def aclose(self) -> None:
        if self._aio is not None:
            await self._aio.close()
            self._aio = None

    # -- helpers ------------------------------------------------------------------------------------
    def _check_not_empty(self, raw: RawBatch) -> None:
        # Triton 2.51 answers a 0-row request with a confusing "input byte size mismatch"
        if len(raw) == 0:
            raise ServingError(
                f"{self.protocol}://{self.url} model {self.model!r}: empty batch: 0 rows; send at least one candidate"
            )

    def _inputs(self, raw: RawBatch) -> list[Any]:
        if self.protocol == "grpc":
            return self._grpc_inputs(raw)
        out = []
        for name, arr in to_wire(raw).items():
            t = httpclient.InferInput(name, list(arr.shape), _DTYPES[arr.dtype])
            t.set_data_from_numpy(arr, binary_data=True)
            out.append(t)
        return out

    @staticmethod
    def _grpc_inputs(raw: RawBatch) -> list[Any]:
        out = []
        for name, arr in to_wire(raw).items():
            t = grpcclient.InferInput(name, list(arr.shape), _DTYPES[arr.dtype])
            t.set_data_from_numpy(arr)
            out.append(t)
        return out

    def _output(self, result: Any, batch_size: int) -> F32:
        prob = result.as_numpy(PROB)
        if prob is None or prob.size != batch_size:
            got = None if prob is None else list(prob.shape)
            raise ServingError(
                f"{self.protocol}://{self.url} model {self.model!r}: output {PROB!r} is {got}, expected [{batch_size}, 1]"
            )
        return np.asarray(prob, dtype=np.float32).reshape(batch_size)

    def _describe(self, e: InferenceServerException) -> str:
        status = f" [{e.status()}]" if e.status() else ""
        return f"{self.protocol}://{self.url} model {self.model!r}{status}: {e.message()}"


def raw_batches_from_file(path: Path, schema: Schema, candidates: int) -> Iterator[RawBatch]:
    """Raw request batches of ``candidates`` consecutive rows each (the last may be shorter), read
    from a data file with bounded memory: the same extraction training and the load tester use
    (:func:`recdistill.data.raw.raw_batch_from_frame`)."""
    from recdistill.data.raw import raw_batch_from_frame
    from recdistill.data.readers import iter_frames

    if candidates < 1:
        raise ServingError(f"candidates must be >= 1, got {candidates}")
    for frame in iter_frames(path, batch_rows=candidates, columns=schema.feature_names):
        yield raw_batch_from_frame(frame, schema, source=str(path))
