"""The trainer's LCO loss is exactly the paper's, on-policy and on reused rollouts; grpo is TRL's."""

from __future__ import annotations

import copy

import torch
from trl import GRPOConfig, GRPOTrainer

import lco
from lco.objectives.rollout import ROLLOUT_KEY, Rollout
from lco.trainer import LCOTrainer

from .conftest import parity_reward, tiny_config


def _manual_batch(tokenizer, vocab_size: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    prompt = tokenizer(["1+1=", "2+3="], return_tensors="pt", padding=True)
    completion_ids = torch.randint(4, vocab_size, (2, 5), generator=g)
    completion_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    advantages = torch.tensor([1.0, -0.5])
    return {
        "prompt_ids": prompt.input_ids,
        "prompt_mask": prompt.attention_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": advantages,
        ROLLOUT_KEY: Rollout(token_advantages=advantages[:, None] * completion_mask).split(),
        "num_items_in_batch": completion_mask.sum(),
    }


def _token_advantages(batch) -> torch.Tensor:
    """A(s_t, a_t) ``[B, T]`` as the batch carries it (one Rollout record per completion)."""
    return Rollout.collate(batch[ROLLOUT_KEY]).token_advantages


def _completion_logits(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, z) at the completion positions, straight from the backbone and head (no patched forward)."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    am = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    k = batch["completion_ids"].shape[1]
    h = model.model(input_ids=ids, attention_mask=am).last_hidden_state[:, -k - 1 : -1]
    return h, model.lm_head(h)


def test_first_on_policy_step_kld_logit_gradient_is_pi_minus_pi_star(
    tmp_path, tiny_models, tokenizer, prompts
):
    beta = 0.7
    args = tiny_config(tmp_path, tiny_models, objective="lco_kld", advantage="outcome", lco_beta=beta)
    trainer = LCOTrainer(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )
    model = trainer.model
    batch = _manual_batch(tokenizer, model.config.vocab_size)
    model.zero_grad()
    trainer.compute_loss(model, batch).backward()

    with torch.no_grad():
        h, z = _completion_logits(model, batch)
        # outcome's default β_negative = 100β where A < 0 (the batch has A = 1 and A = −0.5), by the sign
        # of the uncentred A; the sparse A tilts the sampled token only (eqs. 6–7, 11)
        a = _token_advantages(batch).float()
        per_sign = torch.where(a < 0, a / (100 * beta), a / beta)
        tilt = torch.zeros_like(z).scatter_(-1, batch["completion_ids"].unsqueeze(-1), per_sign.unsqueeze(-1))
        pi_star = torch.softmax(z + tilt, -1)
        mask = batch["completion_mask"].float()
        # eq. 47 per token, averaged over the #tokens of E_t: ∂L/∂z = (π_θ − π*) / #tokens
        dz = (torch.softmax(z, -1) - pi_star) * mask[..., None] / mask.sum()
        expected_head_grad = dz.reshape(-1, dz.shape[-1]).T @ h.reshape(-1, h.shape[-1])
    torch.testing.assert_close(model.lm_head.weight.grad, expected_head_grad, atol=1e-6, rtol=1e-4)


class _Recorder(LCOTrainer):
    """Keeps a copy of the policy as it was at each generation, and every loss with its inputs."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.generation_policies, self.records = [], []

    def _generate_and_score_completions(self, inputs):
        self.generation_policies.append(copy.deepcopy(self.accelerator.unwrap_model(self.model)))
        return super()._generate_and_score_completions(inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self.records.append((inputs, float(loss), copy.deepcopy(self.accelerator.unwrap_model(model))))
        return loss


def _kld_closed_form(z, z_old, inputs, beta, beta_negative):
    """E_t[KL(π* ‖ π_θ)] (eq. 10) with π* ∝ π_old·exp(A/β_±) (eqs. 6–7): the sparse A of eq. (11) tilts
    only the sampled token, by A/β where A ≥ 0 and A/β_negative where A < 0 (centring leaves π* as is)."""
    a = _token_advantages(inputs).float()
    per_sign = torch.where(a < 0, a / beta_negative, a / beta)
    tilt = torch.zeros_like(z_old).scatter_(
        -1, inputs["completion_ids"].unsqueeze(-1), per_sign.unsqueeze(-1)
    )
    log_pi_star = torch.log_softmax(z_old + tilt, -1)
    kl = (log_pi_star.exp() * (log_pi_star - torch.log_softmax(z, -1))).sum(-1)
    mask = inputs["completion_mask"].float()
    return float((kl * mask).sum() / mask.sum())


def test_reused_rollouts_use_the_exact_old_policy_logits(tmp_path, tiny_models, tokenizer, prompts):
    """The paper's path (m = 1, outcome's default) on a reused rollout: z_old is the generating policy's."""
    beta = 1.0
    args = tiny_config(
        tmp_path, tiny_models, objective="lco_kld", num_iterations=2, max_steps=2, lco_beta=beta
    )
    assert (args.lco_anchor_update_steps, args.lco_beta_negative) == (1, 100.0)  # outcome's defaults
    trainer = _Recorder(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )
    trainer.train()
    assert trainer._anchor is None  # m = 1 keeps no snapshot: z_old comes from the saved rollout state
    assert len(trainer.generation_policies) == 1 and len(trainer.records) == 2
    old_policy = trainer.generation_policies[0]
    inputs, loss, current_policy = trainer.records[1]  # the second step reuses the first rollout
    with torch.no_grad():
        _, z = _completion_logits(current_policy, inputs)
        _, z_old = _completion_logits(old_policy, inputs)
        A = lco.sparse_advantages(_token_advantages(inputs).float(), inputs["completion_ids"], z.shape[-1])
        expected = _kld_closed_form(z, z_old, inputs, beta, 100.0 * beta)
        # the same through the library's naive loss, β_negative by the sign of the uncentred A
        naive = lco.lco_kld(
            z,
            z_old,
            A,
            beta,
            inputs["completion_mask"].bool(),
            beta_negative=100.0 * beta,
            normalization="mean",
        )
    assert (_token_advantages(inputs) < 0).any(), "no negative advantage: β_negative is not exercised"
    assert (z - z_old).norm() > 1e-4, "the policy did not move between generation and the reuse step"
    assert abs(loss - expected) < 1e-5 * max(1.0, abs(expected))
    assert abs(float(naive) - expected) < 1e-5 * max(1.0, abs(expected))


def test_initial_policy_anchor_across_several_generation_batches_with_reuse(
    tmp_path, tiny_models, tokenizer, prompts
):
    """m = 0 with two generation batches, each optimised twice: every step's z_old is the initial policy's,
    not the policy that generated the batch (they differ from the second batch on)."""
    beta = 0.8
    args = tiny_config(
        tmp_path,
        tiny_models,
        objective="lco_kld",
        num_iterations=2,
        max_steps=4,
        lco_beta=beta,
        lco_anchor_update_steps=0,
        lco_beta_negative=beta,  # one β for both signs
    )
    trainer = _Recorder(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )
    trainer.train()
    assert len(trainer.generation_policies) == 2 and len(trainer.records) == 4
    initial = trainer.generation_policies[0]  # generated before any update: the initial policy
    for step, (inputs, loss, current_policy) in enumerate(trainer.records):
        with torch.no_grad():
            _, z = _completion_logits(current_policy, inputs)
            _, z_initial = _completion_logits(initial, inputs)
            _, z_generating = _completion_logits(trainer.generation_policies[step // 2], inputs)
            expected = _kld_closed_form(z, z_initial, inputs, beta, beta)
        assert abs(loss - expected) < 1e-5 * max(1.0, abs(expected)), step
        if step >= 2:  # the second batch was generated by a moved policy: the anchor is not it
            assert (z_generating - z_initial).norm() > 1e-4
            assert abs(loss - _kld_closed_form(z, z_generating, inputs, beta, beta)) > 1e-6


def test_objective_grpo_is_exactly_trls_grpo_trainer(tmp_path, tiny_models, tokenizer, prompts):
    common = dict(
        num_generations=2,
        max_completion_length=6,
        per_device_train_batch_size=2,
        max_steps=2,
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        learning_rate=1e-3,
        seed=0,
        logging_steps=1,
    )
    # Each trainer seeds in its constructor; train right after, so both sample from the same RNG state.
    ours = LCOTrainer(
        tiny_models["policy"],
        parity_reward,
        tiny_config(tmp_path / "a", tiny_models, objective="grpo", **common),
        train_dataset=prompts,
        processing_class=tokenizer,
    )
    ours.train()
    trl = GRPOTrainer(
        tiny_models["policy"],
        parity_reward,
        GRPOConfig(output_dir=str(tmp_path / "b"), loss_type="grpo", **common),
        train_dataset=prompts,
        processing_class=tokenizer,
    )
    trl.train()
    assert [log.get("grad_norm") for log in ours.state.log_history] == [
        log.get("grad_norm") for log in trl.state.log_history
    ]
    ours_losses = [log["loss"] for log in ours.state.log_history if "loss" in log]
    trl_losses = [log["loss"] for log in trl.state.log_history if "loss" in log]
    assert ours_losses == trl_losses
    for (name, p), (_, q) in zip(ours.model.named_parameters(), trl.model.named_parameters(), strict=True):
        assert torch.equal(p, q), f"{name} differs after the same two GRPO updates"
