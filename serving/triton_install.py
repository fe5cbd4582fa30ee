"""Prepare a runnable Triton Inference Server 2.51 from the ``nvidia-pytriton==0.7.0`` wheel.

The wheel ships the server (``pytriton/tritonserver``: ``bin/tritonserver``, the Python backend
``backends/python/libtriton_python.so``), one ``triton_python_backend_stub`` per Python version
(``pytriton/tritonserver/python_backend_stubs/<X.Y>/``) and its shared libraries
(``site-packages/nvidia_pytriton.libs``). :func:`prepare_triton` copies the server to a writable
folder, puts the stub for the running Python into ``backends/python/`` and returns the paths and
the environment the server process needs:

* ``LD_LIBRARY_PATH``: the running interpreter's ``libpython3.X.so.1.0`` folder first (so the stub
  embeds the same Python build as the venv), then ``nvidia_pytriton.libs`` (the copied binaries'
  relative RPATH no longer reaches it).
* ``PATH``: the interpreter's ``bin/`` first. The stub starts an *isolated* interpreter (it ignores
  ``PYTHONPATH``) whose ``sys.prefix`` follows the first ``python3`` on ``PATH``; the venv's one
  gives the venv's site-packages, hence its numpy (<2, which the stub needs).
* ``PYTHONPATH``: the folder holding the ``recdistill`` package; ``backends/model.py`` re-applies it.

A prepared folder carries ``.recdistill-install.json`` (versions, source, file sizes) and is
reused while it matches; otherwise it is rebuilt atomically under a file lock.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import sysconfig
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import recdistill
from recdistill.errors import ServingError
from recdistill.io_utils import atomic_path

PYTRITON_DIST = "nvidia-pytriton"
PYTRITON_VERSION = "0.7.0"
TRITON_VERSION = "2.51.0"
DEFAULT_TRITON_CACHE = Path("~/.cache/recdistill/tritonserver-2.51")
MARKER = ".recdistill-install.json"
STUB = "triton_python_backend_stub"
_LOCK_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class WheelFiles:
    """Where the pytriton wheel's pieces live in site-packages."""

    server_dir: Path  # pytriton/tritonserver
    stub: Path  # python_backend_stubs/<X.Y>/triton_python_backend_stub
    libs_dir: Path  # nvidia_pytriton.libs
    version: str


@dataclass(frozen=True)
class TritonInstall:
    """A runnable server: binaries, backend folder and the environment variables it needs."""

    root: Path
    server_bin: Path  # root/bin/tritonserver
    backend_dir: Path  # root/backends (python/ holds libtriton_python.so and the stub)
    cache_dir: Path  # root/caches
    libs_dir: Path
    env: Mapping[str, str]  # LD_LIBRARY_PATH, PATH, PYTHONPATH to prepend (see module docstring)

    def process_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default ``os.environ``) with :attr:`env` prepended to the path variables."""
        out = dict(os.environ if base is None else base)
        for key, value in self.env.items():
            out[key] = f"{value}{os.pathsep}{out[key]}" if out.get(key) else value
        return out


def locate_wheel() -> WheelFiles:
    """Find the pytriton wheel's files for the running interpreter; :class:`ServingError` if absent."""
    where = f"the Python environment {sys.prefix}"
    try:
        version = importlib.metadata.version(PYTRITON_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ServingError(
            f"{PYTRITON_DIST} is not installed in {where}; it provides Triton {TRITON_VERSION}: "
            f"pip install {PYTRITON_DIST}=={PYTRITON_VERSION}"
        ) from None
    if version != PYTRITON_VERSION:
        raise ServingError(
            f"{PYTRITON_DIST} {version} is installed in {where}; recdistill is tested with "
            f"{PYTRITON_VERSION} (Triton {TRITON_VERSION}): pip install {PYTRITON_DIST}=={PYTRITON_VERSION}"
        )
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServingError(f"{PYTRITON_DIST} is registered in {where} but the 'pytriton' package is missing")
    package = Path(next(iter(spec.submodule_search_locations)))
    server_dir = package / "tritonserver"
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    stubs = server_dir / "python_backend_stubs"
    stub = stubs / py / STUB
    libs = package.parent / "nvidia_pytriton.libs"
    for needed in (
        server_dir / "bin" / "tritonserver",
        server_dir / "backends" / "python" / "libtriton_python.so",
        libs,
    ):
        if not needed.exists():
            raise ServingError(
                f"{needed} is missing: the {PYTRITON_DIST} install is incomplete; reinstall it"
            )
    if not stub.is_file():
        have = sorted(p.name for p in stubs.iterdir()) if stubs.is_dir() else []
        raise ServingError(
            f"{PYTRITON_DIST} has no Python-backend stub for Python {py} ({stubs} holds {have})"
        )
    return WheelFiles(server_dir=server_dir, stub=stub, libs_dir=libs, version=version)


def prepare_triton(dest: Path | None = None) -> TritonInstall:
    """Copy the server into ``dest`` (default ``~/.cache/recdistill/tritonserver-2.51``), reusing
    a previous copy when it is intact, and return the paths and environment to run it."""
    wheel = locate_wheel()
    root = Path(dest if dest is not None else DEFAULT_TRITON_CACHE).expanduser().resolve()
    expected = _marker(wheel)
    try:
        with _locked(root.parent / f".{root.name}.lock"):
            if not _intact(root, expected):
                _copy(root, wheel, expected)
    except OSError as e:
        raise ServingError(
            f"{root}: cannot prepare the Triton server there ({e}); pass a writable folder"
        ) from e
    return TritonInstall(
        root=root,
        server_bin=root / "bin" / "tritonserver",
        backend_dir=root / "backends",
        cache_dir=root / "caches",
        libs_dir=wheel.libs_dir,
        env=_server_env(wheel),
    )


def _server_env(wheel: WheelFiles) -> dict[str, str]:
    python_bin = Path(sys.executable).parent
    if not (python_bin / "python3").exists():
        raise ServingError(
            f"{python_bin} has no 'python3'; the Triton stub finds its Python environment through the "
            "first python3 on PATH. Run recdistill from a venv (or a Python install with bin/python3)"
        )
    ld_path = [str(wheel.libs_dir)]
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if (
        sysconfig.get_config_var("Py_ENABLE_SHARED")
        and libdir
        and soname
        and (Path(libdir) / soname).exists()
    ):
        ld_path.insert(0, str(libdir))  # else the stub loads the system libpython3.X (same ABI)
    package_root = Path(recdistill.__file__).resolve().parent.parent
    return {
        "LD_LIBRARY_PATH": os.pathsep.join(ld_path),
        "PATH": str(python_bin),
        "PYTHONPATH": str(package_root),
    }


def _marker(wheel: WheelFiles) -> dict[str, Any]:
    files = {
        str(p.relative_to(wheel.server_dir)): p.stat().st_size
        for p in sorted(wheel.server_dir.rglob("*"))
        if p.is_file() and not _skipped(p.relative_to(wheel.server_dir))
    }
    files[f"backends/python/{STUB}"] = wheel.stub.stat().st_size
    return {
        "pytriton": wheel.version,
        "triton": TRITON_VERSION,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "source": str(wheel.server_dir),
        "files": files,
    }


def _skipped(rel: Path) -> bool:
    return rel.parts[0] == "python_backend_stubs" or "__pycache__" in rel.parts


def _intact(root: Path, expected: dict[str, Any]) -> bool:
    try:
        found = json.loads((root / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if found != expected:
        return False
    for rel, size in expected["files"].items():
        p = root / rel
        if not p.is_file() or p.stat().st_size != size:
            return False
    return all(os.access(root / rel, os.X_OK) for rel in ("bin/tritonserver", f"backends/python/{STUB}"))


def _copy(root: Path, wheel: WheelFiles, marker: dict[str, Any]) -> None:
    with atomic_path(root) as tmp:
        shutil.copytree(
            wheel.server_dir, tmp, ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__")
        )
        shutil.copy2(wheel.stub, tmp / "backends" / "python" / STUB)
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``lock_path``, waiting at most ``_LOCK_TIMEOUT_S``."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as f:
        deadline = time.monotonic() + _LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServingError(
                        f"{lock_path}: still locked after {_LOCK_TIMEOUT_S:.0f} s by another prepare"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
