"""The ``lco`` command line: one sub-command per area, each defined next to the code it runs.

Each area module exposes ``add_parser(subparsers)``, which registers its sub-command and sets
``func`` on the parsed namespace. Modules are imported only when the command line is parsed so
that ``lco --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command modules, in the order `lco --help` lists them
COMMAND_MODULES: tuple[str, ...] = ("lco.trainer.cli", "lco.eval.cli", "lco.gap.cli", "lco.demo.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lco",
        description="Stable RL post-training of LLMs with Logits Convex Optimization.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import TrainingDivergedError

    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, PermissionError, NotADirectoryError, TrainingDivergedError) as err:
        # Bad input, and a divergence the guard already explained, are one line naming what is
        # wrong, not a traceback.
        message = " ".join(str(err).split())
        # a divergence interrupts a progress bar mid-line: start the error on a line of its own
        start = "\n" if isinstance(err, TrainingDivergedError) else ""
        print(f"{start}lco {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
