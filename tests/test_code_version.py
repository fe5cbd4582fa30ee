"""Stage code hashes: a stage's inputs change when the code it runs changes, and only then."""

from __future__ import annotations

from pathlib import Path

import pytest

from recdistill.pipeline import code_version
from recdistill.pipeline.code_version import SOURCE_ROOT, code_inputs
from recdistill.pipeline.registry import all_stages


def test_every_stage_lists_code_that_exists() -> None:
    for stage in all_stages():
        assert stage.code, f"{stage.name}: lists no code"
        for rel in stage.code:
            assert (SOURCE_ROOT / rel).exists(), f"{stage.name}: {rel} does not exist (module moved?)"


def test_code_hash_changes_with_the_stage_code_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = {
        "preprocess": ("recdistill/data",),
        "distill-gbdt": ("recdistill/data", "recdistill/students/gbdt"),
        "report": ("recdistill/report",),
    }
    for rel in ("recdistill/data/a.py", "recdistill/students/gbdt/b.py", "recdistill/report/c.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    monkeypatch.setattr(code_version, "SOURCE_ROOT", tmp_path)
    code_version._hash.cache_clear()
    before = {s: code_inputs(p) for s, p in parts.items()}
    (tmp_path / "recdistill/students/gbdt/b.py").write_text("x = 2\n")
    (tmp_path / "recdistill/students/gbdt/__pycache__").mkdir()
    (tmp_path / "recdistill/students/gbdt/__pycache__/b.cpython-311.pyc").write_bytes(b"\0")
    code_version._hash.cache_clear()
    after = {s: code_inputs(p) for s, p in parts.items()}
    code_version._hash.cache_clear()
    assert after["distill-gbdt"] != before["distill-gbdt"]
    assert after["preprocess"] == before["preprocess"]  # recdistill/data unchanged; caches are not code
    assert after["report"] == before["report"]
    assert code_inputs(()) == {}
