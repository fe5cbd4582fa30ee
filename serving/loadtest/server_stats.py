"""Control plane of a load test: is the server there, is the model served, and what did Triton
itself measure during the test window.

Triton's statistics endpoint holds cumulative counters per model version (request counts and
nanoseconds spent queueing, copying inputs, inferring and copying outputs). :func:`diff_stats`
subtracts a snapshot taken when the measurement window opens from one taken after its last
request finished, and divides by the request count, giving a per-request breakdown for the same
window as the client's percentiles. (Requests still in flight from the warm-up when the window
opens are counted in the window; with a warm-up of a second or more they are a handful.)
For the ``ranker`` ensemble the composing model's breakdown appears beside the ensemble's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from recdistill.errors import ServingError

_PARTS = ("queue", "compute_input", "compute_infer", "compute_output")
Snapshot = dict[str, dict[str, int]]  # "model/version" -> counter name -> value


@dataclass(frozen=True)
class ModelInfo:
    """What the load tester needs to know about a served model."""

    name: str
    max_batch_size: int
    inputs: dict[str, tuple[str, list[int]]]  # name -> (datatype, shape with -1 batch dim)
    platform: str


class ServerProbe:
    """Liveness, model checks and statistics over ``tritonclient.grpc.aio`` (one event loop)."""

    def __init__(self, url: str, *, timeout_s: float = 3.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client = grpcaio.InferenceServerClient(url)

    async def close(self) -> None:
        await self._client.close()

    async def is_live(self) -> bool:
        try:
            return bool(await self._client.is_server_live(client_timeout=self.timeout_s))
        except InferenceServerException:
            return False

    async def check_server(self) -> None:
        """:class:`ServingError` at once when nothing answers at ``url``."""
        try:
            live = await self._client.is_server_live(client_timeout=self.timeout_s)
        except InferenceServerException as e:
            raise ServingError(
                f"cannot reach a Triton server over gRPC at {self.url} ({_short(e)}); is it running, "
                "and is this its gRPC port (not the HTTP one)?"
            ) from None
        if not live:
            raise ServingError(f"the Triton server at {self.url} answers but is not live")

    async def check_model(self, model: str) -> ModelInfo:
        """:class:`ServingError` naming the served models when ``model`` is not ready."""
        try:
            ready = await self._client.is_model_ready(model, client_timeout=self.timeout_s)
        except InferenceServerException:
            ready = False
        if not ready:
            raise ServingError(
                f"model {model!r} is not ready on the Triton server at {self.url}; "
                f"models there: {await self._model_states()}"
            )
        try:
            meta = await self._client.get_model_metadata(model, client_timeout=self.timeout_s)
            cfg = (await self._client.get_model_config(model, client_timeout=self.timeout_s)).config
        except InferenceServerException as e:
            raise ServingError(
                f"model {model!r} at {self.url}: cannot read its metadata ({_short(e)})"
            ) from None
        inputs = {t.name: (t.datatype, [int(d) for d in t.shape]) for t in meta.inputs}
        return ModelInfo(model, int(cfg.max_batch_size), inputs, cfg.platform or cfg.backend)

    async def _model_states(self) -> str:
        try:
            index = await self._client.get_model_repository_index(client_timeout=self.timeout_s)
        except InferenceServerException as e:
            return f"(unknown: {_short(e)})"
        states = [f"{m.name} ({m.state or 'UNKNOWN'})" for m in index.models]
        return ", ".join(sorted(states)) or "(none)"

    async def snapshot(self) -> Snapshot:
        """Cumulative counters of every model version on the server."""
        resp = await self._client.get_inference_statistics(model_name="", client_timeout=self.timeout_s)
        out: Snapshot = {}
        for m in resp.model_stats:
            s = m.inference_stats
            counters = {
                "inference_count": int(m.inference_count),
                "execution_count": int(m.execution_count),
                "success_count": int(s.success.count),
                "success_ns": int(s.success.ns),
                "fail_count": int(s.fail.count),
            }
            for part in _PARTS:
                stat = getattr(s, part)
                counters[f"{part}_count"] = int(stat.count)
                counters[f"{part}_ns"] = int(stat.ns)
            out[f"{m.name}/{m.version}"] = counters
        return out


def diff_stats(before: Snapshot, after: Snapshot, model: str) -> dict[str, Any]:
    """Per-request server-side breakdown (ms) of ``model`` plus any other model that got requests.

    Returns ``{"model", "requests", "failed", "inferences", "executions", "avg_batch_rows",
    "per_request_ms": {"total", "queue", "compute_input", "compute_infer", "compute_output"},
    "composing": {name: same fields}}``; an empty dict when the model got no requests.
    """
    deltas: dict[str, dict[str, int]] = {}
    for key, now in after.items():
        then = before.get(key, {})
        d = {k: v - then.get(k, 0) for k, v in now.items()}
        if d.get("success_count", 0) or d.get("fail_count", 0):
            deltas[key] = d
    mine = [k for k in deltas if k.split("/")[0] == model]
    if not mine:
        return {}
    out = _breakdown(model, _sum(deltas[k] for k in mine))
    out["composing"] = {
        k.split("/")[0]: _breakdown(k.split("/")[0], d) for k, d in deltas.items() if k not in mine
    }
    return out


def _sum(parts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for d in parts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total


def _breakdown(name: str, d: dict[str, int]) -> dict[str, Any]:
    n = d.get("success_count", 0)
    per: dict[str, float | None] = {"total": d["success_ns"] / n / 1e6 if n else None}
    for part in _PARTS:
        c = d.get(f"{part}_count", 0)
        per[part] = d.get(f"{part}_ns", 0) / c / 1e6 if c else None
    execs = d.get("execution_count", 0)
    return {
        "model": name,
        "requests": n,
        "failed": d.get("fail_count", 0),
        "inferences": d.get("inference_count", 0),
        "executions": execs,
        "avg_batch_rows": d.get("inference_count", 0) / execs if execs else None,
        "per_request_ms": per,
    }


def _short(e: InferenceServerException) -> str:
    text = e.message() if hasattr(e, "message") else str(e)
    return (text or str(e)).strip().splitlines()[0][:200]
