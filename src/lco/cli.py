"""The ``lco`` command line: one sub-command per area, each defined next to the code it runs.

Each area module exposes ``add_parser(subparsers)``, which registers its sub-command and sets
``func`` on the parsed namespace. Only the module of the command being run is imported: ``lco
--help`` lists the commands from :data:`COMMANDS` alone, so it loads neither torch nor TRL.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module defining it, its one-line help), in the order `lco --help` lists them.
# tests/test_cli_lazy.py checks that each help matches what the module registers.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "lco.trainer.cli",
        "Train a policy with LCO or a baseline (YAML config + --field overrides, as TRL's CLI).",
    ),
    "eval": (
        "lco.eval.cli",
        "Evaluate a policy: math pass@k, reward-model scores, judge win rate, multiple choice.",
    ),
    "gap": ("lco.gap.cli", "Gradient-Gap diagnostics and bandit reproductions (Suk & Duan)"),
    "demo": (
        "lco.demo.cli",
        "Run the paper's experiment in miniature (warm-up → reward model → RL → eval → report).",
    ),
}


def build_parser(load: str | None = "all") -> argparse.ArgumentParser:
    """The parser; ``load`` names the one command whose module is imported (``"all"``: every one)."""
    parser = argparse.ArgumentParser(
        prog="lco",
        description="Stable RL post-training of LLMs with Logits Convex Optimization.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if load in ("all", name):
            importlib.import_module(module_name).add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


def _command_of(argv: list[str]) -> str | None:
    # `lco` itself has no options but --help, so the first word that is not an option is the command
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    parser = build_parser(load=command if command in COMMANDS else None)
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
