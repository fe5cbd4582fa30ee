"""The source code each stage runs, hashed into its inputs: a stage reruns when its code changes.

Skip-unchanged (``manifest.py``) compares a stage's inputs: the files it reads and the config
sections it uses. Without the code, an upgrade of recdistill (a new student architecture, a
generator fix) would leave results of the old code in place and report them as current. Each
stage lists (``Stage.code``) the packages and modules its results depend on, relative to the
directory that holds the ``recdistill``, ``serving`` and ``data_gen`` packages; the hash covers
every file under them (Python caches and hidden files excluded, see
:func:`recdistill.io_utils.tree_sha256`).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import recdistill
from recdistill.io_utils import tree_sha256

SOURCE_ROOT = Path(recdistill.__file__).resolve().parent.parent


@cache
def _hash(rel: str) -> str:
    path = SOURCE_ROOT / rel
    return tree_sha256(path) if path.exists() else "absent"


def code_inputs(parts: tuple[str, ...]) -> dict[str, str]:
    """``{"code": sha256}`` over the sources ``parts`` (a stage's ``code``; empty when none are listed)."""
    if not parts:
        return {}
    h = hashlib.sha256()
    for rel in parts:
        h.update(rel.encode())
        h.update(_hash(rel).encode())
    return {"code": h.hexdigest()}
