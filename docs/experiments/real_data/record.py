"""Record one finished ``recdistill run`` on MovieLens as a JSON line, and render the table.

    python docs/experiments/real_data/record.py record --run-dir runs/movielens --name same_default \
        --config configs/movielens.yaml [--overrides '{"teacher.epochs": 10}'] [--note TEXT]
    python docs/experiments/real_data/record.py table [--valid | --seeds]
    python docs/experiments/real_data/record.py rerecord   # rebuild every record from its run directory

A record holds: the test metrics of every model in ``evaluation.json``, the teacher's per-epoch
history (``teacher/teacher.json``), the saved teacher's logloss/AUC on train, valid and test
computed from its soft labels (so "train loss at the best epoch" is the loss of the kept model on
the whole training split, not the running mean during the epoch), and each stage's seconds.
Records go to ``docs/experiments/real_data/results.jsonl`` (one run per line, appended).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recdistill.data.schema import Schema
from recdistill.metrics.classification import auc

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.jsonl"
MODELS = ("teacher", "mlp_distilled", "mlp_hard", "gbdt_distilled", "gbdt_hard")


def _logloss(y: np.ndarray, z: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0.0, -z) * y + np.logaddexp(0.0, z) * (1 - y)))


def teacher_split_metrics(run_dir: Path) -> dict[str, dict[str, float]]:
    """The saved teacher's logloss and AUC on each split, from ``soft_labels/<split>.parquet``."""
    schema = Schema.load(run_dir / "data")
    out: dict[str, dict[str, float]] = {}
    for split in ("train", "valid", "test"):
        soft = run_dir / "soft_labels" / f"{split}.parquet"
        if not soft.exists():
            continue
        data = pl.read_parquet(run_dir / "data" / f"{split}.parquet", columns=[schema.row_key, schema.label])
        joined = data.join(pl.read_parquet(soft), on=schema.row_key, how="inner")
        y = joined.get_column(schema.label).cast(pl.Float64).to_numpy()
        z = joined.get_column("teacher_logit").cast(pl.Float64).to_numpy()
        out[split] = {"logloss": _logloss(y, z), "auc": auc(y, z), "rows": float(len(y))}
    return out


def served_split_metrics(run_dir: Path, split: str, *, chunk: int = 2048) -> dict[str, dict[str, float]]:
    """AUC, logloss and per-user GAUC of every exported artefact of the run on ``split`` (in process,
    the same predictors the evaluate stage loads). On ``valid`` the evaluate stage writes these
    itself (``evaluation.json``: ``models.<name>.valid``); they are read from there when present."""
    evaluation = run_dir / "evaluation.json"
    if split == "valid" and evaluation.exists():
        models = json.loads(evaluation.read_text())["models"]
        if all("valid" in v for v in models.values()):
            return {m: dict(v["valid"]) for m, v in models.items()}
    from recdistill.data.raw import raw_batch_from_frame, targets_from_frame
    from recdistill.metrics.classification import gauc, logloss
    from recdistill.predictors.registry import load_predictor

    schema = Schema.load(run_dir / "data")
    df = pl.read_parquet(run_dir / "data" / f"{split}.parquet")
    targets = targets_from_frame(df, schema)
    out: dict[str, dict[str, float]] = {}
    for name in MODELS:
        d = run_dir / "export" / name
        if not d.is_dir():
            continue
        predictor = load_predictor(d)
        probs = [
            predictor.predict(raw_batch_from_frame(df.slice(i, chunk), schema))
            for i in range(0, df.height, chunk)
        ]
        p = np.concatenate(probs).astype(np.float64)
        y = targets.label.astype(np.float64)
        out[name] = {"auc": auc(y, p), "logloss": logloss(y, p), "gauc": gauc(y, p, targets.user_id)}
    return out


def student_valid_metrics(manifest: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Validation AUC/logloss of each student at its kept epoch/iteration (from the stage metrics)."""
    out: dict[str, dict[str, float]] = {}
    stages = manifest["stages"]
    for name, m in stages.get("distill-mlp", {}).get("metrics", {}).items():
        out[name] = {
            "auc": m["valid"]["auc"],
            "logloss": m["valid"]["logloss"],
            "best_epoch": m["best_epoch"],
        }
    for name, m in stages.get("distill-gbdt", {}).get("metrics", {}).items():
        out[name] = {
            "auc": m["valid_auc"],
            "logloss": m["valid_logloss"],
            "best_iteration": m["best_iteration"],
        }
    return out


def build_record(
    run_dir: Path, name: str, config: str, overrides: dict[str, Any], note: str
) -> dict[str, Any]:
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    teacher = json.loads((run_dir / "teacher" / "teacher.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    models = {
        m: {k: v.get(k) for k in ("auc", "logloss", "gauc", "ndcg@10", "ece")}
        for m, v in evaluation["models"].items()
    }
    return {
        "name": name,
        "config": config,
        "overrides": overrides,
        "run_dir": str(run_dir),
        "test": models,
        "teacher_history": teacher["history"],
        "teacher_best_epoch": teacher["best_epoch"],
        "teacher_params": teacher["params"]["total"],
        "teacher_splits": teacher_split_metrics(run_dir),
        "valid_students": student_valid_metrics(manifest),
        "valid_served": served_split_metrics(run_dir, "valid"),
        "seconds": {s: v.get("seconds") for s, v in manifest["stages"].items()},
        "selection": {k: v.get("served") for k, v in evaluation.get("selection", {}).items()},
        "config_used": {
            k: manifest.get("config", {}).get(k)
            for k in ("teacher", "soft_labels", "distill", "student_mlp", "gbdt", "search")
        },
        "note": note,
    }


def render_table(records: list[dict[str, Any]]) -> str:
    head = (
        "| run | overrides | teacher best/run epochs (valid AUC by epoch) | teacher train / valid logloss | "
        + " | ".join(f"{m} AUC / logloss / GAUC" for m in MODELS)
    )
    lines = [head + " | seconds (teacher, total) |", "|" + "---|" * (4 + len(MODELS) + 1)]
    for r in records:
        hist = " ".join(f"{h['valid_auc']:.4f}" for h in r["teacher_history"])
        ts = r["teacher_splits"]
        tl = f"{ts['train']['logloss']:.4f} / {ts['valid']['logloss']:.4f}" if "train" in ts else "-"
        cells = []
        for m in MODELS:
            t = r["test"].get(m)
            cells.append("-" if t is None else f"{t['auc']:.4f} / {t['logloss']:.4f} / {t['gauc']:.4f}")
        secs = r["seconds"]
        total = sum(v for v in secs.values() if v)
        lines.append(
            f"| {r['name']} | {json.dumps(r['overrides']) if r['overrides'] else '-'} | "
            f"{r['teacher_best_epoch']}/{len(r['teacher_history'])} ({hist}) | {tl} | "
            + " | ".join(cells)
            + f" | {secs.get('train-teacher', 0):.0f}, {total:.0f} |"
        )
    return "\n".join(lines)


def render_valid_table(records: list[dict[str, Any]]) -> str:
    """Validation AUC / logloss of every model (teacher: its saved model; students: kept epoch)."""
    lines = [
        "| run | " + " | ".join(f"{m} valid AUC / logloss / GAUC" for m in MODELS) + " |",
        "|" + "---|" * (1 + len(MODELS)),
    ]
    for r in records:
        cells = []
        for m in MODELS:
            v = r.get("valid_served", {}).get(m)
            cells.append("-" if v is None else f"{v['auc']:.4f} / {v['logloss']:.4f} / {v['gauc']:.4f}")
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# three student seeds (0, 1, 2) on one teacher and one set of soft labels; "a0.3" = distill.alpha 0.3
# (the MLP's hard-label weight; the GBDT students have their own gbdt.alpha and do not change)
SEED_GROUPS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "same, in-sample": (["same_default", "same_insample_s1", "same_insample_s2"], MODELS[1:]),
    "same, user-fold OOF": (["same_oof", "same_oof_s1", "same_oof_s2"], MODELS[1:]),
    "same, row-fold OOF": (["same_rowoof", "same_rowoof_s1", "same_rowoof_s2"], MODELS[1:4:2]),
    "same, in-sample, a0.3": (
        ["same_insample_a03_s0", "same_insample_a03_s1", "same_insample_a03_s2"],
        MODELS[1:2],
    ),
    "same, user-fold OOF, a0.3": (["same_oof_a03_s0", "same_oof_a03_s1", "same_oof_a03_s2"], MODELS[1:2]),
    "priv, in-sample": (["priv_default", "priv_insample_s1", "priv_insample_s2"], MODELS[1:]),
    "priv, user-fold OOF": (["priv_oof", "priv_oof_s1", "priv_oof_s2"], MODELS[1:]),
    "priv, row-fold OOF": (["priv_rowoof", "priv_rowoof_s1", "priv_rowoof_s2"], MODELS[1:4:2]),
    "priv, in-sample, a0.3": (
        ["priv_insample_a03_s0", "priv_insample_a03_s1", "priv_insample_a03_s2"],
        MODELS[1:2],
    ),
    "priv, user-fold OOF, a0.3": (["priv_oof_a03_s0", "priv_oof_a03_s1", "priv_oof_a03_s2"], MODELS[1:2]),
}


def render_seed_summary(records: list[dict[str, Any]]) -> str:
    by_name = {r["name"]: r for r in records}

    def f(x: list[float]) -> str:
        return f"{np.mean(x):.4f} ({min(x):.4f}-{max(x):.4f})"

    lines = [
        "| soft labels (3 student seeds) | model | valid AUC mean (min-max) | valid GAUC mean (min-max) "
        "| test AUC mean (min-max) | test logloss mean | test GAUC mean (min-max) |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, (names, models) in SEED_GROUPS.items():
        rs = [by_name[n] for n in names if n in by_name]
        if len(rs) < len(names):
            continue
        for m in models:
            va = [r["valid_students"][m]["auc"] for r in rs]
            ta = [r["test"][m]["auc"] for r in rs]
            tl = [r["test"][m]["logloss"] for r in rs]
            tg = [r["test"][m]["gauc"] for r in rs]
            vg = [r["valid_served"][m]["gauc"] for r in rs]
            lines.append(f"| {group} | {m} | {f(va)} | {f(vg)} | {f(ta)} | {np.mean(tl):.4f} | {f(tg)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--run-dir", required=True, type=Path)
    rec.add_argument("--name", required=True)
    rec.add_argument("--config", required=True)
    rec.add_argument("--overrides", default="{}")
    rec.add_argument("--note", default="")
    sub.add_parser("rerecord", help="rebuild every record of results.jsonl from its run directory")
    tab = sub.add_parser("table")
    tab.add_argument("--valid", action="store_true", help="validation metrics instead of test")
    tab.add_argument("--seeds", action="store_true", help="means over the student-seed groups")
    args = ap.parse_args()
    if args.cmd == "record":
        r = build_record(args.run_dir, args.name, args.config, json.loads(args.overrides), args.note)
        with RESULTS.open("a") as f:
            f.write(json.dumps(r) + "\n")
        print(render_table([r]))
    elif args.cmd == "rerecord":
        old = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
        new = [
            build_record(Path(r["run_dir"]), r["name"], r["config"], r["overrides"], r["note"]) for r in old
        ]
        RESULTS.write_text("".join(json.dumps(r) + "\n" for r in new))
    else:
        records = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
        if args.seeds:
            print(render_seed_summary(records))
        else:
            print(render_valid_table(records) if args.valid else render_table(records))


if __name__ == "__main__":
    main()
