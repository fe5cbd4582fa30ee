"""Serving section: the Triton model repository and the server the models run on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ServingConfig:
    """How models are served by Triton Inference Server (on 127.0.0.1 only).

    ``ranker_target`` is the model that the ``ranker`` ensemble forwards to (``None``: the first
    model written). Ports set to 0 are picked free at start; a given port that is taken is refused.
    ``triton_cache`` is where the server binaries are copied (``None``:
    ``~/.cache/recdistill/tritonserver-2.51``).
    """

    ranker_target: str | None = None
    max_batch_size: int = 4096
    dynamic_batching: bool = True
    max_queue_delay_us: int = 100
    preferred_batch_sizes: tuple[int, ...] = ()
    instance_count: int = 1
    warmup: bool = True
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    startup_timeout_s: float = 120.0
    shutdown_timeout_s: float = 20.0
    exit_timeout_s: int = 5  # Triton's --exit-timeout-secs: wait for in-flight requests on SIGTERM
    client_timeout_s: float = 30.0
    protocol: Literal["grpc", "http"] = "grpc"  # default client protocol
    triton_cache: str | None = None
    log_verbose: int = 0

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_queue_delay_us < 0:
            raise ValueError(f"max_queue_delay_us must be >= 0, got {self.max_queue_delay_us}")
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise ValueError(
                f"preferred_batch_sizes {bad} must lie in [1, max_batch_size={self.max_batch_size}]"
            )
        if self.instance_count < 1:
            raise ValueError(f"instance_count must be >= 1, got {self.instance_count}")
        for name in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ValueError(f"{name} must be 0 (pick a free port) or in 1..65535, got {port}")
        given = [p for p in (self.http_port, self.grpc_port, self.metrics_port) if p]
        if len(set(given)) != len(given):
            raise ValueError(f"http_port, grpc_port and metrics_port must differ, got {given}")
        for name in ("startup_timeout_s", "shutdown_timeout_s", "client_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.exit_timeout_s < 0:
            raise ValueError(f"exit_timeout_s must be >= 0, got {self.exit_timeout_s}")
        if self.protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be 'grpc' or 'http', got {self.protocol!r}")
        if self.log_verbose < 0:
            raise ValueError(f"log_verbose must be >= 0, got {self.log_verbose}")
