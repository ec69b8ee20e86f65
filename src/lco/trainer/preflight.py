"""``LCOTrainer``'s checks that run before any model is loaded: bad input costs a second, not a load.

Each raises one ``ValueError`` naming the argument and saying what is wrong: the paths (see
:mod:`lco.preflight`), a ``report_to`` integration whose package is missing, and a β whose
reciprocal overflows the loss's arithmetic.
"""

from __future__ import annotations

import math
import os

from ..preflight import check_model_path, check_tokenizer, check_writable_dir

# The fused LCO loss forms z* = z_old + A/β (eq. 7) in float32 whatever the model's dtype (its
# logits are upcast), so 1/β must be a finite float32.
_FLOAT32_MAX = 3.4028234663852886e38
MIN_LCO_BETA = 1.0 / _FLOAT32_MAX

# report_to name -> (transformers' availability check, the package to install)
_REPORTERS = {
    "tensorboard": ("is_tensorboard_available", "tensorboard"),
    "wandb": ("is_wandb_available", "wandb"),
    "trackio": ("is_trackio_available", "trackio"),
    "comet_ml": ("is_comet_available", "comet_ml"),
    "mlflow": ("is_mlflow_available", "mlflow"),
    "clearml": ("is_clearml_available", "clearml"),
    "neptune": ("is_neptune_available", "neptune"),
    "dvclive": ("is_dvclive_available", "dvclive"),
    "codecarbon": ("is_codecarbon_available", "codecarbon"),
    "swanlab": ("is_swanlab_available", "swanlab"),
    "azure_ml": ("is_azureml_available", "azureml-core"),
    "dagshub": ("is_dagshub_available", "dagshub"),
    "flyte": ("is_flytekit_available", "flytekit"),
}


def check_report_to(report_to) -> None:
    """Every integration named in ``report_to`` has its package installed (TRL would fail after loading)."""
    from transformers.integrations import integration_utils

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    for name in names:
        if name in ("none", "all") or name not in _REPORTERS:
            continue  # "all" means the installed ones; unknown names are rejected by transformers itself
        check, package = _REPORTERS[name]
        available = getattr(integration_utils, check, None)
        if available is not None and not available():
            raise ValueError(
                f"report_to: {name!r} needs the {package} package (pip install {package}); install it or "
                "set report_to: none"
            )


def check_lco_beta(beta: float) -> None:
    """β finite (β = ∞ makes A/β = 0: z* = z_old, nothing is learned), and large enough that 1/β is a
    finite float32 (else the target logits z* of eq. 7 are infinite)."""
    if not math.isfinite(beta):
        raise ValueError(f"lco_beta must be a finite number > 0 (β of eq. 2), got {beta}")
    if math.isfinite(beta) and 0 < beta < MIN_LCO_BETA:
        raise ValueError(
            f"lco_beta={beta:g} is too small: the LCO loss computes z* = z_old + A/β (eq. 7) in float32, where "
            f"1/β overflows (float32 max {_FLOAT32_MAX:.3g}); use lco_beta >= {MIN_LCO_BETA:.3g}"
        )


def reads_trl_beta(objective: str) -> bool:
    """Whether ``objective`` trains with TRL's own GRPO loss, the one that reads TRL's KL weight ``beta``."""
    from ..objectives.losses import trl_batch_loss
    from ..objectives.registry import OBJECTIVE_SPECS

    return OBJECTIVE_SPECS[objective].loss is trl_batch_loss


def check_trl_beta(args) -> None:
    """TRL's ``beta`` (the KL weight of GRPO's loss) is valid, and not set where the objective ignores it."""
    beta = args.beta
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta (TRL's KL weight) must be a finite number >= 0, got {beta}")
    if beta != 0 and not reads_trl_beta(args.objective):
        hint = (
            "LCO's β is lco_beta"
            if args.objective.startswith("lco_")
            else "it applies to grpo, dapo, dr_grpo, gspo, cispo"
        )
        if args.objective == "ppo":
            hint = "PPO's KL penalty is ppo_kl_coef"
        raise ValueError(
            f"beta={beta:g} is TRL's KL weight for its GRPO-family losses; objective={args.objective!r} ignores it "
            f"({hint}); remove beta"
        )


def check_max_steps(args) -> None:
    """``max_steps=0`` would train nothing, yet transformers counts it as "use num_train_epochs"."""
    if args.max_steps == 0:
        raise ValueError(
            "max_steps=0 trains nothing; set max_steps >= 1, or -1 to train for num_train_epochs epochs"
        )


def check_support_k(args, model) -> None:
    """``lco_support_k`` fits the policy's vocabulary (read from a local folder's config.json)."""
    if args.lco_support != "top_k" or not isinstance(model, (str, os.PathLike)):
        return
    config_path = os.path.join(os.fspath(model), "config.json")
    if not os.path.isfile(config_path):
        return  # a hub id: checked by the loss once the policy is loaded
    import json

    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    vocab = config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")
    if isinstance(vocab, int) and args.lco_support_k > vocab:
        raise ValueError(
            f"lco_support_k={args.lco_support_k} is larger than the policy's vocabulary ({vocab} tokens in "
            f"{config_path}); use lco_support_k <= {vocab}, or lco_support='full' for the whole vocabulary"
        )


def check_before_loading(
    args,
    model,
    auxiliary_paths: dict[str, str],
    *,
    tokenizer_from_model: bool = True,
    model_field: str = "model",
) -> None:
    """Every check on an ``LCOConfig`` and the model paths that needs no model loaded.

    ``tokenizer_from_model``: the policy's tokenizer will be loaded from ``model`` (no
    ``processing_class`` was given), so a local folder must hold one. ``model_field`` is the name
    the messages give the policy (``model_name_or_path`` on the command line).
    """
    check_lco_beta(args.lco_beta)
    check_trl_beta(args)
    check_max_steps(args)
    check_report_to(args.report_to)
    check_writable_dir(args.output_dir, "output_dir")
    if isinstance(model, (str, os.PathLike)):
        check_model_path(model, model_field)
        if tokenizer_from_model:
            check_tokenizer(model, model_field)
        check_support_k(args, model)
    for role, path in auxiliary_paths.items():
        check_model_path(path, _ROLE_ARGUMENTS.get(role, f"the {role} model"))


# which LCOConfig field names each auxiliary model (lco.trainer.trainer.auxiliary_model_paths)
_ROLE_ARGUMENTS = {
    "dpo": "reward_model_path",
    "ref": "reference_reward_model_path",
    "teacher": "teacher_model_path (or reward_model_path)",
}
