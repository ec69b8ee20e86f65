"""Exact-gradient bandit experiments of Suk & Duan (RLVR Gradient Gap), figure by figure.

Read next to the paper (Suk & Duan, *On the Optimization Dynamics of RLVR: Gradient Gap and Step Size
Thresholds*, arXiv:2510.08539):

====================================  ===============================  ========================
paper                                 function                          what it shows
====================================  ===============================  ========================
App. I.1, Fig. 4                      :func:`multi_armed_bandit`        J, Δμ and M along REINFORCE
§6.1 and App. I.2, Fig. 1             :func:`contextual_bandit`         J_x vs M_x over 500 contexts
Thm. 2 / App. F.1 (and Thm. 4, F.2)   :func:`step_size_threshold`       constant η: converge vs collapse
eqs. (5), (17), (18)                  :func:`grpo_vs_dr_grpo_step_sizes`  effective η vs T and J
====================================  ===============================  ========================

Every experiment uses exact expectations (no sampling), returns plain data (a dict of lists and
numbers) and draws nothing; :mod:`lco.gap.figures` turns the dicts into PNGs.

Convention for the bandits (App. I.1 writes it out): REINFORCE with stepsize η updates
θ_{k+1} = θ_k + η·∇_θ J, and the paper reports Δμ(k) for the split w_k = ∇_θ J, η_k = η. The
products Δμ(k)·η_k, hence M(K) and the relative M of Fig. 1, do not depend on the split; Δμ(k)
alone does, so the MAB run also reports it for the unit split of eq. (3).
"""

from __future__ import annotations

import itertools
import math

import torch
from tqdm.auto import tqdm

from .quantities import (
    CumulativeGapAlignment,
    gap_alignment,
    gradient_gap,
    log_odds,
    trajectory_step_size_bound,
)

DTYPE = torch.float64  # exact-gradient dynamics over thousands of steps: keep rounding out of it


# ==========================================================================================
# Fig. 4 (App. I.1): REINFORCE on a 100-armed bandit with a tabular softmax policy
# ==========================================================================================


def multi_armed_bandit(
    num_arms: int = 100, steps: int = 10_000, eta: float = 0.1, seed: int = 0, progress: bool = True
) -> dict:
    """Exact-gradient REINFORCE with an exact value baseline on a one-best-arm bandit (App. I.1).

    The policy is π_θ = softmax(θ) over ``num_arms`` arms, θ_0 = 0 (a constant), one arm drawn at
    random pays 1 and all others 0. The update is
    θ_{k+1} = θ_k + η·E_{y ~ π_θk}[∇_θ log π_θk(y)·(r(y) − J(π_θk))] = θ_k + η·∇_θ J.
    The paper does not state η for Fig. 4; 0.1 (the §6.1 value) converges within K = 10,000.

    Returns a dict with, for every k = 0..K: ``success_rate`` J(k), ``gap_alignment`` Δμ(k) for
    the paper's split (w_k = ∇J, η_k = η), ``gap_alignment_unit_direction`` Δμ(k) for the split
    of eq. (3) (w_k = ∇J/‖∇J‖, η_k = η‖∇J‖), ``cumulative_gap_alignment`` M(k) (eq. 12, equal
    for both splits) and ``step_size_condition_holds``: whether the unit split obeys eq. (13a)
    with the tabular-softmax constants G_o = √2, L_o = 1, under which eq. (13b) is guaranteed.
    ``converged_at_step`` is the step k at which π put all its float64 mass on the best arm (J = 1,
    the Gradient Gap undefined: its Δμ entries are NaN), where the run stops; ``None`` if it never did.
    """
    if num_arms < 2 or steps < 1 or not eta > 0:
        raise ValueError(f"need num_arms ≥ 2, steps ≥ 1 and eta > 0; got {num_arms}, {steps}, {eta}")
    generator = torch.Generator().manual_seed(seed)
    best_arm = int(torch.randint(num_arms, (1,), generator=generator))
    rewards = torch.zeros(num_arms, dtype=DTYPE)
    rewards[best_arm] = 1.0
    # ‖e_y − π‖₂ ≤ √2 and the score's Jacobian −(diag π − ππᵀ) has norm ≤ 1 for every θ
    score_bound, lipschitz = math.sqrt(2.0), 1.0

    theta = torch.zeros(num_arms, dtype=DTYPE)
    cumulative = CumulativeGapAlignment()
    history: dict[str, list] = {
        "success_rate": [],
        "gap_alignment": [],
        "gap_alignment_unit_direction": [],
        "cumulative_gap_alignment": [],
        "step_size_condition_holds": [],
    }
    converged_at = None
    for k in tqdm(range(steps + 1), desc="MAB (Fig. 4)", disable=not progress):
        pi = torch.softmax(theta, dim=0)
        success_rate = pi[best_arm]
        if float(pi.sum() - success_rate) == 0.0:
            # converged: π puts all its mass on the best arm (in float64), so ∇J = 0 and θ never moves
            # again; the Gradient Gap is undefined (no incorrect arm carries weight). A result, not an error.
            converged_at = k
            history["success_rate"].append(float(success_rate))
            history["gap_alignment"].append(math.nan)
            history["gap_alignment_unit_direction"].append(math.nan)
            history["cumulative_gap_alignment"].append(float(cumulative.value))
            history["step_size_condition_holds"].append(None)
            break
        scores = torch.eye(num_arms, dtype=DTYPE) - pi  # row y: ∇_θ log π_θ(y) = e_y − π_θ
        gap = gradient_gap(scores, rewards, weights=pi)
        reinforce = pi @ (scores * (rewards - success_rate)[:, None])  # the App. I.1 update = ∇_θ J
        delta_mu = gap_alignment(reinforce, gap)  # w_k = ∇_θ J, η_k = η

        grad_norm = torch.linalg.vector_norm(reinforce)
        delta_mu_unit = gap_alignment(reinforce / grad_norm, gap)
        history["success_rate"].append(float(success_rate))
        history["gap_alignment"].append(float(delta_mu))
        history["gap_alignment_unit_direction"].append(float(delta_mu_unit))
        history["cumulative_gap_alignment"].append(float(cumulative.value))
        history["step_size_condition_holds"].append(
            bool(eta * grad_norm <= trajectory_step_size_bound(float(delta_mu_unit), lipschitz, score_bound))
        )
        cumulative.update(float(delta_mu), eta)
        theta = theta + eta * reinforce
    return {
        "experiment": "multi_armed_bandit",
        "paper": "App. I.1, Fig. 4",
        "config": {"num_arms": num_arms, "steps": steps, "eta": eta, "seed": seed, "best_arm": best_arm},
        "step": list(range(len(history["success_rate"]))),
        "converged_at_step": converged_at,
        **history,
    }


# ==========================================================================================
# Fig. 1 (§6.1, App. I.2): REINFORCE on a linear contextual bandit
# ==========================================================================================


def linear_softmax_gap_factors(
    contexts: torch.Tensor, theta: torch.Tensor, best_arms: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed forms for the linear-softmax bandit π_θ(y | x) = softmax(θᵀx)_y, θ ∈ R^{d×N}.

    With one correct arm a*(x), the score is ∇_θ log π_θ(y | x) = x (e_y − π_x)ᵀ, so
    g⁺_x − g⁻_x = x v_xᵀ with v_x = e_{a*} − π_x^{(−a*)}/(1 − J_x) (π with a* removed and
    renormalised), and ∇_θ J_x = J_x(1 − J_x)·x v_xᵀ (eq. 9). Every Gap Alignment is then a product
    of two inner products, ⟨x_k v_kᵀ, x vᵀ⟩ = (x_k·x)(v_k·v): cheap for 500 contexts per step.

    Returns:
        ``(success_rates, v)`` of shapes ``(n,)`` and ``(n, N)``.
    """
    logits = contexts @ theta
    log_pi = torch.log_softmax(logits, dim=-1)
    success_rates = log_pi.gather(-1, best_arms[:, None]).squeeze(-1).exp()
    # π over the wrong arms, renormalised: a softmax with a* masked out avoids 1 − J cancelling
    wrong_arm_logits = logits.scatter(-1, best_arms[:, None], -math.inf)
    v = -torch.softmax(wrong_arm_logits, dim=-1)
    v.scatter_(-1, best_arms[:, None], 1.0)
    return success_rates, v


def contextual_bandit(
    dim: int = 10,
    num_arms: int = 100,
    num_train_contexts: int = 100,
    num_eval_contexts: int = 500,
    steps: int = 2_000,
    eta: float = 0.1,
    init_std: float = 0.01,
    curriculum: tuple[float, float] = (0.2, 0.8),
    record_every: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Exact-gradient REINFORCE on the linear contextual bandit of §6.1 (Fig. 1).

    Contexts x ∈ [0, 1]^d are uniform; the arm scores are s(x) = βᵀx with β ∈ R^{d×N} standard
    normal and r_y(x) = 1{y = argmax s(x)}. The logits are θᵀx with θ_0 entries ~ N(0, 0.01²).
    Each step picks a training context x_k from a pool of 100 and updates
    θ_{k+1} = θ_k + η·∇_θ J_{x_k}(π_θk) (exact REINFORCE, η = 0.1).

    Curriculum: the paper draws x_k "among those with intermediate J(x_k) ∈ [0.2, 0.8]". With
    θ_0 this small every J_x starts near 1/N = 0.01, so no context qualifies at the start. We read
    the filter as an online curriculum (Zhang et al., 2025) applied to the current J at every step,
    and draw from the whole pool while no context qualifies; ``filtered_steps`` counts the steps
    the filter actually chose from. The number of steps K is not stated in the paper.

    For 500 fresh evaluation contexts x it records, every ``record_every`` steps:
    ``success_rate`` J_x(π_θk), ``cumulative_gap_alignment`` M_x(k) = Σ_{i<k}[Δμ_x(i)]₊·η and
    ``relative_cumulative_gap_alignment`` Σ_{i<k}([Δμ_x(i)]₊ − [Δμ_{x_i}(i)]₊)·η, where
    Δμ_x(i) = ⟨∇_θ J_{x_i}, g⁺_x − g⁻_x⟩ (paper's split w_i = ∇_θ J_{x_i}, η_i = η); each a list
    over records of lists over contexts.
    """
    if steps < 1 or record_every < 1 or not eta > 0:
        raise ValueError(f"need steps ≥ 1, record_every ≥ 1 and eta > 0; got {steps}, {record_every}, {eta}")
    low, high = curriculum
    if not 0 <= low <= high <= 1:
        raise ValueError(f"curriculum must be an interval (low, high) inside [0, 1], got {curriculum}")
    generator = torch.Generator().manual_seed(seed)
    arm_weights = torch.randn(dim, num_arms, generator=generator, dtype=DTYPE)  # β
    train_contexts = torch.rand(num_train_contexts, dim, generator=generator, dtype=DTYPE)
    eval_contexts = torch.rand(num_eval_contexts, dim, generator=generator, dtype=DTYPE)
    train_best = (train_contexts @ arm_weights).argmax(-1)
    eval_best = (eval_contexts @ arm_weights).argmax(-1)
    theta = init_std * torch.randn(dim, num_arms, generator=generator, dtype=DTYPE)

    cumulative = CumulativeGapAlignment()
    relative = torch.zeros(num_eval_contexts, dtype=DTYPE)
    records: dict[str, list] = {
        "record_step": [],
        "success_rate": [],
        "cumulative_gap_alignment": [],
        "relative_cumulative_gap_alignment": [],
        "train_pool_mean_success_rate": [],
    }
    filtered_steps = 0
    for k in tqdm(range(steps + 1), desc="contextual bandit (Fig. 1)", disable=not progress):
        eval_success, eval_v = linear_softmax_gap_factors(eval_contexts, theta, eval_best)
        train_success, train_v = linear_softmax_gap_factors(train_contexts, theta, train_best)
        if k % record_every == 0 or k == steps:
            records["record_step"].append(k)
            records["success_rate"].append(eval_success.tolist())
            records["cumulative_gap_alignment"].append(
                (torch.zeros(num_eval_contexts, dtype=DTYPE) + cumulative.value).tolist()
            )
            records["relative_cumulative_gap_alignment"].append(relative.tolist())
            records["train_pool_mean_success_rate"].append(float(train_success.mean()))
        if k == steps:
            break

        eligible = ((train_success >= low) & (train_success <= high)).nonzero().squeeze(-1)
        if eligible.numel() > 0:
            filtered_steps += 1
            i = int(eligible[torch.randint(eligible.numel(), (1,), generator=generator)])
        else:
            i = int(torch.randint(num_train_contexts, (1,), generator=generator))
        x_k, v_k, j_k = train_contexts[i], train_v[i], train_success[i]
        grad_scale = j_k * (1 - j_k)  # ∇_θ J_{x_k} = J(1 − J)·x_k v_kᵀ
        delta_mu_eval = grad_scale * (eval_contexts @ x_k) * (eval_v @ v_k)
        delta_mu_train = grad_scale * (x_k @ x_k) * (v_k @ v_k)

        cumulative.update(delta_mu_eval, eta)
        relative += (delta_mu_eval.clamp(min=0) - delta_mu_train.clamp(min=0)) * eta
        theta = theta + eta * grad_scale * torch.outer(x_k, v_k)
    return {
        "experiment": "contextual_bandit",
        "paper": "§6.1 and App. I.2, Fig. 1",
        "config": {
            "dim": dim,
            "num_arms": num_arms,
            "num_train_contexts": num_train_contexts,
            "num_eval_contexts": num_eval_contexts,
            "steps": steps,
            "eta": eta,
            "init_std": init_std,
            "curriculum": list(curriculum),
            "record_every": record_every,
            "seed": seed,
        },
        "filtered_steps": filtered_steps,
        "initial_success_rate": records["success_rate"][0],
        **records,
    }


# ==========================================================================================
# Theorems 2 and 4 (App. F): the overshooting instance and its step-size threshold
# ==========================================================================================

# Three tokens (App. F): o_1 is the correct one, o_{-1} and o_{-2} are wrong; φ(o)·(G/2) features.
_FEATURES = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]], dtype=DTYPE)


def three_token_instance(theta: torch.Tensor, score_bound: float, length: int = 1) -> dict:
    """Exact response distribution of the App. F instance at parameters θ ∈ R².

    Each of ``length`` tokens is drawn independently from softmax(⟨φ(o), θ⟩) over
    {o_1, o_{-1}, o_{-2}} with φ(o_1) = (G/2)(0, 1), φ(o_{-1}) = (G/2)(1, 0), φ(o_{-2}) = (G/2)(−1, 0);
    the only correct response is o_1^T (T = ``length``). T = 1 is the trajectory-level instance of
    Theorem 2 (G = G_o), T > 1 the token-level one of Theorem 4 (G = G_p, T = T_∞). All 3^T
    responses are enumerated.

    Returns a dict of ``probs`` (3^T,), ``scores`` (3^T, 2) = Σ_t (φ(o_t) − E_θ φ) (linear
    softmax), ``rewards`` (3^T,) and ``success_rate``.
    """
    features = (score_bound / 2) * _FEATURES
    token_log_probs = torch.log_softmax(features @ theta, dim=0)
    responses = torch.tensor(list(itertools.product(range(3), repeat=length)), dtype=torch.long)
    probs = token_log_probs[responses].sum(-1).exp()
    mean_feature = token_log_probs.exp() @ features
    scores = features[responses].sum(1) - length * mean_feature
    rewards = (responses == 0).all(-1).to(DTYPE)
    return {"probs": probs, "scores": scores, "rewards": rewards, "success_rate": probs @ rewards}


def overshoot_threshold(target_gap: float, score_bound: float) -> float:
    """η* = (6/G)·artanh(3Δμ/G): above it the held-gap instance collapses, below it converges.

    In the Theorem 2 instance with w_k = (1/3)((−1)^k·2, −δ) and θ_0 = (η/3)(−1, 0) the first
    coordinate jumps between ∓η/3 every step, so (App. F.1, exactly)
    Δμ(k) = (G/3)·tanh(Gη/6) − Gδ/6 and log-odds(J(k+1)) − log-odds(J(k)) = −Gηδ/6.
    Holding Δμ(k) = Δμ fixed makes the log-odds step Δμ·η − (Gη/3)·tanh(Gη/6): the first-order
    gain of eq. (14) minus a second-order overshoot loss ≈ G²η²/18. It is negative iff η > η*.
    """
    if not 0 < 3 * target_gap / score_bound < 1:
        raise ValueError(
            f"need 0 < 3·target_gap/score_bound < 1, got target_gap={target_gap}, score_bound={score_bound}"
        )
    return (6 / score_bound) * math.atanh(3 * target_gap / score_bound)


def overshoot_instance_run(
    eta: float, steps: int, score_bound: float = 1.0, target_gap: float | None = None, length: int = 1
) -> dict:
    """Run the lower-bound construction of App. F with a constant step size η.

    θ_0 = (η/3)(−1, 0) (eqs. 51/56) and w_k = (1/3)((−1)^k·2, −δ) (eqs. 53/58). With
    ``target_gap=None`` δ is the paper's choice, ηG/15 for Theorem 2 (T = 1) and ηG/10 for Theorem 4
    (T > 1). With a ``target_gap`` (T = 1 only) δ = 2·tanh(Gη/6) − 6Δμ/G, which holds the Gap
    Alignment at Δμ(k) = target_gap for every k (see :func:`overshoot_threshold`).

    g⁺ − g⁻ and J come from the enumerated instance through :func:`gradient_gap`, not from the
    closed forms above, so the closed forms can be checked against it.

    Returns lists over k = 0..K of ``success_rate``, ``log_odds``, ``gap_alignment`` and the
    cumulative ``cumulative_gap_alignment`` M(k), plus the δ used and ‖w_k‖.
    """
    if target_gap is None:
        delta = eta * score_bound / (15 if length == 1 else 10)
    elif length == 1:
        delta = 2 * math.tanh(score_bound * eta / 6) - 6 * target_gap / score_bound
    else:
        raise ValueError("target_gap holds Δμ fixed in closed form only for the trajectory level (length=1)")
    direction_norm = math.sqrt(4 + delta**2) / 3
    if direction_norm > 1:
        raise ValueError(f"‖w_k‖ = {direction_norm:.3f} > 1 violates eq. (3); lower eta or target_gap")

    theta = torch.tensor([-eta / 3, 0.0], dtype=DTYPE)
    cumulative = CumulativeGapAlignment()
    history: dict[str, list] = {
        "success_rate": [],
        "log_odds": [],
        "gap_alignment": [],
        "cumulative_gap_alignment": [],
    }
    for k in range(steps + 1):
        instance = three_token_instance(theta, score_bound, length)
        gap = gradient_gap(instance["scores"], instance["rewards"], weights=instance["probs"])
        direction = torch.tensor([2.0 * (-1) ** k, -delta], dtype=DTYPE) / 3
        delta_mu = gap_alignment(direction, gap)
        history["success_rate"].append(float(instance["success_rate"]))
        history["log_odds"].append(float(log_odds(instance["success_rate"])))
        history["gap_alignment"].append(float(delta_mu))
        history["cumulative_gap_alignment"].append(float(cumulative.value))
        cumulative.update(float(delta_mu), eta)
        theta = theta + eta * direction
    return {"eta": eta, "delta": delta, "direction_norm": direction_norm, **history}


def step_size_threshold(
    score_bound: float = 1.0,
    target_gap: float = 0.028,
    eta_ratios: tuple[float, ...] = (0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0),
    steps: int = 3_000,
    trajectory_ratios: tuple[float, ...] = (0.5, 0.9, 1.1, 2.0),
    paper_lengths: tuple[int, ...] = (1, 4),
    progress: bool = True,
) -> dict:
    """Constant step sizes on the Theorem 2 instance: converge below η*, collapse above it.

    1. Sweep: with Δμ(k) held at ``target_gap`` for every k, run K steps at η = r·η* for each
       ratio r and report J(K) and whether J decreased at every step. Theory (App. F.1, exact):
       J → 1 for η < η*, J → 0 for η > η*, η* = (6/G)artanh(3Δμ/G) ≈ 18Δμ/G².
       For comparison: the step guaranteed safe by Theorem 1 (eq. 13a) and the lower edge of the
       collapse range of Theorem 2, both with G_o = G and L_o = G²/4 (the linear-softmax score
       φ − E_θφ has Jacobian −Cov_θ(φ), ‖Cov_θ(φ)‖ ≤ G²/4; App. F states L_o = 0).
    2. The paper's own constructions (δ = ηG/15 for Theorem 2, ηG/10 for Theorem 4 at
       T = ``paper_lengths``), at the largest η that Theorems 2/4 allow, with their claimed
       uniform gap ηG²/30 (Thm. 2) and T·ηG²/60 (Thm. 4).
    The instance is deterministic: there is no seed.
    """
    lipschitz = score_bound**2 / 4
    eta_star = overshoot_threshold(target_gap, score_bound)
    sweep: dict[str, list] = {
        "eta_ratio": [],
        "eta": [],
        "final_success_rate": [],
        "monotone_decrease": [],
        "log_odds_change_per_step": [],
        "predicted_log_odds_change_per_step": [],
    }
    trajectories = []
    for ratio in tqdm(eta_ratios, desc="step-size sweep (Thm. 2)", disable=not progress):
        eta = ratio * eta_star
        run = overshoot_instance_run(eta, steps, score_bound, target_gap)
        j = run["success_rate"]
        sweep["eta_ratio"].append(ratio)
        sweep["eta"].append(eta)
        sweep["final_success_rate"].append(j[-1])
        sweep["monotone_decrease"].append(all(b < a for a, b in zip(j, j[1:], strict=False)))
        sweep["log_odds_change_per_step"].append((run["log_odds"][-1] - run["log_odds"][0]) / steps)
        # App. F.1 closed form: first-order gain Δμ·η minus the overshoot loss (Gη/3)·tanh(Gη/6)
        overshoot_loss = (score_bound * eta / 3) * math.tanh(score_bound * eta / 6)
        sweep["predicted_log_odds_change_per_step"].append(target_gap * eta - overshoot_loss)
        if ratio in trajectory_ratios:
            trajectories.append({"eta_ratio": ratio, **run})

    paper_runs = []
    for length in paper_lengths:
        # Theorems 2/4 need η ≤ 1/(2√(L + G²T)) (L_o + G_o² at T = 1); take that edge
        largest_eta = 1 / (2 * math.sqrt(lipschitz * math.sqrt(length) + score_bound**2 * length))
        run = overshoot_instance_run(largest_eta, steps, score_bound, length=length)
        claimed_gap = largest_eta * score_bound**2 * (1 / 30 if length == 1 else length / 60)
        j = run["success_rate"]
        paper_runs.append(
            {
                "length": length,
                "theorem": 2 if length == 1 else 4,
                "claimed_gap_lower_bound": claimed_gap,
                "min_gap_alignment": min(run["gap_alignment"]),
                "monotone_decrease": all(b < a for a, b in zip(j, j[1:], strict=False)),
                **run,
            }
        )
    return {
        "experiment": "step_size_threshold",
        "paper": "Theorem 2 / App. F.1 (and Theorem 4 / App. F.2)",
        "config": {
            "score_bound": score_bound,
            "target_gap": target_gap,
            "steps": steps,
            "lipschitz": lipschitz,
        },
        "eta_star": eta_star,
        "eta_star_small_step_approx": 18 * target_gap / score_bound**2,
        "theorem1_safe_eta": trajectory_step_size_bound(target_gap, lipschitz, score_bound),
        "theorem2_collapse_eta_low": 60 * target_gap / (lipschitz + score_bound**2),
        "theorem2_collapse_eta_high": 1 / (2 * math.sqrt(lipschitz + score_bound**2)),
        "sweep": sweep,
        "trajectories": trajectories,
        "paper_constructions": paper_runs,
    }


# ==========================================================================================
# eqs. (17)–(18): GRPO vs Dr. GRPO effective step sizes against length T and success rate J
# ==========================================================================================


def policy_gradient_directions(instance: dict, length: int) -> dict[str, torch.Tensor]:
    """Exact update directions of eq. (4) (REINFORCE = Dr. GRPO) and eq. (5) (one-step GRPO).

    g_DrGRPO = E[A·∇log π(o)] and g_GRPO = E[(A/σ)·(1/|o|)·∇log π(o)] with A = r − J and
    σ² = J(1 − J), computed by summing over the enumerated responses (all of length T here).
    """
    probs, scores, rewards = instance["probs"], instance["scores"], instance["rewards"]
    success_rate = instance["success_rate"]
    advantage = rewards - success_rate
    sigma = torch.sqrt(success_rate * (1 - success_rate))
    dr_grpo = (probs * advantage) @ scores
    grpo = (probs * advantage / (sigma * length)) @ scores
    return {"grpo": grpo, "dr_grpo": dr_grpo}


def _instance_at_success_rate(success_rate: float, length: int, score_bound: float) -> dict:
    """Three-token instance with θ = (0, b) chosen so that J = p(o_1)^T equals ``success_rate``."""
    token_prob = success_rate ** (1 / length)
    # with θ_1 = 0 both wrong tokens have logit 0: p(o_1) = e^{Gb/2}/(e^{Gb/2} + 2)
    b = (2 / score_bound) * math.log(2 * token_prob / (1 - token_prob))
    return three_token_instance(torch.tensor([0.0, b], dtype=DTYPE), score_bound, length)


def effective_step_sizes(
    success_rate: float, length: int, alpha: float = 1.0, score_bound: float = 1.0
) -> dict:
    """η_k = α‖g‖ for GRPO and Dr. GRPO at one (J, T), next to eqs. (17) and (18).

    Writes each update α·g as η_k·w_k with w_k = g/‖g‖ (eq. 3) and measures Δμ = w_k·(g⁺ − g⁻)
    from the enumerated instance. Returns the measured η_k, the eq. (17) forecasts
    α·Δμ·√(J(1−J))/T_ψ1 (GRPO) and α·Δμ·J(1−J) (Dr. GRPO), and the eq. (18) scale of the largest
    safe step, Δμ·(1 − J)/T_ψ1. For a constant length T, T_ψ1 = ‖T‖_ψ1 = T/ln 2.
    """
    if not 0 < success_rate < 1:
        raise ValueError(f"success_rate must lie in (0, 1), got {success_rate}")
    instance = _instance_at_success_rate(success_rate, length, score_bound)
    gap = gradient_gap(instance["scores"], instance["rewards"], weights=instance["probs"])
    length_psi1 = length / math.log(2)
    variance = success_rate * (1 - success_rate)
    out: dict[str, float] = {"success_rate": float(instance["success_rate"]), "length": length}
    for name, direction in policy_gradient_directions(instance, length).items():
        norm = torch.linalg.vector_norm(direction)
        delta_mu = float(gap_alignment(direction / norm, gap))
        out[f"{name}_eta"] = alpha * float(norm)
        out[f"{name}_gap_alignment"] = delta_mu
    # both directions are parallel to g⁺ − g⁻ here (eq. 9), so they share Δμ = ‖g⁺ − g⁻‖
    delta_mu = out["grpo_gap_alignment"]
    out["grpo_eta_eq17"] = alpha * delta_mu * math.sqrt(variance) / length_psi1
    out["dr_grpo_eta_eq17"] = alpha * delta_mu * variance
    out["safe_eta_eq18"] = delta_mu * (1 - success_rate) / length_psi1
    return out


def grpo_vs_dr_grpo_step_sizes(
    lengths: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8),
    success_rates: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99),
    fixed_success_rate: float = 0.5,
    fixed_length: int = 4,
    alpha: float = 1.0,
    score_bound: float = 1.0,
) -> dict:
    """Effective step sizes of GRPO and Dr. GRPO against T (at fixed J) and J (at fixed T).

    Uses the token-level instance of Theorem 4 with fixed response length T (so the per-response
    1/|o| of GRPO is 1/T). Expected (eqs. 17–18): η_GRPO/η_safe ≍ √(J/(1−J)), flat in T but
    unbounded as J → 1; η_DrGRPO/η_safe ≍ J·T, growing with the response length.
    """
    by_length = [effective_step_sizes(fixed_success_rate, t, alpha, score_bound) for t in lengths]
    by_success_rate = [effective_step_sizes(j, fixed_length, alpha, score_bound) for j in success_rates]
    return {
        "experiment": "grpo_vs_dr_grpo_step_sizes",
        "paper": "eqs. (5), (17), (18)",
        "config": {
            "fixed_success_rate": fixed_success_rate,
            "fixed_length": fixed_length,
            "alpha": alpha,
            "score_bound": score_bound,
        },
        "by_length": by_length,
        "by_success_rate": by_success_rate,
    }
