"""``recdistill init-schema``: infer schema.json (and a run config) from a sample of your click log.

Example::

    recdistill init-schema clicks.csv --label click --user user_id --time ts --out mylog/schema.json
    # prints a table (column, inferred kind, distinct values, nulls, example, why), writes
    # mylog/schema.json and mylog/run.yaml; edit them, then
    recdistill run --config mylog/run.yaml

Without ``--label`` it lists the columns that could be the label and stops. The rules are in
:mod:`recdistill.data.infer_schema`. Existing files are kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from recdistill.data.infer_schema import (
    SAMPLE_ROWS,
    format_table,
    infer_schema,
    label_candidates,
    read_sample,
)
from recdistill.data.readers import FORMATS, detect_format, resolve_source
from recdistill.errors import ConfigError, SchemaError
from recdistill.io_utils import atomic_write_text


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "init-schema",
        help="infer schema.json and a run config from a sample of your click log (then edit, then run)",
        description="Read a sample of FILE, a folder of parts or a glob, infer each column's kind, print "
        "what was inferred and why, and write schema.json plus a run config that splits the log.",
    )
    p.add_argument(
        "source", metavar="FILE|DIR|GLOB", help="the click log: one file, a folder of parts, or a glob"
    )
    p.add_argument(
        "--label",
        metavar="COL",
        help="the 0/1 label column (never guessed: without it, candidates are listed)",
    )
    p.add_argument(
        "--user", metavar="COL", help="user id column (per-user metrics, a user split; also a feature)"
    )
    p.add_argument(
        "--request", metavar="COL", help="request id column (per-request metrics, listwise distillation)"
    )
    p.add_argument(
        "--time", help="time column (numbers or dates): ignored as a feature, the log is split by it"
    )
    p.add_argument(
        "--row-key",
        metavar="COL",
        help="a column of unique integer row ids (default: rows keyed by position)",
    )
    p.add_argument("--categorical", default="", metavar="A,B", help="columns forced to be categorical ids")
    p.add_argument("--dense", default="", metavar="C,D", help="columns forced to be dense numbers")
    p.add_argument("--ignore", default="", metavar="E,F", help="columns not to use")
    p.add_argument("--format", choices=FORMATS, help="file format (default: from the file names)")
    p.add_argument(
        "--sample-rows", type=int, default=SAMPLE_ROWS, help=f"rows read (default {SAMPLE_ROWS:,})"
    )
    p.add_argument("--out", default="schema.json", help="schema file to write (default ./schema.json)")
    p.add_argument("--config-out", help="run config to write (default: run.yaml beside --out)")
    p.add_argument("--run-dir", help="run_dir of the run config (default runs/<log name>)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=run)


def _names(value: str) -> list[str]:
    return [c.strip() for c in value.split(",") if c.strip()]


def run(args: argparse.Namespace) -> int:
    paths = resolve_source(args.source)
    fmt = args.format or detect_format(paths[0])
    sample = read_sample(paths, fmt=fmt, rows=args.sample_rows)
    where = str(paths[0]) if len(paths) == 1 else f"{args.source} ({len(paths)} files)"
    if args.label is None:
        found = label_candidates(sample)
        listed = ", ".join(found) if found else "none with 0/1 values"
        raise SchemaError(
            f"{where}: --label is required (recdistill never guesses the label); candidates: {listed}"
        )
    inferred = infer_schema(
        sample,
        source=where,
        label=args.label,
        user=args.user,
        request=args.request,
        time=args.time,
        row_key=args.row_key or ("row_id" if fmt == "criteo" else None),  # Criteo's line numbers
        categorical=_names(args.categorical),
        dense=_names(args.dense),
        ignore=_names(args.ignore),
    )
    out = Path(args.out)
    config_out = Path(args.config_out) if args.config_out else out.with_name("run.yaml")
    for p in (out, config_out):
        if p.exists() and not args.force:
            raise ConfigError(f"{p} exists; edit it, or pass --force to overwrite it")
    print(format_table(inferred))
    atomic_write_text(out, json.dumps(inferred.schema, indent=2) + "\n")
    atomic_write_text(config_out, _run_config(args, out, paths[0]))
    print(f"\nwrote {out} and {config_out}")
    print(f"next: check the kinds in {out} (and the split in {config_out}), then")
    print(f"  recdistill run --config {config_out}")
    return 0


def _run_config(args: argparse.Namespace, schema_path: Path, first: Path) -> str:
    if args.time:
        split: dict[str, Any] = {"by": "time", "column": args.time}
    elif args.user:
        split = {"by": "user"}
    else:
        split = {"by": "random"}
    split.update({"fractions": [0.8, 0.1, 0.1], "seed": 0})
    data: dict[str, Any] = {
        "source": "files",
        "path": str(Path(args.source).absolute()) if not set("*?[") & set(args.source) else args.source,
        "schema": str(schema_path.absolute()),
        "split": split,
    }
    if args.format:
        data["format"] = args.format
    stem = first.name.split(".")[0] or "mylog"
    cfg = {"run_dir": args.run_dir or f"runs/{stem}", "data": data}
    header = (
        "# Written by `recdistill init-schema`; edit freely. Sections not given here (teacher,\n"
        "# student_mlp, gbdt, serving, loadtest, report) take their defaults: configs/demo.yaml\n"
        "# shows every key. split.by: time | user | random (whole requests when the schema has a\n"
        "# request_id); fractions are train, valid, test.\n"
    )
    return header + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)
