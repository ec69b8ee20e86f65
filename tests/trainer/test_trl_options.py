"""TRL's loss options through LCOTrainer: applied to the LCO losses as TRL applies them, or refused."""

from __future__ import annotations

import types

import pytest
import torch

from lco.trainer import LCOTrainer
from lco.trainer.trl_options import token_corrections

from .conftest import parity_reward, tiny_config
from .test_stability_options import _AnchorRecorder, _default_kld, _initial_policy, _recorder
from .test_trainer_exact import _completion_logits


@pytest.mark.slow
def test_top_entropy_quantile_masks_the_lco_loss_as_trl_masks_its_own(
    tmp_path, tiny_models, tokenizer, prompts
):
    beta, q = 0.8, 0.5
    trainer = _recorder(
        tmp_path, tiny_models, tokenizer, prompts, lco_anchor_update_steps=0, max_steps=2, lco_beta=beta,
        top_entropy_quantile=q,
    )  # fmt: skip
    trainer.train()
    initial = _initial_policy(tiny_models)
    for step, inputs, loss, current in trainer.records:
        with torch.no_grad():
            _, z_old = _completion_logits(initial, inputs)
            _, z = _completion_logits(current, inputs)
            mask = inputs["completion_mask"].bool()
            log_pi = torch.log_softmax(z / trainer.temperature, -1)
            entropy = -(log_pi.exp() * log_pi).sum(-1)
            # TRL's get_high_entropy_mask on one process: the tokens at or above the (1 − q) quantile
            keep = (entropy >= torch.quantile(entropy[mask], 1 - q)) & mask
            # the loss over the kept tokens (the outcome advantage's defaults), normalised by every completion
            # token (TRL's per-token product)
            expected = _default_kld(z, z_old, inputs, beta, mask=keep) * keep.sum() / mask.sum()
        assert 0 < keep.sum() < mask.sum(), "the mask must drop some tokens and keep some"
        assert loss == pytest.approx(float(expected), rel=1e-5, abs=1e-7), step


class _RatioRecorder(_AnchorRecorder):
    """Puts a per-token importance ratio into each batch, as TRL does with vLLM, and turns TRL's vLLM flag on
    for the loss only (generation stays HF's: no vLLM on a CPU)."""

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        g = torch.Generator().manual_seed(self.state.global_step)
        output["importance_sampling_ratio"] = 0.5 + torch.rand(output["completion_ids"].shape, generator=g)
        return output

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.use_vllm = True
        try:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            self.use_vllm = False


@pytest.mark.slow
def test_vllm_importance_ratio_weights_each_token_of_the_lco_loss(tmp_path, tiny_models, tokenizer, prompts):
    beta = 0.8
    args = tiny_config(
        tmp_path, tiny_models, objective="lco_kld", lco_anchor_update_steps=0, max_steps=2, lco_beta=beta
    )
    trainer = _RatioRecorder(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )
    assert trainer.vllm_importance_sampling_correction  # TRL's default
    trainer.train()
    initial = _initial_policy(tiny_models)
    for step, inputs, loss, current in trainer.records:
        with torch.no_grad():
            _, z_old = _completion_logits(initial, inputs)
            _, z = _completion_logits(current, inputs)
            m = inputs["completion_mask"].float()
            w = inputs["importance_sampling_ratio"]
            # Σ m·w·ℓ / Σ m, TRL's per-token product: the naive loss weighted by m·w, renormalised to Σ m
            expected = _default_kld(z, z_old, inputs, beta, mask=m * w) * (m * w).sum() / m.sum()
            unweighted = _default_kld(z, z_old, inputs, beta)
        assert loss == pytest.approx(float(expected), rel=1e-5, abs=1e-7), step
        assert abs(float(expected) - float(unweighted)) > 1e-6, (
            "the ratio must change the loss for the test to bite"
        )


def test_importance_ratio_is_read_from_trls_batch_only_with_vllm_correction(tmp_path, tiny_models):
    args = tiny_config(tmp_path, tiny_models, objective="lco_kld")
    ratio = torch.tensor([[0.5, 2.0]])
    trainer = types.SimpleNamespace(
        args=args, use_vllm=True, vllm_importance_sampling_correction=True, get_high_entropy_mask=None
    )
    corrections = token_corrections(trainer, {"importance_sampling_ratio": ratio})
    assert corrections.importance_ratio is ratio
    trainer.vllm_importance_sampling_correction = False
    assert token_corrections(trainer, {"importance_sampling_ratio": ratio}) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"objective": "lco_kld", "entropy_coef": 0.01},
            "entropy_coef=0.01 is not supported with objective='lco_kld'",
        ),
        ({"objective": "lco_mse", "use_adaptive_entropy": True}, "use_adaptive_entropy is not supported"),
        ({"objective": "reinforce", "off_policy_mask_threshold": 0.5}, "off_policy_mask_threshold=0.5"),
        ({"objective": "ppo", "top_entropy_quantile": 0.2}, "top_entropy_quantile=0.2"),
        ({"objective": "sft", "use_vllm": True}, "vllm_importance_sampling_correction=True"),
    ],
)
def test_options_a_loss_would_ignore_are_refused_before_loading(
    tmp_path, tiny_models, prompts, overrides, message
):
    args = tiny_config(tmp_path, tiny_models, **overrides)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LCOTrainer(tiny_models["policy"], parity_reward, args, train_dataset=prompts)


def test_trls_own_losses_keep_every_option(tmp_path, tiny_models):
    from lco.trainer.trl_options import check_trl_loss_options

    check_trl_loss_options(tiny_config(tmp_path, tiny_models, objective="grpo", entropy_coef=0.01))
