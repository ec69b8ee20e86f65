"""TRL's loss options: honoured by the LCO losses the way TRL's own loss honours them, or refused with the reason.

``GRPOConfig`` has options that act inside ``GRPOTrainer._compute_loss``. The objectives that run TRL's
loss (grpo, dapo, dr_grpo, gspo, cispo) get them from TRL. For the others:

================================  ==================================  =======================================
option                            LCO (lco_kld / lco_lch / lco_mse)   ppo, reinforce, sft, minillm, gkd
================================  ==================================  =======================================
``use_vllm`` with                 ℓ_t × TRL's ratio per token          refused (their losses do not apply it)
``vllm_importance_sampling_       (:mod:`lco.objectives.token_
correction`` (TRL's default)      weights`)
``off_policy_mask_threshold``     TRL's sequence mask on ℓ_t           refused
``top_entropy_quantile`` < 1      TRL's high-entropy mask on ℓ_t       refused
``entropy_coef`` ≠ 0,             refused: the bonus needs ∂H/∂z       refused
``use_adaptive_entropy``          inside the fused kernel
================================  ==================================  =======================================
"""

from __future__ import annotations

from ..objectives.registry import OBJECTIVE_SPECS
from ..objectives.token_weights import TokenCorrections

_ENTROPY_BONUS_LCO = (
    "TRL's entropy bonus (L − coef·H) needs the entropy's gradient ∂H/∂z, which the fused LCO kernel does not "
    "compute (it returns the LCO loss's gradient only); LCO's regulariser is its KL to z_old (lco_beta, eq. 2)"
)


def _runs_trl_loss(objective: str) -> bool:
    return "loss_type" in OBJECTIVE_SPECS[objective].grpo_config


def _is_lco(objective: str) -> bool:
    return OBJECTIVE_SPECS[objective].accepts_lco_options


def check_trl_loss_options(args) -> None:
    """One ``ValueError`` naming the option for every TRL loss option the objective would silently ignore."""
    objective = args.objective
    if _runs_trl_loss(objective):
        return
    lco = _is_lco(objective)
    own = f"objective={objective!r} does not use TRL's loss"
    if args.entropy_coef != 0 or args.use_adaptive_entropy:
        field = "use_adaptive_entropy" if args.use_adaptive_entropy else f"entropy_coef={args.entropy_coef:g}"
        reason = _ENTROPY_BONUS_LCO if lco else f"{own} and applies no entropy bonus"
        raise ValueError(
            f"{field} is not supported with objective={objective!r}: {reason}; set entropy_coef=0"
        )
    if lco:
        return  # the importance ratio, the off-policy mask and the entropy mask are applied (token_weights.py)
    if args.off_policy_mask_threshold is not None:
        raise ValueError(
            f"off_policy_mask_threshold={args.off_policy_mask_threshold:g}: {own} and applies no off-policy "
            "mask; remove it, or use an LCO objective or grpo/dapo/dr_grpo/gspo/cispo"
        )
    if args.top_entropy_quantile < 1.0:
        raise ValueError(
            f"top_entropy_quantile={args.top_entropy_quantile:g}: {own} and applies no entropy mask; "
            "set it to 1.0, or use an LCO objective or grpo/dapo/dr_grpo/gspo/cispo"
        )
    if args.use_vllm and args.vllm_importance_sampling_correction:
        raise ValueError(
            f"use_vllm with vllm_importance_sampling_correction=True (TRL's default): {own} and does not "
            "weight it by TRL's vLLM importance-sampling ratio; set vllm_importance_sampling_correction=False "
            "(no correction), or use an LCO objective or grpo/dapo/dr_grpo/gspo/cispo"
        )


def token_corrections(trainer, inputs) -> TokenCorrections | None:
    """TRL's per-token factors for one micro-batch of an LCO loss, as ``_compute_loss`` reads them."""
    if not _is_lco(trainer.args.objective):
        return None
    args = trainer.args
    ratio = None
    if trainer.use_vllm and trainer.vllm_importance_sampling_correction:
        ratio = inputs["importance_sampling_ratio"]
    corrections = TokenCorrections(
        importance_ratio=ratio,
        off_policy_threshold=args.off_policy_mask_threshold,
        sampling_logps=inputs.get("sampling_per_token_logps", inputs.get("old_per_token_logps")),
        entropy_quantile=args.top_entropy_quantile,
        high_entropy_mask=trainer.get_high_entropy_mask,
    )
    return corrections if corrections.active else None
