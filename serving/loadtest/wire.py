"""The load tester's gRPC data path: requests serialised once, sent over one asyncio channel.

``tritonclient.grpc.aio.InferenceServerClient.infer`` rebuilds and re-serialises the request
protobuf on every call; on a 2-core machine shared with the server that client CPU shows up as
latency. Here each pool request becomes a ``ModelInferRequest`` (Triton's own protobuf from
``tritonclient.grpc.service_pb2``) serialised to bytes once, and :class:`InferChannel` sends the
bytes on a ``grpc.aio`` channel with a pass-through serialiser. Control-plane calls (liveness,
model readiness, metadata, statistics) go through ``tritonclient.grpc.aio`` (see
:mod:`serving.loadtest.server_stats`).

Outcomes: a response whose ``prob`` output holds ``N`` FP32 values is OK; gRPC
``DEADLINE_EXCEEDED`` is a timeout; ``UNAVAILABLE`` means the server is gone (the runner ends
the test after a few in a row); anything else is an error carrying the server's message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc  # type: ignore[import-untyped, unused-ignore]
import numpy as np
from tritonclient.grpc import service_pb2

from recdistill.data.batch import RawBatch
from recdistill.data.contract import PROB
from serving.contract import to_wire
from serving.loadtest.stats import ERROR, OK, TIMEOUT

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
UNAVAILABLE = -1  # an ERROR outcome that also says "the server is unreachable"
_MAX_MESSAGE = 2**31 - 1
_DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class EncodedRequest:
    """One serialised ``ModelInferRequest`` and the number of rows it carries."""

    payload: bytes
    rows: int


def encode_request(model: str, raw: RawBatch) -> EncodedRequest:
    """``raw`` (true widths) as wire tensors (contract dtypes, dummy width-1 columns) -> bytes."""
    req = service_pb2.ModelInferRequest(model_name=model, model_version="")
    for name, arr in to_wire(raw).items():
        t = req.inputs.add()
        t.name = name
        t.datatype = _DATATYPES[arr.dtype]
        t.shape.extend(int(d) for d in arr.shape)
        req.raw_input_contents.append(np.ascontiguousarray(arr).tobytes())
    req.outputs.add().name = PROB
    return EncodedRequest(req.SerializeToString(), len(raw))


def encode_pool(model: str, batches: Sequence[RawBatch]) -> list[EncodedRequest]:
    return [encode_request(model, b) for b in batches]


def wire_shapes(raw: RawBatch) -> dict[str, list[int]]:
    """Shapes (batch dim included) of the tensors a request of ``raw`` sends."""
    return {name: [int(d) for d in arr.shape] for name, arr in to_wire(raw).items()}


def check_loopback(url: str) -> str:
    """``host:port`` of ``url`` if the host is a loopback address; ``ValueError`` otherwise."""
    text = url.strip()
    for scheme in ("grpc://", "http://", "https://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    text = text.rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"url {url!r} must be HOST:PORT (e.g. 127.0.0.1:8001)")
    if host not in LOOPBACK_HOSTS:
        raise ValueError(
            f"url {url!r}: the load tester only talks to loopback servers ({', '.join(LOOPBACK_HOSTS[:3])}); "
            "it is a local benchmark, not a tool for loading other machines"
        )
    return text


class Transport(Protocol):
    """What the generators send through: :class:`InferChannel`, or an in-process fake in tests."""

    async def infer(self, request: EncodedRequest, timeout_s: float) -> tuple[int, str | None]: ...


class InferChannel:
    """``ModelInfer`` calls with pre-serialised requests; create and use inside one event loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._channel = grpc.aio.insecure_channel(
            url,
            options=[
                ("grpc.max_send_message_length", _MAX_MESSAGE),
                ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ],
        )
        # request_serializer=None: the request is already bytes; the response is parsed below
        self._call = self._channel.unary_unary(INFER_METHOD)

    async def infer(self, request: EncodedRequest, timeout_s: float) -> tuple[int, str | None]:
        """``(outcome, message)``: OK/None, TIMEOUT, ERROR (with the server's text) or UNAVAILABLE."""
        try:
            reply = await self._call(request.payload, timeout=timeout_s)
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return TIMEOUT, f"deadline of {timeout_s:g} s exceeded"
            if code == grpc.StatusCode.UNAVAILABLE:
                return UNAVAILABLE, f"UNAVAILABLE: {e.details()}"
            return ERROR, f"{code.name}: {e.details()}"
        return check_reply(reply, request.rows)

    async def close(self) -> None:
        await self._channel.close()


def check_reply(reply: bytes, rows: int) -> tuple[int, str | None]:
    """OK when the reply's ``prob`` output holds ``rows`` FP32 values."""
    resp = service_pb2.ModelInferResponse.FromString(reply)
    for i, out in enumerate(resp.outputs):
        if out.name != PROB:
            continue
        size = len(resp.raw_output_contents[i]) if i < len(resp.raw_output_contents) else 0
        if out.datatype == "FP32" and size == 4 * rows:
            return OK, None
        return (
            ERROR,
            f"output {PROB!r} is {out.datatype} shape {list(out.shape)} ({size} bytes), expected FP32 [{rows}, 1]",
        )
    return ERROR, f"response has no {PROB!r} output"
