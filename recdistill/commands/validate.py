"""``recdistill validate``: check data files against their schema and print a summary."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recdistill.data.schema import Schema
from recdistill.data.splits import SPLITS, find_split
from recdistill.data.validate import validate_file


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "validate",
        help="check data files against schema.json and print a summary",
    )
    p.add_argument("--data", required=True, help="directory with schema.json and split files, or one file")
    p.add_argument("--schema", help="schema.json (default: beside the data)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data = Path(args.data)
    schema = Schema.load(args.schema or (data if data.is_dir() else data.parent))
    files = (
        [(data.stem, data)]
        if data.is_file()
        else [(s, p) for s in SPLITS if (p := find_split(data, s)) is not None]
    )
    print(f"{'file':<40} {'rows':>10} {'ctr':>7} {'requests':>9} {'users':>8}")
    for split, path in files:
        s = validate_file(path, schema, labelled=split != "transfer")
        ctr = f"{s.ctr:.4f}" if s.labelled_rows else "-"
        print(f"{path!s:<40} {s.rows:>10} {ctr:>7} {s.requests or '-':>9} {s.users or '-':>8}")
    print(f"{len(files)} file(s) valid against {schema.source}")
    return 0
