"""``lco demo``: run the paper's experiment in miniature and write the report.

    lco demo --out lco-demo-out            # default: 8 methods × 2 seeds, ≈ 10 min on 2 cores
    lco demo --quick --out /tmp/smoke      # smoke test: 3 methods, 1 seed, tiny budget, ≈ 1.5 min
    lco demo --full --out lco-demo-full    # every method of Tables 1, 4, 5; 4 seeds
    lco demo --lr-sweep --out lco-demo-out # also: PPO, GRPO, LCO-KLD/LCH over a ladder of learning rates
    lco demo --study stability --out DIR   # choose on validation, confirm on test at 5 other seeds; ≈ 1 h

Every stage is cached under OUT/stages: running the same command again resumes where it stopped
(a killed run loses no finished stage) and rebuilds only what a changed setting affects.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import replace


def add_parser(subparsers) -> None:
    from .methods import METHODS

    p = subparsers.add_parser(
        "demo",
        help="Run the paper's experiment in miniature (warm-up → reward model → RL → eval → report).",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="lco-demo-out", help="output folder (default: lco-demo-out)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke test: tiny budget, 1 seed, 3 methods")
    size.add_argument("--full", action="store_true", help="every method of Tables 1, 4 and 5, 4 seeds")
    size.add_argument(
        "--study",
        choices=("stability", "stability-lean"),
        help="stability: LCO's options and the baselines' learning rates / KL weights chosen on the validation "
        "split (2 seeds), the defaults under test, the paper's form, GRPO ± KL and RLOO confirmed on the test "
        "split at 5 other seeds, with paired bootstrap intervals (see docs/demo.md); stability-lean: the "
        "confirmation first, no LCO-LCH/MSE selection, for a heavily shared machine",
    )
    p.add_argument(
        "--lr-sweep",
        action="store_true",
        help="also run PPO, GRPO, LCO-KLD and LCO-LCH over a ladder of learning rates (seed 0)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        metavar="NAME",
        help="methods to run, comma- or space-separated (default: the profile's); one of: "
        + ", ".join(METHODS),
    )
    p.add_argument(
        "--seeds",
        type=int,
        help="number of seeds, 0 … N−1 (default: 2; --quick 1, --full 4; --study: confirmation seeds, ≥ 5)",
    )
    p.add_argument("--workers", type=int, default=2, help="parallel worker processes (default: 2)")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="--study only: write the report from the stages already finished in --out (the finished runs "
        "only; nothing is trained or evaluated), e.g. while the study runs or after it was cut short",
    )
    p.set_defaults(func=run)


def settings_from_args(args):
    """The DemoSettings the flags ask for; every bad value is one ValueError, raised before any work."""
    from .methods import resolve_methods
    from .recipe import check_settings
    from .settings import profile_settings, study_settings, with_confirmation_seeds

    study = getattr(args, "study", None)
    if study is not None:
        if args.methods or args.lr_sweep:
            raise ValueError("--study runs its own methods and learning rates; drop --methods / --lr-sweep")
        settings = study_settings(study)
    else:
        profile = "quick" if args.quick else "full" if args.full else "default"
        settings = profile_settings(profile, lr_sweep=args.lr_sweep)
        if args.methods:
            names = tuple(n for item in args.methods for n in item.split(",") if n.strip())
            resolve_methods(names)
            settings = replace(settings, methods=names)
    if getattr(args, "report_only", False) and study is None:
        raise ValueError("--report-only needs --study")
    if args.seeds is not None and study is not None:
        if isinstance(args.seeds, bool) or args.seeds < 5:
            raise ValueError(
                f"--seeds must be at least 5 for a study (its confirmation seeds), got {args.seeds}"
            )
        settings = with_confirmation_seeds(settings, args.seeds)
    elif args.seeds is not None:
        settings = replace(settings, seeds=args.seeds)
    if isinstance(args.workers, bool) or args.workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {args.workers}")
    check_settings(settings)
    return settings


def _show_cache_warnings() -> None:
    """A stage that is rebuilt is announced on one line, not with a source excerpt."""
    from .cache import CacheWarning

    default = warnings.formatwarning

    def formatwarning(message, category, *args, **kwargs):
        if issubclass(category, CacheWarning):
            return f"lco demo: warning: {message}\n"
        return default(message, category, *args, **kwargs)

    warnings.formatwarning = formatwarning
    warnings.simplefilter("always", CacheWarning)


def run(args) -> int:
    from .recipe import check_output_folder, run_demo, run_study, study_report_from_cache

    _show_cache_warnings()
    settings = settings_from_args(args)
    out = check_output_folder(args.out)
    if settings.study is not None:
        print(
            f"lco demo --study {settings.study.name}: {settings.seeds} seeds, "
            f"{settings.rl.rollout_budget} rollouts per run; {args.workers} worker(s); output in {out}/",
            flush=True,
        )
        if getattr(args, "report_only", False):
            paths = study_report_from_cache(settings, out)
        else:
            paths = run_study(settings, out, workers=args.workers)
        report = paths["report"].read_text()
        print(
            "\n## What the numbers say" + report.split("## What the numbers say", 1)[1].split("\n## ", 1)[0]
        )
        print(f"report:  {paths['report']}\nresults: {paths['results']}\nfigures: {paths['figures']}/")
        return 0
    print(
        f"lco demo ({settings.profile}): {len(settings.methods)} method(s) × {settings.seeds} seed(s)"
        + (
            f", learning-rate sweep over {', '.join(f'{lr:g}' for lr in settings.lr_sweep)}"
            if settings.lr_sweep
            else ""
        )
        + f"; {args.workers} worker(s); output in {out}/",
        flush=True,
    )
    paths = run_demo(settings, out, workers=args.workers)
    report = paths["report"].read_text()
    table = report.split("## Results", 1)[1].split("\n## ", 1)[0]
    # a --quick report opens with the smoke-test warning: the terminal shows it above the numbers too
    banner = next((part for part in report.split("\n\n") if part.startswith("**Smoke test")), None)
    if banner is not None:
        print("\n" + banner)
    print("\n## Results" + table)
    print(f"report:  {paths['report']}\nresults: {paths['results']}\nfigures: {paths['figures']}/")
    return 0
