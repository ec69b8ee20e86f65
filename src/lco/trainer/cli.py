"""``lco train CONFIG.yaml [--field value ...]``: TRL's parser conventions (YAML config, CLI overrides).

Every ``LCOConfig`` (hence ``GRPOConfig``/``TrainingArguments``) field can be set in the YAML file
or on the command line; the command line wins. The script arguments below say what to train on.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

# Which script arguments are ours (the rest belong to LCOConfig), listed for `lco train --help`.
_SCRIPT_HELP = """script arguments (also settable in the YAML):
  --model_name_or_path PATH_OR_ID   the policy (required)
  --dataset PATH_OR_ID              a local .json/.jsonl/.csv/.parquet file, a save_to_disk folder, or a hub id (required)
  --dataset_split SPLIT             default: train
  --reward_funcs NAME [NAME ...]    'math' (math-verify ±1, needs an 'answer' column) or 'module:function'
"""


@dataclass
class TrainScriptArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The policy: local path or hub id."}
    )
    dataset: str | None = field(
        default=None,
        metadata={"help": "Local .json/.jsonl/.csv/.parquet file, save_to_disk folder, or hub id."},
    )
    dataset_split: str = field(default="train", metadata={"help": "Split of a hub dataset or a DatasetDict."})
    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={"help": "Reward functions: 'math' or 'package.module:function'."},
    )


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="Train a policy with LCO or a baseline (YAML config + --field overrides, as TRL's CLI).",
        description=__doc__,
        epilog=_SCRIPT_HELP
        + "\nAny LCOConfig / GRPOConfig field works the same way, e.g. --objective lco_kld.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=True,
    )
    parser.add_argument("config", help="YAML file with LCOConfig fields and the script arguments")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="--field value pairs overriding the YAML")
    parser.set_defaults(func=run)


def parse(config_path: str, overrides: list[str]):
    """(script arguments, LCOConfig) from a YAML file and overrides; validation happens here."""
    from trl import TrlParser

    from .config import LCOConfig

    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"config file {config_path!r} does not exist")
    parser = TrlParser((TrainScriptArguments, LCOConfig))
    script, config = parser.parse_args_and_config(["--config", config_path, *overrides])
    if not script.model_name_or_path:
        raise ValueError("model_name_or_path is required (in the YAML or as --model_name_or_path)")
    if not script.dataset:
        raise ValueError("dataset is required (in the YAML or as --dataset)")
    return script, config


def resolve_rewards(names: list[str]) -> list:
    """Reward functions by name; ``module:function`` also finds a module in the working directory.

    ``python -m`` puts the working directory on ``sys.path`` but the ``lco`` console script does
    not, so a ``rewards.py`` next to the config would otherwise need ``PYTHONPATH=.``.
    """
    from ..rewards import resolve_reward

    cwd = os.getcwd()
    if any(":" in name for name in names) and cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)  # after site-packages: a local file never shadows an installed package
    return [resolve_reward(name) for name in names]


def run(args: argparse.Namespace) -> int:
    from .data import check_train_dataset, load_train_dataset
    from .preflight import check_before_loading
    from .trainer import LCOTrainer, auxiliary_model_paths

    overrides = [a for a in args.overrides if a != "--"]
    script, config = parse(args.config, overrides)
    # paths, extras and β first: every one of these would otherwise surface after a model load
    check_before_loading(config, script.model_name_or_path, auxiliary_model_paths(config))
    reward_funcs = resolve_rewards(script.reward_funcs)
    dataset = load_train_dataset(script.dataset, script.dataset_split)
    check_train_dataset(dataset)
    trainer = LCOTrainer(
        model=script.model_name_or_path, reward_funcs=reward_funcs or None, args=config, train_dataset=dataset
    )
    resume = config.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "last"):
        resume = True  # the newest checkpoint in output_dir, as transformers' Trainer resolves it
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(config.output_dir)
    print(f"lco train: saved the policy to {config.output_dir}")
    return 0
