"""LCO's stability options through the trainer: the anchor snapshot, the support, β_negative, z/T, the presets,
and the dynamics diagnostics that must measure the same thing for every method."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM

import lco
from lco.objectives.reduction import masked_mean
from lco.objectives.rollout import ROLLOUT_KEY, Rollout
from lco.objectives.targets import support_ids
from lco.trainer import LCOConfig, LCOTrainer

from .conftest import parity_reward, tiny_config
from .test_trainer_exact import _completion_logits, _manual_batch, _token_advantages


class _AnchorRecorder(LCOTrainer):
    """Keeps, for every step, the policy that generated it, the batch, the loss and the policy at loss time."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.generation_policies, self.records = {}, []

    def _generate_and_score_completions(self, inputs):
        step = self.state.global_step
        self.generation_policies[step] = copy.deepcopy(self.accelerator.unwrap_model(self.model))
        return super()._generate_and_score_completions(inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        current = copy.deepcopy(self.accelerator.unwrap_model(model))
        self.records.append((self.state.global_step, inputs, float(loss.detach()), current))
        return loss


def _recorder(tmp_path, tiny_models, tokenizer, prompts, objective="lco_kld", **overrides):
    args = tiny_config(tmp_path, tiny_models, objective=objective, **overrides)
    return _AnchorRecorder(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )


def _batch_old_logits(inputs) -> torch.Tensor:
    """z_old as the loss reads it: the saved hidden states times the saved head, [B, T, V]."""
    z_old = Rollout.collate(inputs[ROLLOUT_KEY]).z_old
    w, b = z_old.head.weight, z_old.head.bias
    z = z_old.hidden @ w.T
    return z if b is None else z + b


def _initial_policy(tiny_models):
    """An independent copy of the initial policy, loaded from disk (not the trainer's snapshot)."""
    return AutoModelForCausalLM.from_pretrained(tiny_models["policy"]).eval()


def _sparse_A(inputs, vocab):
    return lco.sparse_advantages(_token_advantages(inputs).float(), inputs["completion_ids"], vocab)


def _default_kld(z, z_old, inputs, beta, mask=None):
    """The naive LCO-KLD with the outcome advantage's defaults: mean normalisation, β_negative = 100β."""
    mask = inputs["completion_mask"].bool() if mask is None else mask
    A = _sparse_A(inputs, z.shape[-1])
    return lco.lco_kld(z, z_old, A, beta, mask, beta_negative=100 * beta, normalization="mean")


# --- the anchor ---------------------------------------------------------------------------------


def test_anchor_never_refreshed_is_the_initial_policy_at_every_step(
    tmp_path, tiny_models, tokenizer, prompts
):
    beta = 0.8
    trainer = _recorder(
        tmp_path, tiny_models, tokenizer, prompts, lco_anchor_update_steps=0, max_steps=3, lco_beta=beta
    )
    trainer.train()
    initial = _initial_policy(tiny_models)
    assert [step for step, *_ in trainer.records] == [0, 1, 2]
    assert trainer._anchor.refresh_steps == [0]
    for step, inputs, loss, current in trainer.records:
        with torch.no_grad():
            _, z_initial = _completion_logits(initial, inputs)
            _, z = _completion_logits(current, inputs)
            # outcome's β_negative default, 100β, by the sign of the uncentred A
            expected = _default_kld(z, z_initial, inputs, beta)
        torch.testing.assert_close(_batch_old_logits(inputs), z_initial, atol=1e-5, rtol=1e-5)
        assert abs(loss - float(expected)) < 1e-5 * max(1.0, abs(float(expected))), step
        if step > 0:
            assert (z - z_initial).norm() > 1e-4, (
                "the policy did not move, so the test cannot tell the anchors apart"
            )


def test_anchor_every_two_steps_changes_exactly_at_steps_0_2_4(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _recorder(tmp_path, tiny_models, tokenizer, prompts, lco_anchor_update_steps=2, max_steps=5)
    trainer.train()
    assert trainer._anchor.refresh_steps == [0, 2, 4]
    policies = trainer.generation_policies  # the policy at the beginning of each step
    assert sorted(policies) == [0, 1, 2, 3, 4]
    for step, inputs, _, _ in trainer.records:
        with torch.no_grad():
            _, z_anchor = _completion_logits(policies[2 * (step // 2)], inputs)
            _, z_generating = _completion_logits(policies[step], inputs)
        z_old = _batch_old_logits(inputs)
        torch.testing.assert_close(z_old, z_anchor, atol=1e-5, rtol=1e-5)
        if step % 2 == 1:  # between refreshes the anchor is behind the policy
            assert (z_old - z_generating).abs().max() > 1e-4, step
    # after the last refresh the snapshot holds exactly the policy of step 4
    snapshot = trainer.accelerator.unwrap_model(trainer._anchor.snapshot).state_dict()
    for name, value in policies[4].state_dict().items():
        assert torch.equal(snapshot[name], value), name


def test_anchor_every_step_keeps_no_snapshot(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _recorder(tmp_path, tiny_models, tokenizer, prompts, lco_anchor_update_steps=1, max_steps=1)
    assert trainer._anchor is None
    trainer.train()
    _, inputs, _, _ = trainer.records[0]
    assert (
        Rollout.collate(inputs[ROLLOUT_KEY]).z_old is None
    )  # on-policy: z_old is the current logits, no extra pass


# --- support, β_negative, temperature ---------------------------------------------------------


def test_authors_preset_loss_is_the_naive_top5_std_and_beta_negative_loss(
    tmp_path, tiny_models, tokenizer, prompts
):
    beta = 0.5
    trainer = _recorder(
        tmp_path, tiny_models, tokenizer, prompts, lco_preset="authors", lco_beta=beta, max_steps=2
    )
    trainer.train()
    initial = _initial_policy(tiny_models)
    for _, inputs, loss, current in trainer.records:
        with torch.no_grad():
            _, z_initial = _completion_logits(initial, inputs)
            _, z = _completion_logits(current, inputs)
            # the outcome advantage is sparse: "none" normalisation, and the support holds a_t
            ids = support_ids(z_initial, 5, inputs["completion_ids"])
            expected = lco.lco_kld(
                z,
                z_initial,
                _sparse_A(inputs, z.shape[-1]),
                beta,
                inputs["completion_mask"].bool(),
                beta_negative=100 * beta,
                support=ids,
            )
        assert abs(loss - float(expected)) < 1e-5 * max(1.0, abs(float(expected)))


def test_sampled_support_regresses_the_sampled_logit(tmp_path, tiny_models, tokenizer, prompts):
    beta = 0.7
    trainer = _recorder(
        tmp_path,
        tiny_models,
        tokenizer,
        prompts,
        objective="lco_mse",
        lco_support="sampled",
        advantage_normalization="none",
        lco_anchor_update_steps=0,
        lco_beta=beta,
        max_steps=2,
    )
    trainer.train()
    initial = _initial_policy(tiny_models)
    _, inputs, loss, current = trainer.records[1]
    with torch.no_grad():
        _, z_initial = _completion_logits(initial, inputs)
        _, z = _completion_logits(current, inputs)
        a = inputs["completion_ids"].unsqueeze(-1)
        # the authors' sampled-logit regression: (z_a − (z_old,a + A/β))² on the sampled token
        adv = _token_advantages(inputs)
        per_sign = torch.where(adv < 0, adv / (100 * beta), adv / beta)  # outcome's β_negative = 100β
        target = z_initial.gather(-1, a).squeeze(-1) + per_sign
        per_token = (z.gather(-1, a).squeeze(-1) - target) ** 2
        expected = masked_mean(per_token, inputs["completion_mask"].float())
    assert abs(loss - float(expected)) < 1e-5 * max(1.0, abs(float(expected)))


def test_temperature_consistent_loss_is_the_naive_kld_on_z_over_t(tmp_path, tiny_models, tokenizer, prompts):
    beta, T = 1.3, 0.1  # the tiny policy is near uniform: a low T makes z/T differ from z measurably
    trainer = _recorder(
        tmp_path,
        tiny_models,
        tokenizer,
        prompts,
        lco_temperature_consistent=True,
        temperature=T,
        lco_anchor_update_steps=0,
        lco_beta=beta,
        max_steps=2,
    )
    trainer.train()
    initial = _initial_policy(tiny_models)
    for _, inputs, loss, current in trainer.records:
        with torch.no_grad():
            _, z_initial = _completion_logits(initial, inputs)
            _, z = _completion_logits(current, inputs)
            expected = _default_kld(z / T, z_initial / T, inputs, beta)
            at_one = _default_kld(z, z_initial, inputs, beta)
        assert abs(loss - float(expected)) < 2e-6 * max(1.0, abs(float(expected)))
        assert abs(loss - float(at_one)) > 1e-4, "T = 1 would give the same loss; the test cannot fail"


def test_temperature_consistent_gradient_is_the_autograd_gradient_of_the_naive_loss(
    tmp_path, tiny_models, tokenizer, prompts
):
    beta, T = 0.9, 0.6
    args = tiny_config(
        tmp_path,
        tiny_models,
        objective="lco_kld",
        lco_temperature_consistent=True,
        temperature=T,
        lco_beta=beta,
    )
    trainer = LCOTrainer(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )
    model = trainer.model
    batch = _manual_batch(tokenizer, model.config.vocab_size)
    model.zero_grad()
    trainer.compute_loss(model, batch).backward()
    fused = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    _, z = _completion_logits(model, batch)
    # on-policy: z_old is the current logits at T, detached
    _default_kld(z / T, (z / T).detach(), batch, beta).backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(fused[name], p.grad, atol=1e-6, rtol=1e-4, msg=name)


# --- diagnostics --------------------------------------------------------------------------------


class _LossRecorder(LCOTrainer):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.losses = []

    def _objective_loss(self, model, inputs):
        loss = super()._objective_loss(model, inputs)
        self.losses.append(loss.detach())
        return loss


@pytest.mark.parametrize("objective", ["lco_kld", "reinforce"])
def test_sign_passes_keep_the_attention_mask_and_restrict_only_the_loss(
    tmp_path, tiny_models, tokenizer, prompts, objective
):
    args = tiny_config(tmp_path, tiny_models, objective=objective, temperature=0.7, dynamics_every=1)
    trainer = _LossRecorder(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )
    model = trainer.model.train()
    batch = _manual_batch(tokenizer, model.config.vocab_size)
    # signs that alternate inside each completion: removing one sign from the attention mask would
    # change the context of the other sign's tokens
    signs = torch.tensor([[1.0, -1.0, 1.0, -1.0, 1.0], [-1.0, 1.0, -1.0, 0.0, 0.0]])
    batch[ROLLOUT_KEY] = Rollout(signs * torch.tensor([[0.5], [1.5]]) * batch["completion_mask"]).split()
    trainer._log_gradient_norms_by_sign(model, batch)
    assert len(trainer.losses) == 2

    mask = batch["completion_mask"].float()
    with torch.no_grad():
        _, z = _completion_logits(model, batch)  # the full attention mask
    signs = (_token_advantages(batch) > 0, _token_advantages(batch) < 0)
    for recorded, selected in zip(trainer.losses, signs, strict=True):
        loss_mask = mask * selected
        if objective == "lco_kld":
            expected = _default_kld(z, z, batch, args.lco_beta, loss_mask.bool())
        else:
            logps = (
                torch.log_softmax(z / 0.7, -1).gather(-1, batch["completion_ids"].unsqueeze(-1)).squeeze(-1)
            )
            expected = lco.reinforce_loss(logps, _token_advantages(batch), loss_mask)
        torch.testing.assert_close(recorded, expected, atol=1e-6, rtol=1e-5)


def test_lco_entropy_is_logged_at_the_sampling_temperature(tmp_path, tiny_models, tokenizer, prompts):
    T = 0.5
    args = tiny_config(tmp_path, tiny_models, objective="lco_kld", temperature=T)
    trainer = LCOTrainer(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )
    model = trainer.model.train()
    batch = _manual_batch(tokenizer, model.config.vocab_size)
    trainer.compute_loss(model, batch)
    with torch.no_grad():
        _, z = _completion_logits(model, batch)
    entropy = torch.distributions.Categorical(logits=z / T).entropy()
    mask = batch["completion_mask"].float()
    expected = float((entropy * mask).sum() / mask.sum())
    metrics = trainer._metrics["train"]
    assert metrics["lco/entropy"][-1] == pytest.approx(expected, rel=1e-5)
    assert metrics["lco/kl_anchor"][-1] == 0.0  # on-policy with m = 1: the anchor is the policy


def test_kl_anchor_is_the_kl_from_the_policy_to_the_initial_policy(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _recorder(tmp_path, tiny_models, tokenizer, prompts, lco_anchor_update_steps=0, max_steps=2)
    trainer.train()
    logged = [log["lco/kl_anchor"] for log in trainer.state.log_history if "lco/kl_anchor" in log]
    initial = _initial_policy(tiny_models)
    _, inputs, _, current = trainer.records[1]
    with torch.no_grad():
        _, z0 = _completion_logits(initial, inputs)
        _, z = _completion_logits(current, inputs)
    kl = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=z), torch.distributions.Categorical(logits=z0)
    )
    mask = inputs["completion_mask"].float()
    # a KL of ~6e-5 summed over 256 fp32 terms: agreement to ~1e-7 absolute is the precision available
    assert logged[1] == pytest.approx(float((kl * mask).sum() / mask.sum()), abs=5e-7)
    assert logged[1] > 1e-5  # with the generating policy as anchor it would be 0


# --- the config -----------------------------------------------------------------------------------


def _fields(config) -> dict:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def _changed(tmp_path, tiny_models, **overrides) -> dict:
    plain = _fields(tiny_config(tmp_path, tiny_models, lco_beta=2.0))
    preset = _fields(tiny_config(tmp_path, tiny_models, lco_beta=2.0, **overrides))
    return {name: preset[name] for name in plain if plain[name] != preset[name]}


def test_paper_preset_on_the_outcome_advantage_drops_only_beta_negative(tmp_path, tiny_models):
    # issue 22: "outcome" (policy-dependent) defaults to the paper's anchor with β_negative = 100β; the
    # paper's preset changes nothing else
    assert _changed(tmp_path, tiny_models, lco_preset="paper") == {
        "lco_preset": "paper",
        "lco_beta_negative": None,
    }


def test_authors_preset_sets_exactly_the_documented_fields(tmp_path, tiny_models):
    assert _changed(tmp_path, tiny_models, lco_preset="authors") == {
        "lco_preset": "authors",
        "lco_support": "top_k",  # lco_support_k's default is already the authors' 5
        "advantage_normalization": "none",  # a sparse advantage: no std (that is the dense DPO one's)
        "lco_anchor_update_steps": 0,
        # lco_beta_negative: the authors' 100 · lco_beta is already outcome's default (issue 22)
    }
    config = tiny_config(tmp_path, tiny_models, lco_preset="authors")
    assert (config.lco_support_k, config.lco_beta_negative) == (5, 100.0)


def test_a_preset_leaves_the_fields_the_user_set_to_the_presets_values(tmp_path, tiny_models):
    user = dict(advantage_normalization="none", lco_beta_negative=200.0, lco_anchor_update_steps=0)
    assert _changed(tmp_path, tiny_models, lco_preset="authors", **user) == {
        "lco_preset": "authors",
        "lco_support": "top_k",
        "advantage_normalization": "none",
        "lco_anchor_update_steps": 0,
    }
    config = tiny_config(tmp_path, tiny_models, lco_preset="authors", lco_temperature_consistent=True)
    assert (config.lco_support, config.lco_temperature_consistent) == ("top_k", True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lco_anchor_update_steps": -1}, "lco_anchor_update_steps must be an int >= 0"),
        ({"lco_support": "top5"}, "lco_support must be one of"),
        ({"lco_support": "top_k", "lco_support_k": 0}, "lco_support_k must be an int >= 1"),
        ({"lco_support_k": 3}, "lco_support_k=3 is read only with lco_support='top_k'"),
        ({"lco_support": "sampled", "advantage_normalization": "none"}, "lco_support='sampled' .* lco_kld"),
        ({"lco_support": "top_k", "lco_support_k": 1}, "lco_support='top_k' .* lco_kld"),
        (
            {"objective": "lco_mse", "lco_support": "sampled"},
            "advantage_normalization='mean' has no statistics",
        ),
        ({"lco_beta_negative": 0.0}, "lco_beta_negative must be None or a finite number > 0"),
        ({"lco_beta_negative": float("inf")}, "lco_beta_negative must be None or a finite number > 0"),
        ({"lco_preset": "llama-rlhf"}, "lco_preset must be None or one of"),
        ({"advantage_normalization": "median"}, "advantage_normalization must be one of"),
        ({"objective": "grpo", "lco_support": "top_k"}, "lco_support applies to the LCO objectives"),
        ({"objective": "ppo", "lco_anchor_update_steps": 2}, "lco_anchor_update_steps applies to the LCO"),
        ({"objective": "reinforce", "lco_beta_negative": 2.0}, "lco_beta_negative applies to the LCO"),
        ({"objective": "grpo", "lco_temperature_consistent": True}, "lco_temperature_consistent applies"),
        ({"objective": "sft", "lco_preset": "paper"}, "lco_preset applies to the LCO objectives"),
    ],
)
def test_bad_stability_options_name_the_field(tmp_path, tiny_models, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(tmp_path, tiny_models, **overrides)


def test_std_normalisation_is_accepted_for_a_dense_advantage(tmp_path, tiny_models):
    config = tiny_config(tmp_path, tiny_models, advantage="dpo_dense", advantage_normalization="std")
    assert config.advantage_normalization == "std"


def test_every_lco_objective_accepts_the_options_and_no_other_does():
    from lco.objectives.registry import OBJECTIVE_SPECS

    accepting = {name for name, spec in OBJECTIVE_SPECS.items() if spec.accepts_lco_options}
    assert accepting == {"lco_kld", "lco_lch", "lco_mse"}
    assert isinstance(LCOConfig.__dataclass_fields__["lco_support"].metadata["help"], str)


# --- resume -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("every", "resume_at", "anchor_step"), [(0, 2, 0), (2, 3, 2)])
def test_resume_continues_with_the_checkpointed_anchor(
    tmp_path, tiny_models, tokenizer, prompts, every, resume_at, anchor_step
):
    first = _recorder(
        tmp_path,
        tiny_models,
        tokenizer,
        prompts,
        lco_anchor_update_steps=every,
        max_steps=resume_at,
        save_strategy="steps",
        save_steps=1,
    )
    first.train()
    out = tmp_path / "out"
    # the policy at the beginning of step `anchor_step` (the initial one, or checkpoint-2's)
    anchor_path = tiny_models["policy"] if anchor_step == 0 else str(out / f"checkpoint-{anchor_step}")
    expected_anchor = AutoModelForCausalLM.from_pretrained(anchor_path).eval()
    # built from the latest checkpoint, not the initial model: the anchor must come from the checkpoint file
    args = tiny_config(
        tmp_path, tiny_models, objective="lco_kld", lco_anchor_update_steps=every, max_steps=resume_at + 1
    )
    resumed = _AnchorRecorder(
        str(out / f"checkpoint-{resume_at}"),
        parity_reward,
        args,
        train_dataset=prompts,
        processing_class=tokenizer,
    )
    resumed.train(resume_from_checkpoint=str(out / f"checkpoint-{resume_at}"))
    assert [step for step, *_ in resumed.records] == [resume_at]
    assert resumed._anchor.refresh_steps == ([0] if every == 0 else [0, 2])
    _, inputs, _, current = resumed.records[0]
    with torch.no_grad():
        _, z_anchor = _completion_logits(expected_anchor, inputs)
        _, z = _completion_logits(current, inputs)
    torch.testing.assert_close(_batch_old_logits(inputs), z_anchor, atol=1e-5, rtol=1e-5)
    assert (z - z_anchor).abs().max() > 1e-4, "the resumed policy equals the anchor; the test cannot fail"
