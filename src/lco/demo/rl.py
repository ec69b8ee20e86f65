"""Stage 3 — RL: one ``LCOTrainer`` run of one method, seed and learning rate from the warm-up checkpoint.

Every run gets the same *rollout budget*: the number of completions it samples. A step consumes
``batch_size`` completions; PPO optimises each rollout batch for ``ppo_epochs`` (4, TRL's former
default) steps, so it takes 4× the optimizer steps of the others for the same rollouts.

Output (on disk): ``model/`` (the final policy), ``log_history.json`` (TRL's per-step log:
``grad_norm``, ``reward``, ``entropy``, the ``lco/*`` dynamics metrics), ``curve.json`` (greedy
pass@1 on a fixed set of test problems vs rollouts seen — Fig. 7 and the collapse flag) and
``run.json`` (steps, rollouts, wall time, and ``status``: ``ok``, or ``diverged`` when the trainer's
non-finite guard stopped it — a result, not a crash).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

from ..objectives.registry import OBJECTIVE_SPECS
from ..rewards import math_verify_reward
from ..tasks.arithmetic import generate_splits, to_dataset
from .methods import Method
from .runtime import DPOSequenceReward, on_accelerator, pass_at_one, progress_callback, rollouts_after
from .settings import RLSettings, TaskSettings


def _lco_config_default(name: str):
    from ..trainer import LCOConfig

    return next(f.default for f in dataclasses.fields(LCOConfig) if f.name == name)


def lco_default_changes(method: Method) -> dict:
    """The stability options an LCO row inherits from ``LCOConfig``'s defaults for its advantage
    (:func:`lco.trainer.config.default_lco_options`, at β = 1: the key holds ``rl.lco_beta`` too) where
    those differ from the paper's form. They go into the RL stage's cache key, so that changing the
    defaults rebuilds the LCO runs they affect and no other stage."""
    from ..objectives.registry import OBJECTIVE_SPECS
    from ..trainer.config import default_lco_options
    from .methods import PAPER_FORM

    if not method.trained or not OBJECTIVE_SPECS[method.objective].accepts_lco_options:
        return {}
    own = method.options
    defaults = default_lco_options(method.objective, method.advantage)
    return {name: defaults[name] for name, paper in PAPER_FORM if name not in own and defaults[name] != paper}


def iterations_per_rollout(method: Method) -> int:
    """Optimizer steps taken on each rollout batch (PPO's epochs; 1 for every other method)."""
    field = OBJECTIVE_SPECS[method.objective].iterations_field
    return 1 if field is None else int(_lco_config_default(field))


def schedule(method: Method, rl: RLSettings, curve_every: int | None = None) -> dict:
    """Steps, rollouts and the curve's evaluation interval of a run under the rollout budget
    (``curve_every`` rollouts between two curve points; default ``rl.curve_every``)."""
    curve_every = rl.curve_every if curve_every is None else curve_every
    if rl.rollout_budget % rl.batch_size or curve_every % rl.batch_size:
        raise ValueError(
            f"rollout_budget ({rl.rollout_budget}) and curve_every ({curve_every}) must be multiples of "
            f"the RL batch size ({rl.batch_size})"
        )
    if rl.batch_size % method.num_generations:
        raise ValueError(f"RL batch size {rl.batch_size} is not a multiple of {method.name}'s group size")
    iterations = iterations_per_rollout(method)
    rounds = rl.rollout_budget // rl.batch_size
    return {
        "max_steps": rounds * iterations,
        "iterations": iterations,
        "rollouts": rounds * rl.batch_size,
        "curve_every_steps": curve_every // rl.batch_size * iterations,
    }


def curve_callback(
    problems, tokenizer, every_steps: int, iterations: int, rl: RLSettings, points: list, start: bool = True
):
    """Greedy pass@1 on ``problems`` at step 0 (unless ``start`` is false: the starting policy's point
    is then taken from its own evaluation), every ``every_steps`` steps and at the last step."""
    from transformers import TrainerCallback

    def measure(model, step: int) -> None:
        accuracy, verdicts = pass_at_one(
            model, tokenizer, problems, greedy=True, max_new_tokens=rl.max_completion_length
        )
        points.append(
            {
                "step": step,
                "rollouts": rollouts_after(step, iterations, rl.batch_size),
                "pass@1": accuracy,
                # per problem, in order ("1" correct): the study pairs two curves problem by problem
                "correct": "".join("1" if ok else "0" for _, ok in verdicts),
            }
        )

    class _Curve(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if start and not points:
                measure(model, 0)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % every_steps == 0 or state.global_step == state.max_steps:
                measure(model, state.global_step)

    return _Curve()


def lco_config(
    method: Method,
    seed: int,
    learning_rate: float,
    rl: RLSettings,
    run: dict,
    output_dir: str,
    rm: dict | None,
):
    """The ``LCOConfig`` of a run: the method's objective × advantage with its own defaults, the
    settings shared by every method (batch, budget, sampling, learning rate), then the method's
    ``lco_options`` (the stability options of an ablation row)."""
    from ..trainer import LCOConfig

    fields = {f.name for f in dataclasses.fields(LCOConfig)}
    extra = {}
    if rm is not None:
        extra.update(reward_model_path=rm["phi_dpo"], reference_reward_model_path=rm["phi_ref"])
    if "gap_every" in fields:
        # Gradient-Gap metrics (gap/M, gap/delta_mu, …) where the trainer offers them; the report
        # plots M(K) against pass@1 when they are there
        extra["gap_every"] = rl.dynamics_every
    if method.reward == "dpo":
        extra["reward_weights"] = [1.0, 0.0]  # the DPO reward drives; the rule reward is only logged
    kwargs = dict(
        output_dir=output_dir,
        objective=method.objective,
        advantage=method.advantage,
        lco_beta=rl.lco_beta,
        num_generations=method.num_generations,
        per_device_train_batch_size=rl.batch_size,
        max_steps=run["max_steps"],
        learning_rate=learning_rate,
        lr_scheduler_type=rl.lr_scheduler,
        temperature=rl.temperature,
        top_p=rl.top_p,
        max_completion_length=rl.max_completion_length,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=seed,
        use_cpu=not on_accelerator(),
        bf16=False,
        gradient_checkpointing=False,
        dynamics_every=rl.dynamics_every,
        **extra,
    )
    # the row's own LCO options (an ablation variant) override the shared defaults above; a row's
    # β_negative None is the paper's one β for both signs, which LCOConfig takes as β_negative = β
    # (its None means "from the advantage")
    options = method.options
    if "lco_beta_negative" in options and options["lco_beta_negative"] is None:
        options["lco_beta_negative"] = rl.lco_beta
    kwargs.update(options)
    return LCOConfig(**kwargs)


def train_policy(
    out_dir: Path,
    method: Method,
    seed: int,
    learning_rate: float,
    rl: RLSettings,
    task: TaskSettings,
    policy_path: str,
    rm: dict | None = None,
    curve: dict | None = None,
    progress=None,
) -> Path:
    """One RL run; writes ``model/``, ``log_history.json``, ``curve.json``, ``run.json``.

    ``curve`` (``{"split", "problems", "every", "start"}``) says where the greedy pass@1 curve is
    measured: the first ``problems`` of ``split`` every ``every`` rollouts, and at step 0 if ``start``;
    by default the first ``rl.curve_problems`` test problems every ``rl.curve_every`` rollouts."""
    from transformers import AutoTokenizer

    from ..trainer import LCOTrainer
    from ..trainer.guard import NonFiniteGradientError

    out_dir = Path(out_dir)
    curve = curve or {"split": "test", "problems": rl.curve_problems, "every": rl.curve_every, "start": True}
    run = schedule(method, rl, curve["every"])
    splits = generate_splits(**vars(task))
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    reward_funcs = [math_verify_reward]
    if method.reward == "dpo":
        reward_funcs = [DPOSequenceReward(rm["phi_dpo"], rm["phi_ref"], rm["beta"]), math_verify_reward]
    args = lco_config(method, seed, learning_rate, rl, run, str(out_dir / "trainer"), rm)
    points: list[dict] = []
    callbacks = [
        curve_callback(
            splits[curve["split"]][: curve["problems"]],
            tokenizer,
            run["curve_every_steps"],
            run["iterations"],
            rl,
            points,
            start=curve["start"],
        )
    ]
    if progress is not None:
        callbacks.append(progress_callback(progress))
    trainer = LCOTrainer(
        model=policy_path,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=to_dataset(splits["train"]),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    status, error = "ok", None
    start = time.time()
    try:
        trainer.train()
    except NonFiniteGradientError as err:
        # The guard applied no bad update: the weights are those of the last finite step.
        status, error = "diverged", str(err)
    seconds = time.time() - start
    if progress is not None and trainer.state.global_step < run["max_steps"]:
        progress(run["max_steps"] - trainer.state.global_step)
    trainer.save_model(str(out_dir / "model"))
    tokenizer.save_pretrained(out_dir / "model")
    shutil.rmtree(out_dir / "trainer", ignore_errors=True)
    (out_dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    (out_dir / "curve.json").write_text(json.dumps(points, indent=1))
    steps = trainer.state.global_step
    record = {
        "method": method.name,
        "seed": seed,
        "learning_rate": learning_rate,
        "status": status,
        "error": error,
        "steps": steps,
        "max_steps": run["max_steps"],
        "rollouts": rollouts_after(steps, run["iterations"], rl.batch_size),
        "rollout_budget": run["rollouts"],
        "num_generations": method.num_generations,
        "iterations_per_rollout": run["iterations"],
        "train_seconds": seconds,
    }
    (out_dir / "run.json").write_text(json.dumps(record, indent=1))
    return out_dir / "model"
