"""Stage 1 — warm-up: a tiny causal LM built from a config, trained with TRL's ``SFTTrainer``.

Input: the task settings, the model settings, the warm-up settings. Output (on disk): two
checkpoints of the one run, each saved with ``save_pretrained`` (weights, config, tokenizer) and
loadable with ``AutoModelForCausalLM.from_pretrained`` like any hub model — ``policy/`` (π_0,
the first to reach the policy target on the validation split) and ``phi_ref/`` (the first to reach
the reference target, the base of the DPO reward model) — plus ``warmup.json`` (the validation
checks and where each checkpoint was taken) and ``log_history.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..tasks.arithmetic import generate_splits, to_dataset
from .runtime import on_accelerator, pass_at_one, progress_callback
from .settings import ModelSettings, TaskSettings, WarmupSettings


def build_model(out_dir: Path, model: ModelSettings) -> Path:
    """Build the tokenizer and a randomly initialised model and save both to ``out_dir``."""
    from ..tasks.tiny_models import build_byte_tokenizer, build_tiny_causal_lm

    tokenizer = build_byte_tokenizer()
    lm = build_tiny_causal_lm(
        tokenizer,
        architecture=model.architecture,
        hidden_size=model.hidden_size,
        num_layers=model.num_layers,
        num_heads=model.num_heads,
        seed=model.init_seed,
    )
    lm.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _checkpoints(warmup: WarmupSettings, problems, out_dir: Path, tokenizer, checks: list, saved_at: dict):
    """A ``TrainerCallback`` that measures greedy validation pass@1 every ``check_every`` steps, saves
    ``policy/`` at the first check reaching ``policy_target`` and ``phi_ref/`` at a later one reaching
    ``reference_target``, and then stops the run."""
    from transformers import TrainerCallback

    def save(model, name: str, step: int) -> None:
        model.save_pretrained(out_dir / name)
        tokenizer.save_pretrained(out_dir / name)
        saved_at[name] = step

    class _Checkpoints(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % warmup.check_every:
                return
            accuracy, _ = pass_at_one(model, tokenizer, problems, greedy=True, max_new_tokens=16)
            checks.append({"step": state.global_step, "validation_pass@1": accuracy})
            if "policy" not in saved_at:
                if accuracy >= warmup.policy_target:
                    save(model, "policy", state.global_step)
            elif accuracy >= warmup.reference_target:
                save(model, "phi_ref", state.global_step)
                control.should_training_stop = True

    return _Checkpoints()


def warm_up(
    out_dir: Path, task: TaskSettings, model: ModelSettings, warmup: WarmupSettings, progress=None
) -> Path:
    """Supervised warm-up on (prompt, ``\\boxed{answer}``) pairs; writes ``policy/``, ``phi_ref/``,
    ``warmup.json`` and ``log_history.json``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    out_dir = Path(out_dir)
    init_dir = build_model(out_dir / "init", model)
    # loaded back by path, exactly as a hub checkpoint would be
    lm = AutoModelForCausalLM.from_pretrained(init_dir)
    tokenizer = AutoTokenizer.from_pretrained(init_dir)
    splits = generate_splits(**vars(task))
    args = SFTConfig(
        output_dir=str(out_dir / "trainer"),
        max_steps=warmup.max_steps,
        per_device_train_batch_size=warmup.batch_size,
        learning_rate=warmup.learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=warmup.warmup_steps,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=model.init_seed,
        use_cpu=not on_accelerator(),
        bf16=False,
        gradient_checkpointing=False,
    )
    checks: list[dict] = []
    saved_at: dict[str, int] = {}
    callbacks = [_checkpoints(warmup, splits["validation"], out_dir, tokenizer, checks, saved_at)]
    if progress is not None:
        callbacks.append(progress_callback(progress))
    train = to_dataset(splits["train"], with_solution=True)
    trainer = SFTTrainer(
        model=lm, args=args, train_dataset=train, processing_class=tokenizer, callbacks=callbacks
    )
    trainer.train()
    if progress is not None:
        progress(warmup.max_steps - trainer.state.global_step)  # the steps the early stop saved
    reached = {name: name in saved_at for name in ("policy", "phi_ref")}
    for name in ("policy", "phi_ref"):
        if name not in saved_at:
            # a target was not reached within max_steps: the last model stands in
            trainer.save_model(str(out_dir / name))
            tokenizer.save_pretrained(out_dir / name)
            saved_at[name] = trainer.state.global_step
    summary = {
        "policy_target": warmup.policy_target,
        "reference_target": warmup.reference_target,
        "reached": reached,
        "steps": saved_at,
        "checks": checks,
    }
    (out_dir / "warmup.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    shutil.rmtree(out_dir / "trainer", ignore_errors=True)
    shutil.rmtree(init_dir, ignore_errors=True)
    return out_dir
