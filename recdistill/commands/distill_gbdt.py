"""``recdistill distill-gbdt``: train the LightGBM student on soft labels (or its hard-label twin)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from recdistill.config.gbdt import GbdtStudentConfig
from recdistill.config.loader import from_mapping, load_yaml

CONFIG_SECTION = "gbdt"
PARITY_ROWS = 2048


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "distill-gbdt",
        help="train the LightGBM student (soft-label cross_entropy) or its hard-label twin",
        description="Train the GBDT student on alpha*y + (1-alpha)*p_teacher, early-stopped on validation.",
    )
    p.add_argument(
        "--data", required=True, help="directory with schema.json and train/valid[/transfer] splits"
    )
    p.add_argument("--preprocess", required=True, help="preprocessing artefact (its schema is the contract)")
    p.add_argument("--soft-labels", help="soft_labels/ directory of the teacher (not needed with --hard)")
    p.add_argument("--out", required=True, help="output directory (model.txt, featurizer/, metrics.json)")
    p.add_argument("--config", help=f"YAML whose '{CONFIG_SECTION}' section is a GbdtStudentConfig")
    p.add_argument("--hard", action="store_true", help="hard-label baseline: no teacher output at all")
    p.add_argument("--teacher-hash", help="expected teacher hash (default: the soft-label manifest's)")
    p.set_defaults(func=run)


def load_gbdt_config(path: str | None) -> GbdtStudentConfig:
    if path is None:
        return GbdtStudentConfig()
    return from_mapping(
        GbdtStudentConfig, load_yaml(path).get(CONFIG_SECTION), source=path, where=CONFIG_SECTION
    )


def run(args: argparse.Namespace) -> int:
    from recdistill.students.gbdt.distill import distill_gbdt

    t0 = time.perf_counter()
    metrics = distill_gbdt(
        data_dir=args.data,
        preprocess_dir=args.preprocess,
        soft_dir=args.soft_labels,
        out_dir=args.out,
        cfg=load_gbdt_config(args.config),
        hard=args.hard,
        teacher_hash=args.teacher_hash,
    )
    print(
        f"{metrics['student']}: {metrics['label']}; {metrics['best_iteration']} trees, "
        f"{metrics['n_features']} features; valid AUC {metrics['valid_auc']:.4f}, "
        f"logloss {metrics['valid_logloss']:.4f} -> {Path(args.out)}"
    )
    print(f"done in {time.perf_counter() - t0:.1f}s")
    return 0
