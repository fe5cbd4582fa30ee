"""The ``recdistill`` command line: one verb per stage, plus ``run`` for the whole pipeline.

Each verb lives in ``recdistill/commands/<verb>.py`` and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` (``args -> exit code``). Errors derived from
:class:`recdistill.errors.RecDistillError` are printed as one clear line, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from recdistill.errors import RecDistillError

# Order is the order of ``recdistill --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "run",
    "generate",
    "validate",
    "preprocess",
    "train-teacher",
    "score",
    "distill-mlp",
    "distill-gbdt",
    "serve",
    "loadtest",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recdistill",
        description="Distil heavy recommendation rankers into small, fast students and prove they serve.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"recdistill.commands.{name.replace('-', '_')}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except RecDistillError as e:
        print(f"recdistill {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"recdistill {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
