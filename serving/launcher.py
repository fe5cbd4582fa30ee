"""Start and stop a real Triton Inference Server on 127.0.0.1.

Example::

    with TritonServer(Path("runs/demo/model_repository"), log_dir=Path("runs/demo/serving")) as server:
        client = RankingClient(server.grpc_url, protocol="grpc")

``start()`` validates the repository, picks free loopback ports (or checks the given ones are
free), runs ``tritonserver`` in its own process group with every model loaded at start
(``--model-control-mode none``, ``--exit-on-error``, ``--strict-readiness``) and waits, bounded by
``startup_timeout_s``, until ``/v2/health/ready`` answers 200. If the process exits or the time
runs out it raises :class:`ServingError` with the tail of ``<log_dir>/triton.log``. ``stop()``
sends SIGTERM (Triton waits ``exit_timeout_s`` for in-flight requests), then SIGKILLs the process
group after ``shutdown_timeout_s``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from recdistill.config.serving import ServingConfig
from recdistill.data.contract import InputContract
from recdistill.errors import ServingError
from serving.repository import Repository, validate_repository
from serving.triton_install import TritonInstall, prepare_triton

HOST = "127.0.0.1"
LOG_FILE = "triton.log"
_PORT_NAMES = ("http", "grpc", "metrics")
_BIND_FAILURE = "already in use"  # Triton: "failed to start HTTP service: ... Socket ... already in use"
_START_ATTEMPTS = 3  # only when ports were picked here (another process may grab one meanwhile)


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on ``host:port`` (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(n: int, host: str = HOST) -> list[int]:
    """``n`` distinct ports the kernel reports free right now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


class TritonServer:
    """One ``tritonserver`` process serving ``repository`` (a context manager)."""

    def __init__(
        self,
        repository: Path,
        *,
        install: TritonInstall | None = None,
        triton_cache: Path | None = None,
        http_port: int = 0,
        grpc_port: int = 0,
        metrics_port: int = 0,
        log_dir: Path | None = None,
        startup_timeout_s: float = 120.0,
        shutdown_timeout_s: float = 20.0,
        exit_timeout_s: int = 5,
        log_verbose: int = 0,
        expect_contract: InputContract | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.repository_path = Path(repository).resolve()
        self._install = install
        self._triton_cache = triton_cache  # where prepare_triton copies the server when install is None
        self._requested = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self.log_dir = Path(log_dir).resolve() if log_dir is not None else None
        self.startup_timeout_s = startup_timeout_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.exit_timeout_s = exit_timeout_s
        self.log_verbose = log_verbose
        self.expect_contract = expect_contract
        self.extra_args = extra_args
        self.ports: dict[str, int] = {}
        self.repository: Repository | None = None
        self.startup_s: float | None = None  # seconds from spawn to ready (last attempt)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._t_spawn = 0.0

    @classmethod
    def from_config(
        cls,
        repository: Path,
        config: ServingConfig,
        *,
        log_dir: Path | None = None,
        install: TritonInstall | None = None,
    ) -> TritonServer:
        return cls(
            repository,
            install=install,
            triton_cache=Path(config.triton_cache) if config.triton_cache else None,
            http_port=config.http_port,
            grpc_port=config.grpc_port,
            metrics_port=config.metrics_port,
            log_dir=log_dir,
            startup_timeout_s=config.startup_timeout_s,
            shutdown_timeout_s=config.shutdown_timeout_s,
            exit_timeout_s=config.exit_timeout_s,
            log_verbose=config.log_verbose,
        )

    # -- addresses ----------------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        """``127.0.0.1:<port>`` (tritonclient takes host:port without a scheme)."""
        return f"{HOST}:{self._port('http')}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self._port('grpc')}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self._port('metrics')}/metrics"

    @property
    def log_path(self) -> Path:
        if self.log_dir is None:
            raise ServingError("the server has not been started, so it has no log yet")
        return self.log_dir / LOG_FILE

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _port(self, name: str) -> int:
        if name not in self.ports:
            raise ServingError(f"the server has no {name} port yet; call start() first")
        return self.ports[name]

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> TritonServer:
        if self.is_running():
            raise ServingError(f"the server for {self.repository_path} is already running (pid {self.pid})")
        self.repository = validate_repository(self.repository_path, expect_contract=self.expect_contract)
        for name, port in self._requested.items():
            if port and not port_is_free(port):
                raise ServingError(
                    f"{name} port {port} on {HOST} is already in use; stop whatever listens there or pass "
                    f"another --{name}-port (0 picks a free one)"
                )
        given = [p for p in self._requested.values() if p]
        if len(set(given)) != len(given):
            raise ServingError(f"http, grpc and metrics ports must differ, got {self._requested}")
        install = self._install or prepare_triton(self._triton_cache)
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix="recdistill-triton-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        picked = not all(self._requested.values())
        for attempt in range(1, _START_ATTEMPTS + 1):
            self._spawn(install)
            try:
                self._wait_ready()
                return self
            except ServingError:
                tail = self.log_tail().lower()
                self.stop()
                if not (picked and attempt < _START_ATTEMPTS and _BIND_FAILURE in tail):
                    raise
            except BaseException:  # Ctrl-C / SIGTERM while waiting: leave nothing running
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _spawn(self, install: TritonInstall) -> None:
        free = iter(free_ports(3))
        self.ports = {name: port or next(free) for name, port in self._requested.items()}
        assert self.log_dir is not None
        cmd = [
            str(install.server_bin),
            f"--model-repository={self.repository_path}",
            f"--backend-directory={install.backend_dir}",
            f"--cache-directory={install.cache_dir}",
            *(f"--{name}-address={HOST}" for name in _PORT_NAMES),
            *(f"--{name}-port={self.ports[name]}" for name in _PORT_NAMES),
            "--model-control-mode=none",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--disable-auto-complete-config",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            "--pinned-memory-pool-byte-size=0",  # CPU only: no pinned-memory attempts
            "--allow-gpu-metrics=false",
            f"--log-verbose={self.log_verbose}",
            *self.extra_args,
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"# recdistill: {' '.join(cmd)}\n".encode())
        self._log.flush()
        self._t_spawn = time.monotonic()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=install.process_env(),
            start_new_session=True,  # own process group: Ctrl-C goes to us, stop() kills stubs too
        )
        atexit.register(self.stop)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        url = f"http://{self.http_url}/v2/health/ready"
        deadline = self._t_spawn + self.startup_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServingError(
                    f"tritonserver exited with code {code} before becoming ready (repository "
                    f"{self.repository_path}); log {self.log_path}:\n{self.log_tail()}"
                )
            if _http_ok(url):
                self.startup_s = time.monotonic() - self._t_spawn
                return
            if time.monotonic() > deadline:
                raise ServingError(
                    f"tritonserver was not ready after {self.startup_timeout_s:.0f} s (repository "
                    f"{self.repository_path}); log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL of its process group); returns its exit code."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=self.shutdown_timeout_s)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            code = proc.returncode
            _reap_group(proc.pid)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def log_tail(self, lines: int = 40) -> str:
        if self.log_dir is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_bytes()[-65536:].decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _reap_group(pgid: int, timeout_s: float = 5.0) -> None:
    """Kill what is left of the server's process group (Python-backend stubs), bounded."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            return
        time.sleep(0.05)
