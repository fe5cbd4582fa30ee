"""``report.md`` and a self-contained ``report.html`` from measured numbers.

Inputs are the evaluation results (quality, sizes, calibration tables; ``evaluation.json``) and
the load-test results (served latency per model; ``loadtest/summary.json``). The recommendation
and the distillation verdicts come from :mod:`recdistill.report.recommendation` (validation
numbers choose, test numbers report).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recdistill.evaluate.candidates import QUALITY_COLUMNS, metric
from recdistill.io_utils import atomic_write_text
from recdistill.report import charts
from recdistill.report.recommendation import distillation_verdicts, recommend

LATENCY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
    ("p99_spread_ms", "p99 spread over windows ms", "{0[0]:.2f}–{0[1]:.2f}"),
    ("p999_ms", "p99.9 ms", "{:.2f}"),
    ("achieved_rps", "achieved req/s", "{:.0f}"),
    ("reachable", "rate reached", "{}"),
    ("errors", "errors", "{:d}"),
    ("capacity_rps", "capacity at target (req/s)", "{:.0f}"),
)


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _table(
    rows: Mapping[str, Mapping[str, Any]], columns: tuple[tuple[str, str, str], ...]
) -> list[list[str]]:
    present = [c for c in columns if any(metric(r, c[0]) is not None for r in rows.values())]
    out = [["model", *[h for _, h, _ in present]]]
    for name, r in rows.items():
        out.append([name, *[_fmt(metric(r, k), f) for k, _, f in present]])
    return out


def _md_table(t: list[list[str]]) -> str:
    lines = ["| " + " | ".join(t[0]) + " |", "|" + "---|" * len(t[0])]
    lines += ["| " + " | ".join(r) + " |" for r in t[1:]]
    return "\n".join(lines)


def _html_table(t: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in t[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(
    run_dir: Path,
    *,
    evaluation: Mapping[str, Any],
    loadtest: Mapping[str, Any] | None,
    title: str,
    machine: str,
    choices: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``report_assets/*.png``; returns the two paths."""
    assets = run_dir / "report_assets"
    models = evaluation["models"]
    images: list[tuple[str, Path]] = []
    served = (loadtest or {}).get("models", {})
    target = float(loadtest["target_p99_ms"]) if loadtest else None
    points = [
        (name, float(served[m["served_as"]]["p99_ms"]), float(m["auc"]), str(m.get("role", "student")))
        for name, m in models.items()
        if m.get("served_as") in served
    ]
    if points:
        images.append(
            (
                "Quality against served p99 latency",
                charts.quality_vs_latency(points, target_ms=target, out=assets / "quality_vs_latency.png"),
            )
        )
    tables = {n: m["reliability"] for n, m in models.items() if m.get("reliability")}
    if tables:
        images.append(("Calibration", charts.reliability_diagrams(tables, out=assets / "reliability.png")))
    lat = {n: m["latencies_ms"] for n, m in served.items() if m.get("latencies_ms")}
    if lat:
        images.append(
            ("Latency CDFs", charts.latency_cdfs(lat, target_ms=target, out=assets / "latency_cdf.png"))
        )
    sizes = {n: (int(m.get("params", 0)), int(m.get("bytes", 0))) for n, m in models.items() if "params" in m}
    if sizes:
        images.append(("Model sizes", charts.model_sizes(sizes, out=assets / "model_sizes.png")))

    rec = recommend(evaluation, loadtest)
    quality = _table(models, QUALITY_COLUMNS)
    latency = _table(served, LATENCY_COLUMNS) if served else None
    window_note = str((loadtest or {}).get("windows", {}).get("note", ""))  # how the p99s were measured
    bayes = evaluation.get("bayes_auc")

    verdicts = distillation_verdicts(evaluation)
    md: list[str] = [f"# {title}", "", "## Recommendation", "", rec.text, ""]
    if verdicts:
        md += ["## Did distillation pay off?", "", *[f"- {v}" for v in verdicts], ""]
    choice_lines = choices_markdown(evaluation, choices or {})
    if choice_lines:
        md += ["## What was chosen on the validation split", "", *choice_lines, ""]
    md += ["## Quality on the test split", "", _CHOICE_NOTE, ""]
    if bayes is not None:
        md += [f"Bayes-optimal AUC (from the generator's true click probability): {bayes:.4f}.", ""]
    md += [_md_table(quality), ""]
    if latency:
        md += [
            "## Served latency (real Triton Inference Server)",
            "",
            f"Open loop, Poisson arrivals at {loadtest['rate']:g} req/s, {loadtest['candidates']} candidates "  # type: ignore[index]
            f"per request, gRPC, latency from the scheduled start. Machine: {machine}. "
            "Triton and the load generator share the same cores.",
            "",
            _md_table(latency),
            "",
            *([window_note, ""] if window_note else []),
        ]
    for caption, path in images:
        md += [f"## {caption}", "", f"![{caption}]({path.relative_to(run_dir)})", ""]
    md_path = atomic_write_text(run_dir / "report.md", "\n".join(md))

    body = [f"<h1>{html.escape(title)}</h1>", "<h2>Recommendation</h2>", f"<p>{_md_inline(rec.text)}</p>"]
    if verdicts:
        body += [
            "<h2>Did distillation pay off?</h2>",
            "<ul>" + "".join(f"<li>{_md_inline(v)}</li>" for v in verdicts) + "</ul>",
        ]
    if choice_lines:
        body += ["<h2>What was chosen on the validation split</h2>", _md_block_html(choice_lines)]
    body += ["<h2>Quality on the test split</h2>", f"<p>{_md_inline(_CHOICE_NOTE)}</p>"]
    if bayes is not None:
        body.append(f"<p>Bayes-optimal AUC: {bayes:.4f}.</p>")
    body.append(_html_table(quality))
    if latency:
        body += [
            "<h2>Served latency (real Triton Inference Server)</h2>",
            f"<p>Open loop at {loadtest['rate']:g} req/s, {loadtest['candidates']} candidates per request. "  # type: ignore[index]
            f"Machine: {html.escape(machine)}. Triton and the load generator share the same cores.</p>",
            _html_table(latency),
            *([f"<p>{html.escape(window_note)}</p>"] if window_note else []),
        ]
    for caption, path in images:
        data = base64.b64encode(path.read_bytes()).decode()
        body += [
            f"<h2>{html.escape(caption)}</h2>",
            f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">',
        ]
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    html_path = atomic_write_text(run_dir / "report.html", page)
    return md_path, html_path


_CHOICE_NOTE = (
    "`served as` names the variant of each student that is served: the one with the highest validation AUC "
    "(`valid AUC`); the other columns are measured on the test split, which chooses nothing."
)


def choices_markdown(evaluation: Mapping[str, Any], choices: Mapping[str, Any]) -> list[str]:
    """Markdown lines: the teacher's epochs, the soft-label method, each student's search and the
    served variants, every one with the validation numbers that decided it."""
    lines: list[str] = []
    t = choices.get("teacher")
    if t and t.get("epochs_run"):
        per_epoch = ", ".join(f"{x:.4f}" for x in t["valid_logloss"] if x is not None)
        lines.append(f"- Teacher: trained {t['epochs_run']} epoch(s), kept epoch {t['best_epoch']} "
                     f"(validation logloss by epoch: {per_epoch}).")  # fmt: skip
    sl = choices.get("soft_labels")
    if sl:
        why = f" Chosen by {sl['why']}." if sl.get("why") else ""
        if sl["method"] == "out_of_fold" and sl.get("folds"):
            f = sl["folds"]
            lines.append(f"- Soft labels of the training rows: out of fold ({f['folds']} fold teachers, folds by "
                         f"{f['group_by']}; validation/test/transfer rows scored by "
                         f"{'the full teacher' if sl.get('heldout') == 'full' else 'the fold teachers mean'}).{why}")  # fmt: skip
        else:
            lines.append(
                f"- Soft labels of the training rows: in sample (the full teacher scored its own training rows).{why}"
            )
    for family, search in (choices.get("search") or {}).items():
        lines += [
            "",
            f"Distillation settings of `{family}_distilled` (every grid point, validation AUC):",
            "",
        ]
        lines += ["| point | settings | valid AUC | valid logloss |", "|---|---|---|---|"]
        for name, p in search["points"].items():
            mark = " **(chosen)**" if name == search["chosen"] else ""
            settings = ", ".join(f"{k}={v:g}" for k, v in p["changes"].items()) or "base"
            lines.append(f"| {name}{mark} | {settings} | {p['valid_auc']:.4f} | {p['valid_logloss']:.4f} |")
    selection = evaluation.get("selection") or {}
    served = [(s, sel) for s, sel in selection.items() if len(sel.get("valid_auc", {})) > 1]
    if served:
        lines += [
            "",
            "Served variant of each student (highest validation AUC; hard-label twins compete):",
            "",
        ]
        for s, sel in served:
            aucs = ", ".join(f"`{n}` {v:.4f}" for n, v in sel["valid_auc"].items())
            lines.append(f"- `{s}` serves `{sel['served']}` ({aucs}).")
    return lines


def _md_block_html(lines: list[str]) -> str:
    """The few markdown shapes :func:`choices_markdown` writes (list items, tables, paragraphs)."""
    out: list[str] = []
    table: list[list[str]] = []
    for line in [*lines, ""]:
        if line.startswith("|"):
            if not set(line) <= set("|-"):
                table.append([c.strip() for c in line.strip("|").split("|")])
            continue
        if table:
            head = "".join(f"<th>{_md_inline(h)}</th>" for h in table[0])
            rows = "".join(
                "<tr>" + "".join(f"<td>{_md_inline(c)}</td>" for c in r) + "</tr>" for r in table[1:]
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            table = []
        if line.startswith("- "):
            out.append(f"<p>{_md_inline(line[2:])}</p>")
        elif line:
            out.append(f"<p>{_md_inline(line)}</p>")
    return "\n".join(out)


def _md_inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
    "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}"
    "th{background:#f4f4f4}img{max-width:100%;border:1px solid #eee}"
)
