"""Checks that run before any model is loaded, so that bad input costs a second, not a model load.

Each check raises one ``ValueError`` naming the argument (or the file) and saying what is wrong:
an ``output_dir`` that cannot be written (found now, not at the first save, when steps are lost),
a model path that does not exist (found now, not after the hub client's retries), a ``report_to``
integration whose package is missing, and a β whose reciprocal overflows the loss's arithmetic.
"""

from __future__ import annotations

import math
import os
import re
import tempfile

# The fused LCO loss forms z* = z_old + A/β (eq. 7) in float32 whatever the model's dtype (its
# logits are upcast), so 1/β must be a finite float32.
_FLOAT32_MAX = 3.4028234663852886e38
MIN_LCO_BETA = 1.0 / _FLOAT32_MAX

# A hub repository id: "name" or "owner/name" (huggingface_hub's rule, without the length limit).
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")

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


def check_writable_dir(path: str | os.PathLike, what: str) -> None:
    """``path`` is (or can be created as) a directory this process can write into.

    Walks up to the nearest existing ancestor: a regular file on the way is named, and a
    directory is probed by creating (and removing) a file in it — ``os.access`` says yes to root
    even on a read-only mount.
    """
    target = os.path.abspath(os.path.expanduser(os.fspath(path)))
    existing = target
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        where = "is a regular file" if existing == target else f"is under {existing}, a regular file"
        raise ValueError(f"{what} {os.fspath(path)!r} {where}, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".lco-write-test-", dir=existing)
    except OSError as err:
        raise ValueError(
            f"{what} {os.fspath(path)!r} is not writable ({existing}: {err.strerror or err})"
        ) from err
    os.close(fd)
    os.unlink(probe)


def _looks_local(path: str) -> bool:
    return (
        path.startswith(("/", ".", "~"))
        or path.endswith("/")
        or os.sep != "/" and os.sep in path
        or not _HUB_ID.match(path)
    )


def check_model_path(path: str | None, what: str) -> None:
    """A model is a local folder with ``config.json``, or a hub id; a local-looking path must exist.

    A path that cannot be a hub id is refused at once instead of reaching the hub client (which
    answers "Repo id must be …" or, online, retries for about a minute). A hub id that is not in
    the local cache is refused only when the hub is switched off (``HF_HUB_OFFLINE``).
    """
    if path is None:
        return
    path = os.fspath(path)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ValueError(f"{what} {path!r} is a folder without config.json, not a saved model")
        return
    if os.path.exists(path):
        raise ValueError(f"{what} {path!r} is a file; expected a model folder or a hub id")
    if _looks_local(path):
        raise ValueError(f"{what} {path!r} does not exist (no such folder, and not a hub id)")
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(path, "config.json"), str):
        raise ValueError(
            f"{what} {path!r} is not a local folder and not in the hub cache, and HF_HUB_OFFLINE is set"
        )


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
