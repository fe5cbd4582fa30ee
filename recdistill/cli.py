"""The ``recdistill`` command line: one verb per stage, plus ``run`` for the whole pipeline.

Each verb lives in ``recdistill/commands/<verb>.py`` and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` (``args -> exit code``); installed plugins add theirs (the
Triton layer's ``serve`` and ``loadtest``, see :mod:`recdistill.pipeline.plugins`). Errors derived from
:class:`recdistill.errors.RecDistillError` are printed as one clear line, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from recdistill.errors import RecDistillError
from recdistill.pipeline.plugins import plugins

# Order is the order of ``recdistill --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "run",
    "init-schema",
    "generate",
    "validate",
    "preprocess",
    "train-teacher",
    "score",
    "distill-mlp",
    "distill-gbdt",
    "export",
    "evaluate",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recdistill",
        description="Distil heavy recommendation rankers into small, fast students and prove they serve.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = [f"recdistill.commands.{name.replace('-', '_')}" for name in COMMAND_MODULES]
    modules += [m for plugin in plugins() for m in plugin.commands]
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def quiet_progress_when_logged() -> None:
    """Progress bars redraw every 0.1 s; in a log file (stderr not a terminal) that is thousands of
    lines per stage, so there they redraw every 30 s (``TQDM_MININTERVAL`` set by the user wins)."""
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_MININTERVAL", "30")


def quiet_third_party_noise() -> None:
    """Silence library messages that say nothing about this run: TorchRec's planner warns about
    dry-run size estimates on every sharding plan, DMP about a deprecated DDP argument it passes
    itself, and torch.fx about an API rename."""
    logging.getLogger("torchrec.distributed.planner").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*broadcast_buffers.*", category=FutureWarning)
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    quiet_progress_when_logged()
    quiet_third_party_noise()
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
