"""Students benchmark: how much of the teacher's quality each student keeps, in two scenarios.

  * ``same_features``: teacher and students see the same features (the teacher is just bigger);
  * ``privileged``: some signal lives in ``teacher_only`` features the students cannot read.

Each scenario is a ``recdistill run`` up to ``evaluate`` (``benchmarks/configs/<scenario>.yaml``;
reused when unchanged), offline distillation (``distill.mode: offline``), then the same config in
the other modes, each in its own run directory (``runs/bench_<scenario>_<mode>``) started from
the offline run's data and preprocessing (and, for ``self``, its teacher, soft labels and GBDT
students, whose inputs do not depend on the mode), so only what the mode changes is trained:

  * ``online``: teacher and MLP student in one loop -> ``mlp_online`` (``--shared`` adds a run with
    ``distill.online.share_embeddings`` -> ``mlp_online_shared``);
  * ``self``: born-again generations, no teacher -> ``mlp_self``.

Every MLP row carries ``train_seconds_total`` (from each run's ``evaluation.json``, which adds up
the stage records of its ``manifest.json``: for ``mlp_distilled`` the teacher, fold teachers,
scoring and the student; for ``mlp_online`` the joint loop; for ``mlp_self`` every generation),
and ``load_average`` says how busy the machine was. ``--sweep`` also trains MLP students over
temperature x alpha and over embedding sizes on the privileged data and plots test AUC against
parameters. Writes ``benchmarks/results/students.json`` (and ``students_sweep.png``).

    python benchmarks/bench_students.py [--sweep] [--shared] [--scenarios privileged same_features]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from _common import RESULTS, machine, run_mode, run_scenario, write_result

from recdistill.io_utils import read_json
from recdistill.pipeline.context import RunContext

KEYS = (
    "auc",
    "logloss",
    "gauc",
    "ndcg@10",
    "ece",
    "params",
    "bytes",
    "fidelity_spearman",
    "train_seconds_total",
)
SCENARIOS = ("privileged", "same_features")
SWEEP_EPOCHS = 6  # per sweep point (early stopping may end it sooner): the sweep compares settings


def scenario_table(ctx: RunContext) -> dict[str, dict[str, Any]]:
    ev = read_json(ctx.run_dir / "evaluation.json")
    out = {name: {k: m.get(k) for k in KEYS} for name, m in ev["models"].items()}
    out["_bayes_auc"] = ev.get("bayes_auc")  # type: ignore[assignment]
    return out


def mode_rows(ctx: RunContext, student: str, name: str) -> dict[str, Any]:
    """One mode's student row from its run, and what the run says about it."""
    ev = read_json(ctx.run_dir / "evaluation.json")
    m = ev["models"][student]
    row: dict[str, Any] = {k: m.get(k) for k in KEYS}
    row["valid_auc"] = m.get("valid", {}).get("auc")
    row["run"] = {
        "run_dir": ctx.run_dir.name,
        "teacher_auc": ev["models"]["teacher"]["auc"],
        "mlp_hard_auc": ev["models"]["mlp_hard"]["auc"],
        "served_mlp": ev.get("selection", {}).get("mlp", {}).get("served"),
    }
    d = ctx.student_dir(student)
    if (d / "online.json").exists():
        rec = read_json(d / "online.json")
        row["run"]["online"] = {k: rec[k] for k in ("joint", "rescore", "after", "train_seconds_total")}
        row["run"]["online"]["joint"] = {k: v for k, v in rec["joint"].items() if k != "history"}
    if (d / "born_again.json").exists():
        rec = read_json(d / "born_again.json")
        row["run"]["born_again"] = [
            {k: g[k] for k in ("generation", "valid", "seconds")} for g in rec["per_generation"]
        ]
    print(f"{name}: {student} test AUC {row['auc']:.4f}, {row['train_seconds_total']:.0f} s", flush=True)
    return row


def targets(name: str, t: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets for one scenario: measured values and pass/fail, never adjusted."""
    auc = {k: v["auc"] for k, v in t.items() if not k.startswith("_")}
    lift = lambda s: (auc[s] - 0.5) / (auc["teacher"] - 0.5)  # noqa: E731
    checks: dict[str, Any] = {}
    if name == "same_features":
        checks["mlp_keeps_99pct_lift"] = {"value": lift("mlp_distilled"), "target": 0.99}
        checks["mlp_20x_fewer_params"] = {
            "value": t["teacher"]["params"] / t["mlp_distilled"]["params"], "target": 20.0}  # fmt: skip
        checks["mlp_not_worse_than_hard"] = {"value": auc["mlp_distilled"] - auc["mlp_hard"], "target": 0.0}
        if "mlp_distilled_transfer" in auc:
            checks["mlp_transfer_beats_hard_by_0.002"] = {
                "value": auc["mlp_distilled_transfer"] - auc["mlp_hard"], "target": 0.002}  # fmt: skip
        checks["gbdt_keeps_97pct_lift"] = {"value": lift("gbdt_distilled"), "target": 0.97}
    else:
        checks["mlp_beats_hard_by_0.003"] = {"value": auc["mlp_distilled"] - auc["mlp_hard"], "target": 0.003}
        gap = auc["teacher"] - auc["mlp_hard"]
        closed = (auc["mlp_distilled"] - auc["mlp_hard"]) / gap if gap > 0 else float("nan")
        checks["mlp_closes_30pct_of_gap"] = {"value": closed, "target": 0.30}
    checks["gbdt_beats_hard"] = {"value": auc["gbdt_distilled"] - auc["gbdt_hard"], "target": 0.0}
    if "mlp_online" in auc:
        checks["online_auc_at_least_offline_minus_0.001"] = {
            "value": auc["mlp_online"] - auc["mlp_distilled"], "target": -0.001}  # fmt: skip
        secs = lambda s: t[s]["train_seconds_total"]  # noqa: E731
        checks["online_train_seconds_at_most_0.8x_offline"] = {
            "value": secs("mlp_online") / secs("mlp_distilled"), "target": 0.8, "at_most": True}  # fmt: skip
    if "mlp_self" in auc and name == "same_features":
        checks["self_beats_hard_by_0.001"] = {"value": auc["mlp_self"] - auc["mlp_hard"], "target": 0.001}
    for c in checks.values():
        if c.get("at_most"):
            c["passed"] = bool(c["value"] <= c["target"])
        else:
            c["passed"] = bool(c["value"] >= c["target"]) if c["target"] != 0.0 else bool(c["value"] > 0.0)
    return checks


def _sweep_point(ctx: RunContext, temperature: float, alpha: float, dim: int) -> dict[str, Any]:
    """Train one sweep point, or read it back when its inputs (student and loss config, the
    soft labels, the code) match the last run (``sweep/<point>/sweep_row.json``)."""
    import hashlib
    import json

    from recdistill.config import to_mapping
    from recdistill.io_utils import atomic_write_json, tree_sha256
    from recdistill.pipeline.code_version import code_inputs
    from recdistill.pipeline.registry import find_stage
    from recdistill.students.mlp.distill import distill_mlp

    base_loss, base_cfg = ctx.cfg.distill, dataclasses.replace(ctx.cfg.student_mlp, use_transfer=False)
    cfg = dataclasses.replace(
        base_cfg, embedding_dim=dim, num_threads=1, epochs=min(base_cfg.epochs, SWEEP_EPOCHS)
    )
    loss = dataclasses.replace(base_loss, kind="kd", temperature=temperature, alpha=alpha)
    out = ctx.run_dir / "sweep" / f"T{temperature:g}_a{alpha:g}_d{dim}"
    key = hashlib.sha256(json.dumps([to_mapping(cfg), to_mapping(loss), tree_sha256(ctx.soft_labels_dir),
                                     code_inputs(find_stage("distill-mlp").code)], sort_keys=True).encode()).hexdigest()  # fmt: skip
    cached = out / "sweep_row.json"
    if cached.exists() and read_json(cached).get("key") == key:
        row: dict[str, Any] = read_json(cached)["row"]
        print(f"sweep T={temperature:g} alpha={alpha:g} dim={dim}: reused (valid AUC {row['valid_auc']:.4f})")
        return row
    summary = distill_mlp(
        data_dir=ctx.data_dir, preprocess_dir=ctx.preprocess_dir, soft_dir=ctx.soft_labels_dir, out_dir=out,
        cfg=cfg, loss_cfg=loss, progress=False,
    )  # fmt: skip
    row = {"temperature": temperature, "alpha": alpha, "embedding_dim": dim,
           "params": summary["params"]["total"], "valid_auc": summary["valid"]["auc"]}  # fmt: skip
    atomic_write_json(cached, {"key": key, "row": row})
    print(f"sweep T={temperature:g} alpha={alpha:g} dim={dim}: valid AUC {row['valid_auc']:.4f}", flush=True)
    return row


def sweep(ctx: RunContext, workers: int) -> list[dict[str, Any]]:
    """MLP students over temperature x alpha, and over embedding sizes (privileged data); each point
    trains on one thread, ``workers`` points at a time (quality only: no timing is taken here)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    base_loss, dim0 = ctx.cfg.distill, ctx.cfg.student_mlp.embedding_dim
    grid = [(t, a, dim0) for t in (1.0, 4.0) for a in (0.0, 0.5)]
    grid += [(base_loss.temperature, base_loss.alpha, d) for d in (4, 16) if d != dim0]
    ctx_spawn = multiprocessing.get_context("spawn")  # no fork of a process that ran torch threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx_spawn) as pool:
        futures = [pool.submit(_sweep_point, ctx, t, a, d) for t, a, d in grid]
        return [f.result() for f in futures]


def plot_sweep(rows: list[dict[str, Any]], teacher: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        ax.scatter(r["params"], r["valid_auc"], color="#1f77b4")
        ax.annotate(f"T={r['temperature']:g} a={r['alpha']:g} d={r['embedding_dim']}", (r["params"], r["valid_auc"]),
                    fontsize=7, xytext=(4, 3), textcoords="offset points")  # fmt: skip
    ax.axhline(
        teacher["valid_auc"], color="#444444", linestyle="--", label=f"teacher ({teacher['params']:,} params)"
    )
    ax.set_xscale("log")
    ax.set_xlabel("student parameters (log)")
    ax.set_ylabel("validation AUC")
    ax.set_title("MLP student: quality vs size over temperature T and alpha (privileged data)")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "students_sweep.png", dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--shared", action="store_true", help="also an online run with shared embedding tables")
    ap.add_argument("--no-modes", action="store_true", help="offline only (no online and self runs)")
    ap.add_argument("--workers", type=int, default=2, help="sweep points trained at once (one thread each)")
    args = ap.parse_args()
    result: dict[str, Any] = {"scenarios": {}, "targets": {}, "machine": machine()}
    for name in args.scenarios:
        load = os.getloadavg()[0]
        ctx = run_scenario(name)
        table = scenario_table(ctx)
        result["bayes_auc"] = result.get("bayes_auc", {}) | {name: table.pop("_bayes_auc")}
        loads = {"offline": load}
        if not args.no_modes:
            for mode, student in (("online", "mlp_online"), ("self", "mlp_self")):
                loads[mode] = os.getloadavg()[0]
                table[student] = mode_rows(run_mode(ctx, mode), student, name)
            if args.shared:
                loads["online_shared"] = os.getloadavg()[0]
                shared = run_mode(ctx, "online", share_embeddings=True)
                table["mlp_online_shared"] = mode_rows(shared, "mlp_online", name)
        result.setdefault("load_average_at_start", {})[name] = loads
        result["scenarios"][name] = table
        result["targets"][name] = targets(name, table)
        if args.sweep and name == "privileged":
            rows = sweep(ctx, args.workers)
            meta = read_json(ctx.teacher_dir / "teacher.json")
            teacher = {"valid_auc": meta["metrics"]["valid_auc"], "params": meta["params"]["total"]}
            result["sweep"] = rows
            plot_sweep(rows, teacher)
    previous = RESULTS / "students.json"
    if "sweep" not in result and previous.exists() and "sweep" in (old := read_json(previous)):
        result["sweep"] = old["sweep"]  # not rerun (no --sweep): the last sweep, marked as such
        result["sweep_copied_from_previous_run"] = True
    write_result("students", result)
    for name, checks in result["targets"].items():
        for key, c in checks.items():
            print(
                f"{name:<14} {key:<34} {c['value']:+.4f} (target {c['target']:g}) {'PASS' if c['passed'] else 'MISS'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
