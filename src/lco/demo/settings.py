"""Every hyper-parameter of the demo, in one place: the report prints them all, the cache keys hash them.

Three profiles share one pipeline and differ only in budget and in the methods they run:
``quick`` (a CI smoke test, ≤ 3 minutes), ``default`` (≤ 15 minutes on 2 cores) and ``full``
(every method of Tables 1, 4, 5 and 4 seeds; not time-bounded). The learning rate of the RL runs
is one value for every method, chosen before any RL result was seen (see docs/demo.md);
``--lr-sweep`` tests a ladder of them. ``study_settings`` gives ``lco demo --study stability`` the
default task, warm-up and reward model with its own budget and run list (:class:`StudySettings`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from .methods import (
    ABLATION_OPTIONS,
    ABLATION_SIGNALS,
    DEFAULT_METHODS,
    FULL_METHODS,
    LR_SWEEP_METHODS,
    MATCHED_BASELINES,
    QUICK_METHODS,
)

PROFILES = ("quick", "default", "full")
STUDIES = ("stability",)


@dataclass(frozen=True)
class TaskSettings:
    """The synthetic task (:mod:`lco.tasks.arithmetic`)."""

    seed: int = 0
    train_size: int = 6000
    test_size: int = 500
    hard_size: int = 200


@dataclass(frozen=True)
class ModelSettings:
    """A tiny causal LM built from a config (:func:`lco.tasks.build_tiny_causal_lm`)."""

    architecture: str = "qwen2"
    hidden_size: int = 96
    num_layers: int = 2
    num_heads: int = 4
    init_seed: int = 0


@dataclass(frozen=True)
class WarmupSettings:
    """TRL ``SFTTrainer`` on (prompt, ``\\boxed{answer}``) pairs from the train split.

    The paper warms a pretrained model up on 1,000 chosen responses; our models start from random
    weights, so the warm-up is their whole pre-training. One run yields two checkpoints, taken at
    the first check (every ``check_every`` steps, greedy pass@1 on the validation split) that
    reaches a target:

    - π_0 (``policy_target``), the policy every RL run starts from: partially capable, so RL has room;
    - φ_ref (``reference_target``), the base of the DPO reward model: the stronger model, as the
      paper's 7B/8B reward models are for its 3B/4B policies; the run stops there.

    A tiny model learns this task in a sudden jump whose timing varies with the seed and the
    hardware, so a fixed step count would land anywhere between 5 % and 90 %; a target does not.
    If ``max_steps`` pass first, the last model stands in for what was not reached (and the report
    says so).
    """

    max_steps: int = 900
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 30
    policy_target: float = 0.3
    reference_target: float = 0.6
    check_every: int = 10


@dataclass(frozen=True)
class RewardModelSettings:
    """φ_DPO: TRL ``DPOTrainer`` from φ_ref on verifier-labelled pairs: per train prompt, a correct
    completion is *chosen* and an incorrect one of π_0's samples *rejected*.

    Chosen so that φ_DPO is a reward model of the paper's kind — Table 1 orders φ_DPO > π* > SFT —
    which the demo checks before RL (the reward-model gate: φ_DPO > φ_ref and π*(β = 1) > π_0, greedy
    test pass@1). Measured on the default warm-up (docs/rm_gate_trials.md): plain DPO (TRL's defaults,
    one epoch on π_0's T = 1 samples) made φ_DPO worse than φ_ref and π* worse than π_0; what passes is

    - rejected = π_0's samples at the RL rollouts' temperature 0.6: its near misses, not noise;
    - the reference solution as one more chosen completion, so prompts π_0 always fails give pairs;
    - DPO + NLL on the chosen (TRL's ``loss_type=["sigmoid", "sft"]``, RPO), which keeps φ_DPO a good
      policy where plain DPO lowers the chosen likelihood too;
    - five epochs: with one, log φ_DPO − log φ_ref is dominated by noise on tokens φ_ref ranks low
      (off-by-one digits), and π* follows it; three epochs pass by 2 points of π*, five by 11.

    NLL alone (no DPO term) gives a strong φ_DPO but π* < π_0: the DPO term, pushing π_0's own mistakes
    down, is what makes the advantage point the right way around π_0.
    """

    pair_prompts: int = 1500
    # whose samples are labelled: "policy" (π_0), "reference" (φ_ref)
    pair_sources: tuple[str, ...] = ("policy",)
    samples_per_prompt: int = 4
    sample_temperature: float = 0.6  # the RL rollouts' temperature: π_0's likely mistakes become the rejected
    max_pairs_per_prompt: int = 2
    reference_chosen: bool = True  # the reference solution also counts as a correct completion
    beta: float = 0.1  # TRL's DPOConfig default
    loss_type: tuple[str, ...] = ("sigmoid", "sft")  # DPO + NLL on the chosen (RPO)
    loss_weights: tuple[float, ...] = ()  # one per loss type; empty: TRL's equal weights
    learning_rate: float = 1e-4
    epochs: int = 5
    batch_size: int = 32


@dataclass(frozen=True)
class RLSettings:
    """One ``LCOTrainer`` run per (method, seed, learning rate), all from the same warm-up checkpoint."""

    rollout_budget: int = 3200  # completions sampled per run, the same for every method
    batch_size: int = 16  # completions per optimizer step
    learning_rate: float = 1e-4
    lr_scheduler: str = "constant"
    temperature: float = 0.6  # the paper's rollout sampling (§5)
    top_p: float = 0.95
    max_completion_length: int = 16
    lco_beta: float = 1.0  # the paper's default β
    dynamics_every: int = 5  # steps between the gradient-norm-by-advantage-sign passes (Fig. 6)
    curve_every: int = 320  # rollouts between two points of the pass@1-vs-rollouts curve (Fig. 7)
    curve_problems: int = 100  # first test problems, decoded greedily, for that curve


@dataclass(frozen=True)
class EvalSettings:
    """pass@1 of the final policies, sampled as in the paper (T = 0.6, top-p 0.95) and greedy."""

    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 16
    test_problems: int = 500
    hard_problems: int = 200
    batch_size: int = 128


@dataclass(frozen=True)
class StudySettings:
    """``lco demo --study stability`` (issue 12): three parts on the demo's task, warm-up and reward
    model, every run at ``seeds`` seeds.

    1. *ablation* — LCO (``ablation_objectives``) × signal (``ablation_signals``: the dense DPO
       advantage, the verifier reward at 4 completions per prompt) × stability option
       (``ablation_options``: the paper as written, each option alone, the authors' preset), at the
       common learning rate;
    2. *matched* — the baselines and the LCO configuration chosen from part 1, at GRPO's 4 completions
       per prompt and GRPO's verifier reward, at the common learning rate;
    3. *ladder* — the same methods at every learning rate of ``ladder``.

    The LCO configuration of parts 2–3 is chosen automatically among the part-1 rows of
    ``choice_signal`` (the matched signal): fewest collapses over its runs, then the highest mean test
    pass@1 (:func:`lco.demo.report.study.rank_methods`).
    """

    name: str = "stability"
    ablation_objectives: tuple[str, ...] = ("lco_kld",)
    ablation_signals: tuple[str, ...] = tuple(ABLATION_SIGNALS)
    ablation_options: tuple[str, ...] = tuple(ABLATION_OPTIONS)
    choice_signal: str = "outcome"
    baselines: tuple[str, ...] = MATCHED_BASELINES
    ladder: tuple[float, ...] = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3)


@dataclass(frozen=True)
class DemoSettings:
    profile: str = "default"
    task: TaskSettings = field(default_factory=TaskSettings)
    policy: ModelSettings = field(default_factory=ModelSettings)
    warmup: WarmupSettings = field(default_factory=WarmupSettings)
    reward_model: RewardModelSettings = field(default_factory=RewardModelSettings)
    rl: RLSettings = field(default_factory=RLSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: int = 2
    lr_sweep: tuple[float, ...] = ()  # empty: no sweep
    lr_sweep_methods: tuple[str, ...] = LR_SWEEP_METHODS
    study: StudySettings | None = None  # set by study_settings: the run list is the study's, not methods

    def as_dict(self) -> dict:
        return asdict(self)


LR_LADDER = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3)


def profile_settings(profile: str = "default", lr_sweep: bool = False) -> DemoSettings:
    """The settings of a profile; ``lr_sweep`` adds the learning-rate ladder."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    settings = DemoSettings(profile=profile)
    if profile == "quick":
        settings = replace(
            settings,
            warmup=replace(settings.warmup, max_steps=250, warmup_steps=10),
            reward_model=replace(settings.reward_model, pair_prompts=200),
            rl=replace(settings.rl, rollout_budget=320, curve_every=160, curve_problems=50),
            eval=replace(settings.eval, test_problems=100, hard_problems=50),
            methods=QUICK_METHODS,
            seeds=1,
        )
    elif profile == "full":
        settings = replace(settings, methods=FULL_METHODS, seeds=4)
    if lr_sweep:
        settings = replace(settings, lr_sweep=LR_LADDER)
    return settings


# The study's budget (docs/demo.md, "Stability study"). Measured on the shared 2-core machine, one
# thread, 640 rollouts at lr 1e-4: LCO-KLD 8.2 s, GRPO 6.7 s, PPO 17.0 s (4 epochs per batch); one
# evaluation (500 test + 200 hard problems, sampled and greedy) 3.8 s. The study trains 54 LCO runs
# (42 ablation + 12 more ladder rungs of the chosen row), 45 group baselines (GRPO, RLOO, DAPO) and 15
# PPO runs: 54·8.2 + 45·6.7 + 15·17.0 ≈ 1,000 core-s per 640 rollouts, and 115 evaluations ≈ 440 core-s.
# At 1,920 rollouts per run: 3·1,000 + 440 ≈ 3,440 core-s ≈ 29 min on 2 cores, half the hour, the other
# half a margin for a shared machine and the pool's tail. The evaluation keeps the default size (and so
# the default demo's cached reward-model gate).
STUDY_SEEDS = 3
STUDY_ROLLOUT_BUDGET = 1920
STUDY_CURVE_EVERY = 320


def study_settings(name: str = "stability") -> DemoSettings:
    """The settings of ``lco demo --study NAME``: the default task, warm-up and reward model (so their
    cached stages are shared with the default demo's), ≥ 3 seeds, and the rollout budget and
    evaluation size that fit the whole study into an hour on 2 cores (arithmetic in docs/demo.md)."""
    if name not in STUDIES:
        raise ValueError(f"study must be one of {', '.join(STUDIES)}, got {name!r}")
    settings = DemoSettings(profile=f"study-{name}")
    return replace(
        settings,
        rl=replace(settings.rl, rollout_budget=STUDY_ROLLOUT_BUDGET, curve_every=STUDY_CURVE_EVERY),
        methods=(),
        seeds=STUDY_SEEDS,
        study=StudySettings(name=name, ladder=LR_LADDER),
    )
