"""The default path of a TRL user: a model *path*, the default LCOConfig (bf16 left on, TRL's default),
with ``peft`` installed — as ``lco train``, ``lco demo`` and a GRPOTrainer script switched to LCO run it."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from lco.objectives.fused import fused_lco_loss
from lco.trainer import LCOConfig, LCOTrainer

from .conftest import parity_reward


def test_peft_is_installed_for_the_suite():
    # TRL users have peft; the crash it caused (accelerate's is_peft_model on a model path) only
    # shows with it installed, so the dev extras install it and this suite must see it.
    assert importlib.util.find_spec("peft") is not None


@pytest.mark.slow
def test_default_config_trains_from_a_model_path_with_peft_installed(tmp_path, tiny_models, prompts):
    args = LCOConfig(
        output_dir=str(tmp_path / "out"),
        num_generations=2,
        max_completion_length=4,
        per_device_train_batch_size=2,
        max_steps=2,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        learning_rate=1e-2,
    )
    assert args.bf16  # the user's default: mixed precision, which autocasts the loss's forward
    trainer = LCOTrainer(model=tiny_models["policy"], reward_funcs=parity_reward, args=args, train_dataset=prompts)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 2
    moved = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert moved, "two default steps with a non-zero advantage left every parameter unchanged"


def test_fused_loss_under_bf16_autocast_equals_the_fp32_loss():
    """The fused kernel's math is fp32 by design: an active autocast (Trainer's bf16) must not change it."""
    torch.manual_seed(0)
    N, H, V = 12, 8, 20
    hidden = torch.randn(N, H, requires_grad=True)
    weight = torch.randn(V, H, requires_grad=True)
    adv = torch.randn(N, V)
    kwargs = dict(loss="lco_kld", beta=1.0, advantages=adv, chunk_size=5)
    plain = fused_lco_loss(hidden, weight, **kwargs)
    g_plain = torch.autograd.grad(plain, (hidden, weight))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        cast = fused_lco_loss(hidden, weight, **kwargs)
    g_cast = torch.autograd.grad(cast, (hidden, weight))
    torch.testing.assert_close(cast, plain)
    for a, b in zip(g_cast, g_plain, strict=True):
        torch.testing.assert_close(a, b)
