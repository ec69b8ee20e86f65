"""The policies ``lco eval`` can decode from, including the two that are not checkpoints.

- ``checkpoint``: a causal LM, sampled as is.
- ``rm``: the DPO-trained reward model φ_DPO, sampled as a policy (the paper's "RM" rows).
- ``pistar``: the closed-form optimum of eq. (2) around π_old (Prop. 4.1),

      π*(a|s_t) ∝ π_old(a|s_t)·exp(A(s_t, a)/β)                           (eq. 6)
      z*(s_t, ·) = z_old(s_t, ·) + A(s_t, ·)/β                              (eq. 7)
      A(s_t, a) = log φ_DPO(a|s_t) − log φ_ref(a|s_t)                      (eq. 13)

  decoded token by token: the π_old checkpoint is run by ``generate`` and
  :class:`lco.eval.pistar.PiStarLogitsProcessor` turns z_old into log π*.

Models are loaded here with the evaluation's decoding settings only (their own sampling defaults
are dropped), and the three models of π* are checked to share one vocabulary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .._checks import check_beta, check_choice
from ..vocabularies import vocabulary_difference
from .pistar import PiStarLogitsProcessor

POLICIES = ("checkpoint", "pistar", "rm")


def resolve_device(device: str) -> torch.device:
    """``auto`` → the first CUDA device if there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"--device {device!r} is not a torch device ({err})") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    return resolved


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` → bfloat16 on a GPU, float32 on the CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    check_choice("--dtype", dtype, ("auto", *_DTYPES))
    return _DTYPES[dtype]


def _why(path: str, thing: str, err: Exception) -> str:
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if not os.path.exists(path):
        return f"no such local directory, and {thing} could not be fetched from the hub ({type(err).__name__}: {first_line})"
    return f"{type(err).__name__}: {first_line}"


def load_tokenizer(path: str, what: str):
    """The tokenizer of a model, left-padded for batched generation, with a pad token."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as err:
        raise ValueError(f"{what} {path!r} could not be loaded: {_why(path, 'its tokenizer', err)}") from err
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"{what} {path!r}: the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_causal_lm(path: str, what: str, device: torch.device, dtype: torch.dtype):
    """A causal LM in eval mode; a model that cannot be loaded is one ``ValueError`` naming ``what``."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except Exception as err:
        raise ValueError(
            f"{what} {path!r} could not be loaded as a causal LM: {_why(path, 'it', err)}"
        ) from err
    model.to(device).eval()
    # The checkpoint's own sampling defaults (generation_config.json: top_k, repetition_penalty, …)
    # are dropped so that every policy is decoded with exactly the evaluation's settings; only its
    # special token ids are kept.
    old = model.generation_config
    model.generation_config = GenerationConfig(
        bos_token_id=old.bos_token_id, eos_token_id=old.eos_token_id, pad_token_id=old.pad_token_id
    )
    return model


def output_vocab_size(model) -> int:
    """Size of the model's logits' last axis."""
    return int(model.get_output_embeddings().weight.shape[0])


def check_same_vocabulary(named_tokenizers: list[tuple[str, object]]) -> None:
    """π* adds φ_DPO/φ_ref log-probabilities to z_old token by token: all must index the same tokens.

    ``named_tokenizers`` holds ``(flag, tokenizer)`` pairs; the first is the reference.
    """
    ref_flag, ref_tok = named_tokenizers[0]
    ref_vocab = ref_tok.get_vocab()
    for flag, tok in named_tokenizers[1:]:
        vocab = tok.get_vocab()
        if vocab != ref_vocab:
            raise ValueError(
                f"{flag} and {ref_flag} have different vocabularies ({vocabulary_difference(vocab, ref_vocab)}); "
                "--policy pistar needs the same tokenizer in all three models"
            )


def check_same_logits_size(named_models: list[tuple[str, object]]) -> None:
    """The three models' logits must have the same last axis (a padded embedding may differ in size)."""
    ref_flag, ref_model = named_models[0]
    ref_size = output_vocab_size(ref_model)
    for flag, model in named_models[1:]:
        size = output_vocab_size(model)
        if size != ref_size:
            raise ValueError(
                f"{flag} produces {size} logits per token but {ref_flag} produces {ref_size}; "
                "--policy pistar needs the same vocabulary size in all three models"
            )


@dataclass
class Policy:
    """What ``generate`` runs: a model and its tokenizer, plus the π* processor for ``pistar``."""

    kind: str
    name_or_path: str
    model: object
    tokenizer: object
    pistar: PiStarLogitsProcessor | None = None


def check_policy_args(
    kind: str, model: str | None, reward_model: str | None, ref_model: str | None, beta: float
) -> None:
    """Which model flags each policy needs; raised before anything is loaded."""
    check_choice("--policy", kind, POLICIES)
    if kind == "checkpoint" and not model:
        raise ValueError("--policy checkpoint needs --model PATH_OR_ID")
    if kind == "rm":
        if not reward_model:
            raise ValueError("--policy rm decodes from φ_DPO: give it as --reward-model PATH_OR_ID")
        if model:
            raise ValueError("--policy rm decodes from --reward-model; --model is not used, drop it")
    if kind == "pistar":
        missing = [
            flag
            for flag, value in (
                ("--model", model),
                ("--reward-model", reward_model),
                ("--ref-model", ref_model),
            )
            if not value
        ]
        if missing:
            raise ValueError(
                f"--policy pistar needs --model (π_old), --reward-model (φ_DPO) and --ref-model (φ_ref); "
                f"missing: {', '.join(missing)}"
            )
        check_beta(beta)


def load_policy(
    kind: str,
    model: str | None = None,
    reward_model: str | None = None,
    ref_model: str | None = None,
    beta: float = 1.0,
    normalize: str = "mean",
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
) -> Policy:
    """Load the models a policy decodes with (see the module docstring for the three kinds)."""
    check_policy_args(kind, model, reward_model, ref_model, beta)
    device = resolve_device(device) if isinstance(device, str) else device
    dtype = resolve_dtype(dtype, device) if isinstance(dtype, str) else dtype
    if kind == "rm":
        return Policy(
            kind,
            reward_model,
            load_causal_lm(reward_model, "--reward-model", device, dtype),
            load_tokenizer(reward_model, "--reward-model"),
        )
    tokenizer = load_tokenizer(model, "--model")
    if kind == "checkpoint":
        return Policy(kind, model, load_causal_lm(model, "--model", device, dtype), tokenizer)
    # pistar: compare the tokenizers before loading three models
    check_same_vocabulary(
        [
            ("--model", tokenizer),
            ("--reward-model", load_tokenizer(reward_model, "--reward-model")),
            ("--ref-model", load_tokenizer(ref_model, "--ref-model")),
        ]
    )
    lm = load_causal_lm(model, "--model", device, dtype)
    dpo = load_causal_lm(reward_model, "--reward-model", device, dtype)
    ref = load_causal_lm(ref_model, "--ref-model", device, dtype)
    check_same_logits_size([("--model", lm), ("--reward-model", dpo), ("--ref-model", ref)])

    return Policy(kind, model, lm, tokenizer, PiStarLogitsProcessor(dpo, ref, beta, normalize))
