"""``lco train CONFIG.yaml [--field value ...]``: TRL's parser conventions (YAML config, CLI overrides).

Every ``LCOConfig`` (hence ``GRPOConfig``/``TrainingArguments``) field can be set in the YAML file
or on the command line; the command line wins. The script arguments below say what to train on.
``lco train CONFIG.yaml --help`` lists every field with its help.

An ``output_dir`` that holds another run's checkpoints or saved model is refused before anything
loads: resume it (``--resume_from_checkpoint true``), or start afresh with ``--overwrite_output_dir
true`` (its old checkpoints are deleted first, so that a later resume cannot pick them) or a new
folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any

# Which script arguments are ours (the rest belong to LCOConfig), listed for `lco train --help`.
_SCRIPT_HELP = """script arguments (also settable in the YAML):
  --model_name_or_path PATH_OR_ID   the policy (required)
  --dataset PATH_OR_ID              a local .json/.jsonl/.csv/.parquet file, a save_to_disk folder, or a hub id (required)
  --dataset_split SPLIT             default: train
  --reward_funcs NAME [NAME ...]    'math' (math-verify ±1, needs an 'answer' column) or 'module:function'
  --overwrite_output_dir BOOL       start afresh in an output_dir that holds another run (deletes its checkpoints)

model arguments (TRL's ModelConfig, as `trl grpo` takes them):
  --use_peft true --lora_r 16 --lora_alpha 32 --lora_target_modules q_proj v_proj   train a LoRA adapter
  --dtype bfloat16|float32|auto, --attn_implementation NAME, --model_revision REV, --load_in_4bit true, ...

Every LCOConfig / GRPOConfig / TrainingArguments field (about 100: objective, lco_beta, learning_rate,
max_steps, save_steps, resume_from_checkpoint, ...) works the same way, e.g. --objective lco_kld.
List them all, with their help, with:  lco train CONFIG.yaml --help
"""


@dataclass
class TrainScriptArguments:
    """What to train on; the policy and its loading (``model_name_or_path``, LoRA, dtype) are TRL's
    ``ModelConfig``, parsed beside it and kept in :attr:`model`."""

    dataset: str | None = field(
        default=None,
        metadata={"help": "Local .json/.jsonl/.csv/.parquet file, save_to_disk folder, or hub id."},
    )
    dataset_split: str = field(default="train", metadata={"help": "Split of a hub dataset or a DatasetDict."})
    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={"help": "Reward functions: 'math' or 'package.module:function'."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start afresh in an output_dir that holds another run's checkpoints or model (its "
            "checkpoint-N folders are deleted first). Without it such a folder is refused."
        },
    )
    model: Any = field(default=None, init=False, repr=False)  # TRL's ModelConfig, set by parse()

    @property
    def model_name_or_path(self) -> str | None:
        return None if self.model is None else self.model.model_name_or_path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="Train a policy with LCO or a baseline (YAML config + --field overrides, as TRL's CLI).",
        description=__doc__,
        epilog=_SCRIPT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=True,
    )
    parser.add_argument("config", help="YAML file with LCOConfig fields and the script arguments")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="--field value pairs overriding the YAML")
    parser.set_defaults(func=run)


def check_yaml(config_path: str) -> None:
    """The config file is YAML that parses to a mapping; otherwise one line with the file's line and column."""
    import yaml

    with open(config_path, encoding="utf-8") as f:
        try:
            document = yaml.safe_load(f)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(f"config file {config_path!r} is not valid YAML:{where}: {problem}") from err
    if document is not None and not isinstance(document, dict):
        raise ValueError(
            f"config file {config_path!r} must be a YAML mapping of field: value, got a {type(document).__name__}"
        )


def parse(config_path: str, overrides: list[str]):
    """(script arguments, LCOConfig) from a YAML file and overrides; validation happens here."""
    from trl import ModelConfig, TrlParser

    from .config import LCOConfig

    if not os.path.isfile(config_path):
        # the README's commands name the repository's examples/ relative to its root
        hint = (
            " (run the README's commands from the repository's root)"
            if config_path.startswith("examples/")
            else ""
        )
        raise FileNotFoundError(f"config file {config_path!r} does not exist{hint}")
    check_yaml(config_path)
    parser = TrlParser((TrainScriptArguments, LCOConfig, ModelConfig))
    script, config, script.model = parser.parse_args_and_config(["--config", config_path, *overrides])
    if not script.model_name_or_path:
        raise ValueError("model_name_or_path is required (in the YAML or as --model_name_or_path)")
    if not script.dataset:
        raise ValueError("dataset is required (in the YAML or as --dataset)")
    return script, config


TINY_EXAMPLE = "examples/tiny"
BUILD_TINY_EXAMPLE = f"python examples/make_tiny_example.py {TINY_EXAMPLE}"


def check_tiny_example_built(script: TrainScriptArguments) -> None:
    """``examples/tiny_local.yaml`` on a fresh clone: say which script builds its model and data."""
    for field_name in ("model_name_or_path", "dataset"):
        path = os.path.normpath(getattr(script, field_name))
        if path.startswith(TINY_EXAMPLE + os.sep) and not os.path.exists(path):
            raise ValueError(
                f"{field_name} {getattr(script, field_name)!r} does not exist: build the tiny example first "
                f"with  {BUILD_TINY_EXAMPLE}"
            )


def resume_request(value):
    """``resume_from_checkpoint`` as ``Trainer.train`` takes it: ``True`` for the newest, a path, or ``None``."""
    if isinstance(value, str) and value.lower() in ("true", "last"):
        return True  # the newest checkpoint in output_dir, as transformers' Trainer resolves it
    if isinstance(value, str) and value.lower() in ("false", "none", ""):
        return None
    return value


# what a finished run leaves in output_dir besides its checkpoints (``save_model``)
_SAVED_MODEL_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "adapter_model.safetensors",
)


def check_run_folder(output_dir: str, resume, overwrite: bool) -> list[str]:
    """Refuse an ``output_dir`` holding another run unless resuming or overwriting; the checkpoints found.

    Training into such a folder would overwrite ``checkpoint-10`` and the final model while leaving the
    old run's later checkpoints in place, so that a later ``--resume_from_checkpoint true`` resumes
    the *old* run.
    """
    from .checkpoints import checkpoints_newest_first

    checkpoints = checkpoints_newest_first(output_dir)
    if resume or overwrite:
        return checkpoints
    model = [name for name in _SAVED_MODEL_FILES if os.path.isfile(os.path.join(output_dir, name))]
    if checkpoints:
        names = ", ".join(os.path.basename(c) for c in reversed(checkpoints[:3]))
        more = f" and {len(checkpoints) - 3} more" if len(checkpoints) > 3 else ""
        raise ValueError(
            f"output_dir {output_dir!r} holds another run's checkpoints ({names}{more}); continue it with "
            "--resume_from_checkpoint true, or start afresh with --overwrite_output_dir true (deletes them) or a "
            "new --output_dir"
        )
    if model:
        raise ValueError(
            f"output_dir {output_dir!r} holds another run's saved model ({model[0]}); start afresh with "
            "--overwrite_output_dir true (replaces it) or choose a new --output_dir"
        )
    return checkpoints


def check_not_finished(output_dir: str, resume, max_steps: int) -> None:
    """A resume from a checkpoint that already reached ``max_steps`` is refused (transformers would train
    one more step and write ``checkpoint-(max_steps+1)``)."""
    from .checkpoints import resolve_resume_checkpoint

    if not resume or max_steps <= 0:
        return
    checkpoint = resolve_resume_checkpoint(output_dir, resume)
    state_file = os.path.join(os.fspath(checkpoint), "trainer_state.json")
    with open(state_file, encoding="utf-8") as f:
        step = int(json.load(f).get("global_step", 0))
    if step >= max_steps:
        raise ValueError(
            f"resume_from_checkpoint: {os.fspath(checkpoint)!r} is at step {step}, and max_steps={max_steps}: that "
            f"run is finished; raise --max_steps above {step} to train it further, or start afresh in a new "
            "--output_dir"
        )


def clear_old_run(checkpoints: list[str]) -> None:
    """``--overwrite_output_dir``: delete the old run's checkpoints, so that none of them is resumed later."""
    for folder in checkpoints:
        shutil.rmtree(folder)


def model_arguments(model_args, config) -> dict:
    """TRL's ``ModelConfig`` applied as ``trl grpo`` applies it: revision, attention and dtype into
    ``model_init_kwargs`` (the config's own ``model_init_kwargs`` win), and the LoRA / quantization configs
    for the trainer (``get_peft_config``: a ``LoraConfig`` from ``--use_peft --lora_*``)."""
    from trl import get_peft_config, get_quantization_config

    init = dict(
        revision=model_args.model_revision,
        trust_remote_code=config.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    init.update(config.model_init_kwargs or {})
    config.model_init_kwargs = init
    return {
        "peft_config": get_peft_config(model_args),
        "quantization_config": get_quantization_config(model_args),
    }


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
    check_tiny_example_built(script)
    resume = resume_request(config.resume_from_checkpoint)
    # the run folder, paths, extras and β first: every one of these would otherwise surface after a model load
    old_checkpoints = check_run_folder(config.output_dir, resume, script.overwrite_output_dir)
    model_field = "model_name_or_path"
    check_before_loading(
        config, script.model_name_or_path, auxiliary_model_paths(config), model_field=model_field
    )
    check_not_finished(config.output_dir, resume, config.max_steps)
    reward_funcs = resolve_rewards(script.reward_funcs)
    dataset = load_train_dataset(script.dataset, script.dataset_split)
    check_train_dataset(dataset)
    trainer = LCOTrainer(
        model=script.model_name_or_path,
        reward_funcs=reward_funcs or None,
        args=config,
        train_dataset=dataset,
        **model_arguments(script.model, config),
    )
    if script.overwrite_output_dir and not resume:
        # only now: a bad input found above has deleted nothing; one process deletes, the others wait
        if trainer.accelerator.is_main_process:
            clear_old_run(old_checkpoints)
        trainer.accelerator.wait_for_everyone()
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(config.output_dir)
    print(f"lco train: saved the policy to {config.output_dir}")
    return 0
