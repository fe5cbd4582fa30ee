"""Copy a finished run without its students, with config overrides, to retrain only the students.

    python docs/experiments/real_data/rerun_students.py --base runs/movielens --config configs/movielens.yaml \
        --out runs/real_data/same_insample_s1 --set student_mlp.seed=1 --set gbdt.seed=1
    recdistill run --config runs/real_data/same_insample_s1/config.yaml --from distill-mlp --until evaluate

The copy keeps data links, preprocessing, the teacher and its soft labels (whatever they are:
in-sample or out-of-fold), so only the student stages run again. ``--set`` values are YAML.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import yaml

_SKIP = {"students", "model_repository", "evaluation.json", "evaluation.md", "oof", "loadtest"}


def copy_run(base: Path, config: Path, out: Path, overrides: list[str]) -> Path:
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out, symlinks=True, ignore=lambda d, names: [n for n in names if n in _SKIP])
    cfg: dict[str, Any] = yaml.safe_load(config.read_text())
    cfg["run_dir"] = str(out)
    for item in overrides:
        key, _, value = item.partition("=")
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, type=Path)
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    print(copy_run(a.base, a.config, a.out, a.set))


if __name__ == "__main__":
    main()
