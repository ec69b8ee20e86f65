"""``lco gap bandit``: reproduce the bandit figures of the Gradient-Gap paper.

    lco gap bandit --contextual --out DIR   # Fig. 1 (§6.1)
    lco gap bandit --mab --out DIR          # Fig. 4 (App. I.1)
    lco gap bandit --threshold --out DIR    # Theorem 2 step-size threshold + GRPO vs Dr. GRPO (eqs. 17–18)

Each run writes its PNGs and one JSON holding the configuration, the wall-clock runtime and
every plotted number into DIR. Without the ``lco`` entry point the same command is
``python -m lco.gap.cli bandit --mab --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from . import bandits, figures


def _writable_directory(value: str) -> Path:
    """argparse type for --out: create the directory and prove it is writable before any work."""
    path = Path(value)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".lco-write-check-"):
            pass
    except OSError as error:
        raise argparse.ArgumentTypeError(
            f"cannot write to output directory {value!r}: {error.strerror or error}"
        ) from None
    return path


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not (number > 0 and math.isfinite(number)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {value}")
    return number


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``bandit`` sub-command to a ``gap`` parser (shared by ``lco gap`` and ``main``)."""
    commands = parser.add_subparsers(dest="gap_command", required=True, metavar="{bandit}")
    bandit = commands.add_parser(
        "bandit",
        help="exact-gradient bandit experiments of the Gradient-Gap paper (Figs. 1, 4, Theorem 2)",
        description="Run one bandit experiment and write its PNG figures and a JSON of the numbers into --out.",
    )
    mode = bandit.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--contextual",
        dest="mode",
        action="store_const",
        const="contextual",
        help="Fig. 1: REINFORCE on the linear contextual bandit of §6.1",
    )
    mode.add_argument(
        "--mab",
        dest="mode",
        action="store_const",
        const="mab",
        help="Fig. 4: REINFORCE on the 100-armed bandit of App. I.1",
    )
    mode.add_argument(
        "--threshold",
        dest="mode",
        action="store_const",
        const="threshold",
        help="constant-η sweep on the Theorem 2 instance, and GRPO vs Dr. GRPO step sizes (eqs. 17–18)",
    )
    bandit.add_argument(
        "--out", required=True, type=_writable_directory, help="output directory (created if missing)"
    )
    bandit.add_argument(
        "--seed", type=int, default=0, help="random seed (--threshold is deterministic; default 0)"
    )
    bandit.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="number of updates K (defaults: contextual 2000, mab 10000, threshold 3000 per run)",
    )
    bandit.add_argument(
        "--eta",
        type=_positive_float,
        default=None,
        help="REINFORCE step size η for --contextual/--mab (default 0.1); --threshold sweeps η itself",
    )
    bandit.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bars")
    bandit.set_defaults(func=run_bandit, bandit_parser=bandit)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``gap`` (with its ``bandit`` sub-command) on the ``lco`` command's subparsers."""
    gap = subparsers.add_parser(
        "gap",
        help="Gradient-Gap diagnostics and bandit reproductions (Suk & Duan)",
        description="Gradient-Gap toolkit: reproduce the paper's bandit experiments.",
    )
    configure_parser(gap)
    return gap


def _jsonable(value):
    """Plain JSON: numbers rounded to 6 significant digits (the figures need no more), inf/nan as strings."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    number = float(value)
    return float(f"{number:.6g}") if math.isfinite(number) else str(number)


def _experiments(args: argparse.Namespace) -> tuple[str, Callable[[], dict], list[tuple[str, Callable, str]]]:
    """(name, experiment thunk, [(result key, plot function, PNG name)]) for the chosen mode."""
    progress = not args.no_progress
    reinforce = {} if args.steps is None else {"steps": args.steps}
    if args.eta is not None:
        reinforce["eta"] = args.eta
    if args.mode == "contextual":
        return (
            "contextual_bandit",
            lambda: {
                "contextual_bandit": bandits.contextual_bandit(seed=args.seed, progress=progress, **reinforce)
            },
            [("contextual_bandit", figures.plot_contextual_bandit, "fig1_contextual_bandit.png")],
        )
    if args.mode == "mab":
        return (
            "multi_armed_bandit",
            lambda: {
                "multi_armed_bandit": bandits.multi_armed_bandit(
                    seed=args.seed, progress=progress, **reinforce
                )
            },
            [("multi_armed_bandit", figures.plot_multi_armed_bandit, "fig4_multi_armed_bandit.png")],
        )
    threshold_steps = {} if args.steps is None else {"steps": args.steps}
    return (
        "step_size_threshold",
        lambda: {
            "step_size_threshold": bandits.step_size_threshold(progress=progress, **threshold_steps),
            "grpo_vs_dr_grpo_step_sizes": bandits.grpo_vs_dr_grpo_step_sizes(),
        },
        [
            ("step_size_threshold", figures.plot_step_size_threshold, "step_size_threshold.png"),
            ("grpo_vs_dr_grpo_step_sizes", figures.plot_grpo_vs_dr_grpo, "grpo_vs_dr_grpo_step_sizes.png"),
        ],
    )


def run_bandit(args: argparse.Namespace) -> int:
    """Run the chosen experiment, write the PNGs and ``<experiment>.json`` into ``args.out``."""
    if args.mode == "threshold" and args.eta is not None:
        args.bandit_parser.error("--eta applies to --contextual and --mab; --threshold sweeps η itself")
    name, experiment, plots = _experiments(args)
    start = time.perf_counter()
    results = experiment()
    runtime = time.perf_counter() - start
    written = [str(plot(results[key], args.out / png)) for key, plot, png in plots]
    json_path = args.out / f"{name}.json"
    payload = {
        "command": "lco gap bandit --" + args.mode,
        "runtime_seconds": runtime,
        "figures": written,
        **results,
    }
    json_path.write_text(json.dumps(_jsonable(payload)) + "\n")
    for path in [*written, str(json_path)]:
        print(f"wrote {path}")
    print(f"{name}: experiment took {runtime:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m lco.gap.cli bandit --mab --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="lco gap", description="Gradient-Gap toolkit: the paper's bandit experiments."
    )
    configure_parser(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
