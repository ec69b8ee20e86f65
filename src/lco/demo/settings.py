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
    ABLATION_SIGNALS,
    DEFAULT_METHODS,
    FULL_METHODS,
    GRPO_KL_WEIGHTS,
    LR_SWEEP_METHODS,
    QUICK_METHODS,
    REGRESSION_OBJECTIVES,
    REGRESSION_OPTIONS,
    grpo_name,
)

PROFILES = ("quick", "default", "full")
STUDIES = ("stability", "stability-lean")


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
    """pass@1 of the final policies, sampled as in the paper (T = 0.6, top-p 0.95; ``samples``
    completions per problem) and greedy."""

    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 16
    test_problems: int = 500
    hard_problems: int = 200
    validation_problems: int = 200
    batch_size: int = 128
    # completions sampled per problem: sampled pass@1 is the mean of the k verdicts (an unbiased
    # estimate with k times fewer sampling draws' noise); the greedy decoding is one per problem
    samples: int = 1


@dataclass(frozen=True)
class StudySettings:
    """``lco demo --study stability`` (issues 12 and 23): the demo's task, warm-up and reward model;
    configurations *chosen* on the validation split at ``selection_seeds``, results *reported* on the
    test split at the disjoint ``confirmation_seeds``.

    Selection (validation split, every row at every rate of ``learning_rates``, ``selection_seeds``):

    - LCO-KLD × signal (``signals``: the dense DPO advantage; the verifier reward at 4 per prompt) ×
      ``kld_options`` (the paper's form and the options under test);
    - LCO-LCH and LCO-MSE (``regression_objectives``) × signal × ``regression_options`` (support ×
      anchor), at the first learning rate and ``regression_seeds`` only;
    - the baselines: GRPO at each KL weight of ``grpo_kl_weights`` (0 = plain GRPO) and RLOO.

    Confirmation (test split, ``confirmation_seeds``, every rate of ``learning_rates``): ``confirmed``
    (the defaults under test, the paper's form, GRPO, RLOO), GRPO + KL at its chosen weight, and any
    LCO-KLD configuration chosen on validation that is not already among them (at its chosen rate).
    π_0 and π* (eq. 6, decoded) are evaluated at the confirmation seeds as well.

    The choice rule (:func:`lco.demo.report.study.choose`): fewest runs ending below π_0 (paired by
    seed), then the highest mean validation pass@1, then the order given here.
    """

    name: str = "stability"
    selection_seeds: tuple[int, ...] = (0, 1)
    confirmation_seeds: tuple[int, ...] = (10, 11, 12, 13, 14)
    learning_rates: tuple[float, ...] = (1e-4, 3e-4)
    signals: tuple[str, ...] = tuple(ABLATION_SIGNALS)
    kld_options: tuple[str, ...] = ("paper", "anchor_never", "beta_negative")
    regression_objectives: tuple[str, ...] = tuple(REGRESSION_OBJECTIVES)
    regression_options: tuple[str, ...] = tuple(REGRESSION_OPTIONS)
    regression_seeds: tuple[int, ...] = (0,)
    grpo_kl_weights: tuple[float, ...] = GRPO_KL_WEIGHTS
    other_baselines: tuple[str, ...] = ("reinforce",)
    # the rows reported on the test split whatever the selection says: the defaults under test (issue
    # 22: verifier → paper form + β_negative = 100β; dense → anchor = initial policy), the paper's form
    # on both signals, GRPO and RLOO
    confirmed: tuple[str, ...] = (
        "lco_kld_outcome_beta_negative",
        "lco_kld_outcome_paper",
        "lco_kld_dense_anchor_never",
        "lco_kld_dense_paper",
        "grpo_beta0",
        "reinforce",
    )
    static: tuple[str, ...] = ("warmup", "pistar")  # policies evaluated without training
    selection_split: str = "validation"
    confirmation_split: str = "test"
    # "selection_first": the selection runs (with the fixed confirmation rows), then what the choice adds;
    # "confirmation_first": every confirmation row trained and evaluated before any selection run, so that
    # a study cut short still has its reported numbers (GRPO + KL is then confirmed at every weight)
    order: str = "selection_first"


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


# The study's budget (docs/demo.md, "Stability study", with the arithmetic). Measured on an idle 2-core
# machine, one thread, 640 rollouts at lr 1e-4: LCO-KLD 8.2 s, GRPO 6.7 s, PPO 17.0 s; one evaluation of
# 1,400 completions (500 test + 200 hard problems, sampled once and greedy) 3.8 s, so ≈ 2.7 ms per
# completion. At 1,280 rollouts per run, k = 8 and the curve on the run's whole evaluation split, the
# study is ≈ 4,100–4,500 core-s on an idle machine (≈ 60–64 min on 2 cores shared ~1.7×).
STUDY_ROLLOUT_BUDGET = 1280
STUDY_CURVE_EVERY = 320
STUDY_SAMPLES = 8


def study_settings(name: str = "stability") -> DemoSettings:
    """The settings of ``lco demo --study NAME``: the default task, warm-up, reward model and gate (so
    their cached stages are shared with the default demo's: the gate reads only ``test_problems``),
    the rollout budget and the k of sampled pass@1 that fit the study into ~70 minutes of a shared
    2-core machine (arithmetic in docs/demo.md)."""
    if name not in STUDIES:
        raise ValueError(f"study must be one of {', '.join(STUDIES)}, got {name!r}")
    settings = DemoSettings(profile=f"study-{name}")
    study = StudySettings(name=name)
    if name == "stability-lean":
        # for a machine shared beyond the ~1.7× the full study is sized for: the confirmation first (with
        # GRPO + KL at both weights, so that nothing waits for the choice), no LCO-LCH / LCO-MSE selection
        study = replace(
            study,
            order="confirmation_first",
            regression_objectives=(),
            confirmed=(*study.confirmed, *(grpo_name(w) for w in study.grpo_kl_weights if w > 0)),
        )
    return replace(
        settings,
        rl=replace(settings.rl, rollout_budget=STUDY_ROLLOUT_BUDGET, curve_every=STUDY_CURVE_EVERY),
        eval=replace(settings.eval, samples=STUDY_SAMPLES),
        methods=(),
        seeds=len(study.confirmation_seeds),
        study=study,
    )


def with_confirmation_seeds(settings: DemoSettings, count: int) -> DemoSettings:
    """The study with ``count`` confirmation seeds (10, 11, …: disjoint from the selection seeds)."""
    first = max(settings.study.selection_seeds, default=-1) + 1
    first = max(first, 10)
    seeds = tuple(range(first, first + count))
    return replace(settings, seeds=count, study=replace(settings.study, confirmation_seeds=seeds))
