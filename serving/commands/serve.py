"""``recdistill serve``: run Triton Inference Server on a model repository until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from recdistill.config.loader import from_mapping, load_yaml
from recdistill.config.serving import ServingConfig


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="serve a model repository with Triton Inference Server on 127.0.0.1",
        description=(
            "Validate the model repository, start Triton Inference Server on 127.0.0.1 and run "
            "until SIGINT/SIGTERM, then shut it down cleanly. Ports default to free ones."
        ),
    )
    p.add_argument("--repository", required=True, help="model repository (folder of <model>/config.pbtxt)")
    p.add_argument("--http-port", type=int, help="HTTP port (0: pick a free one)")
    p.add_argument("--grpc-port", type=int, help="gRPC port (0: pick a free one)")
    p.add_argument("--metrics-port", type=int, help="metrics port (0: pick a free one)")
    p.add_argument("--log-dir", help="folder for triton.log (default: a new temporary folder)")
    p.add_argument("--startup-timeout", type=float, help="seconds to wait for readiness")
    p.add_argument(
        "--triton-cache", help="where the server binaries are prepared (default ~/.cache/recdistill)"
    )
    p.add_argument("--config", help="YAML config whose 'serving' section is the base")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from serving.launcher import TritonServer
    from serving.repository import describe

    cfg = ServingConfig()
    if args.config:
        cfg = from_mapping(
            ServingConfig, load_yaml(args.config).get("serving"), source=args.config, where="serving"
        )
    overrides: dict[str, Any] = {}
    for key in ("http_port", "grpc_port", "metrics_port"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.startup_timeout is not None:
        overrides["startup_timeout_s"] = args.startup_timeout
    if args.triton_cache is not None:
        overrides["triton_cache"] = args.triton_cache
    cfg = dataclasses.replace(cfg, **overrides)

    stop = threading.Event()
    started = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if not started.is_set():  # abort a start-up in progress (TritonServer.start cleans up)
            raise KeyboardInterrupt(f"signal {signum} during start-up")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server = TritonServer.from_config(
        Path(args.repository), cfg, log_dir=Path(args.log_dir) if args.log_dir else None
    )
    try:
        server.start()
        started.set()
        assert server.repository is not None
        sys.stdout.write(describe(server.repository))
        info = {
            "http": server.http_url,
            "grpc": server.grpc_url,
            "metrics": server.metrics_url,
            "log": str(server.log_path),
            "pid": server.pid,
            "startup_s": round(server.startup_s or 0.0, 2),
        }
        print(json.dumps(info), flush=True)
        while not stop.wait(0.5):
            if not server.is_running():
                print(
                    f"recdistill serve: tritonserver exited unexpectedly; log {server.log_path}:\n"
                    f"{server.log_tail()}",
                    file=sys.stderr,
                )
                return 1
        print("recdistill serve: shutting down", file=sys.stderr, flush=True)
        return 0
    finally:
        code = server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if code is not None:
            print(f"recdistill serve: tritonserver exited with code {code}", file=sys.stderr, flush=True)
