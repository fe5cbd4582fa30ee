"""``scripts/gpu_check.sh`` refuses clearly on a machine without CUDA: exit code 3, a message
naming the reason, nothing written (the project never depends on a GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible: the script would run")
def test_gpu_check_refuses_without_cuda(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "RUN_DIR": str(tmp_path / "run"), "PYTHONPATH": str(ROOT)}
    out = tmp_path / "gpu.json"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "gpu_check: refused: no CUDA device is visible to torch" in proc.stderr
    assert not out.exists() and not (tmp_path / "run").exists()
