"""``LCOTrainer``'s checks that run before any model is loaded: bad input costs a second, not a load.

Each raises one ``ValueError`` naming the argument and saying what is wrong: the paths (see
:mod:`lco.preflight`), a ``report_to`` integration whose package is missing, and a β whose
reciprocal overflows the loss's arithmetic.
"""

from __future__ import annotations

import math
import os

from ..preflight import check_model_path, check_writable_dir

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
    """β small enough that 1/β overflows float32 makes the target logits z* of eq. 7 infinite."""
    if math.isfinite(beta) and 0 < beta < MIN_LCO_BETA:
        raise ValueError(
            f"lco_beta={beta:g} is too small: the LCO loss computes z* = z_old + A/β (eq. 7) in float32, where "
            f"1/β overflows (float32 max {_FLOAT32_MAX:.3g}); use lco_beta >= {MIN_LCO_BETA:.3g}"
        )


def check_before_loading(args, model, auxiliary_paths: dict[str, str]) -> None:
    """Every check on an ``LCOConfig`` and the model paths that needs no model loaded."""
    check_lco_beta(args.lco_beta)
    check_report_to(args.report_to)
    check_writable_dir(args.output_dir, "output_dir")
    if isinstance(model, (str, os.PathLike)):
        check_model_path(model, "model")
    for role, path in auxiliary_paths.items():
        check_model_path(path, _ROLE_ARGUMENTS.get(role, f"the {role} model"))


# which LCOConfig field names each auxiliary model (lco.trainer.trainer.auxiliary_model_paths)
_ROLE_ARGUMENTS = {
    "dpo": "reward_model_path",
    "ref": "reference_reward_model_path",
    "teacher": "teacher_model_path (or reward_model_path)",
}
