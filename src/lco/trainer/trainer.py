"""``LCOTrainer``: TRL's ``GRPOTrainer`` with LCO and the paper's baselines as one config switch.

The trainer only wires. Generation, reward functions, vLLM, accelerate/DeepSpeed and logging
are TRL's. At generation time it saves what the chosen objective × advantage needs — the old
policy's final hidden states (never its ``[B, T, V]`` logits), the reward models' hidden
states, critic values — and at loss time it hands tensors to a pure objective from
:mod:`lco.objectives` and an estimator from :mod:`lco.advantages`:

=============================  =================================================================
objective                      loss
=============================  =================================================================
lco_kld / lco_lch / lco_mse    :func:`lco.objectives.fused.fused_lco_loss` (eqs. 8–10), chunked
grpo dapo dr_grpo gspo cispo   TRL's own ``GRPOTrainer._compute_loss`` (``loss_type`` set for you)
ppo                            :func:`lco.ppo_clip_loss` + critic (:func:`lco.value_loss`, :func:`lco.gae`)
reinforce                      :func:`lco.reinforce_loss` with a leave-one-out / batch-mean baseline
minillm / gkd                  :func:`lco.reverse_kl_loss` / :func:`lco.generalized_jsd_loss` to the teacher
sft                            :func:`lco.sft_loss` on the completions with a positive advantage
=============================  =================================================================
"""

from __future__ import annotations

import functools
import json
import logging
import os

import torch
from accelerate.utils import is_peft_model
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.models import prepare_deepspeed, prepare_fsdp

from ..advantages import gae, group_advantages, normalize_advantages
from ..objectives.distill import generalized_jsd_per_token, reverse_kl_per_token
from ..objectives.fused import (
    SparseAdvantages,
    dpo_advantage_chunks,
    fused_lco_loss,
    logprob_advantage_chunks,
)
from ..objectives.policy_gradient import ppo_clip_loss, reinforce_loss, value_loss
from ..objectives.reduction import masked_mean
from ..vocabularies import vocabulary_difference
from .checkpoints import resolve_resume_checkpoint, staged_save
from .config import LCO_OBJECTIVES, TRL_OBJECTIVES, LCOConfig
from .data import check_train_dataset
from .gap_monitor import GAP_STATE_FILE, GapMonitor, StepSizeGuard
from .guard import NonFiniteGuard
from .heads import chunked_distribution_loss, chunked_token_stats
from .lm_head import add_hidden_state_head, head_outputs
from .preflight import check_before_loading
from .value_head import attach_value_head, load_value_head, save_value_head

logger = logging.getLogger(__name__)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


class LCOTrainer(GRPOTrainer):
    """Drop-in replacement for ``trl.GRPOTrainer``: same arguments, plus :class:`LCOConfig`'s fields.

    >>> trainer = LCOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", reward_funcs=my_reward,
    ...                      args=LCOConfig(output_dir="out", objective="lco_kld"), train_dataset=ds)
    >>> trainer.train()
    """

    _tag_names = ["trl", "lco"]
    _name = "LCO"

    def __init__(
        self,
        model: str | PreTrainedModel,
        reward_funcs=None,
        args: LCOConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        reward_processing_classes=None,
        callbacks=None,
        optimizers=(None, None),
        peft_config=None,
        **kwargs,
    ):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = LCOConfig(output_dir=f"{str(name).rstrip('/').split('/')[-1]}-LCO")
        if not isinstance(args, LCOConfig):
            raise TypeError(
                f"args must be an lco.LCOConfig (it extends trl.GRPOConfig), got {type(args).__name__}"
            )
        # Everything that can be checked without loading a model is checked first.
        check_train_dataset(train_dataset)
        check_before_loading(args, model, auxiliary_model_paths(args))
        if reward_funcs is None:
            if args.objective in ("minillm", "gkd") or args.advantage != "outcome":
                reward_funcs = []  # rewards are then only logged if the user passes some
            else:
                raise ValueError(
                    f"reward_funcs is required for objective={args.objective!r} with advantage='outcome': the "
                    "outcome advantage is the group-normalised reward"
                )
        policy_tokenizer = processing_class
        if policy_tokenizer is None:
            policy_id = model if isinstance(model, str) else model.config._name_or_path
            policy_tokenizer = AutoTokenizer.from_pretrained(
                policy_id, padding_side="left", truncation_side="left"
            )
            processing_class = policy_tokenizer
        self._auxiliary_paths = auxiliary_model_paths(args)
        check_vocabularies(policy_tokenizer, self._auxiliary_paths)

        self._guard = NonFiniteGuard(args.max_nonfinite_steps)
        callbacks = [*(callbacks or []), self._guard]
        super().__init__(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            reward_processing_classes=reward_processing_classes,
            callbacks=callbacks,
            optimizers=optimizers,
            peft_config=peft_config,
            **kwargs,
        )
        self._guard.metrics = self._metrics["train"]
        policy = self.model.get_base_model() if is_peft_model(self.model) else self.model
        add_hidden_state_head(policy)
        self._policy_vocab = policy.get_output_embeddings().weight.shape[0]
        self._guard.vocab_size = self._policy_vocab  # for the uniform-collapse check
        self._aux_models = {role: self._load_frozen(path) for role, path in self._auxiliary_paths.items()}
        if args.objective == "ppo":
            hidden = policy.config.get_text_config().hidden_size
            # The critic: a value head on the policy's final hidden states, saved apart (value_head.py)
            attach_value_head(policy, hidden)
            if args.ppo_kl_coef > 0 and "ppo_reference" not in self._aux_models:
                self._aux_models["ppo_reference"] = self._load_frozen(policy.config._name_or_path)
        self._old_head: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._aux_heads: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._dynamics_norms: dict[str, float] = {}
        self._last_rewards: torch.Tensor | None = None
        self._gap_monitor = self._add_gap_monitor() if args.gap_every > 0 else None

    # ------------------------------------------------------------------ models

    def _load_frozen(self, path: str) -> nn.Module:
        """A frozen causal LM in eval mode (a reward model, reference or teacher), placed like TRL's ref model."""
        dtype = self.accelerator.unwrap_model(self.model).dtype
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        vocab = model.get_output_embeddings().weight.shape[0]
        if vocab < self._policy_vocab:
            raise ValueError(
                f"the model at {path} has an LM head of {vocab} tokens but the policy has {self._policy_vocab}; "
                "reward models, references and teachers must cover the policy's vocabulary"
            )
        model.eval().requires_grad_(False)
        add_hidden_state_head(model)
        if self.is_deepspeed_enabled:
            return prepare_deepspeed(model, self.accelerator)
        if self.is_fsdp_enabled:
            return prepare_fsdp(model, self.accelerator)
        return self.accelerator.prepare_model(model, evaluation_mode=True)

    def _hidden_and_head(self, model, input_ids, attention_mask, logits_to_keep):
        """Detached final hidden states at the completion positions and the (first V_policy rows of the) head."""
        V = self._policy_vocab

        def grab(h, w, b):
            return h.detach(), w.detach()[:V], (None if b is None else b.detach()[:V])

        return head_outputs(model, input_ids, attention_mask, logits_to_keep, grab)

    # ------------------------------------------------------------------ generation time

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._guard.check_rewards(rewards_per_func, self.reward_func_names, self.state.global_step)
        # Kept for the baselines that build their own advantages from the raw rewards (REINFORCE, PPO).
        self._last_rewards = rewards_per_func
        return rewards_per_func

    def _reuses_rollouts(self) -> bool:
        """True when a generation batch is optimised on after the policy has changed (TRL's condition)."""
        generate_every = self.args.steps_per_generation * self.num_iterations
        return self.args.gradient_accumulation_steps % generate_every != 0

    def _generate_and_score_completions(self, inputs):
        try:
            output = super()._generate_and_score_completions(inputs)
        except RuntimeError as err:  # sampling from NaN/inf probabilities is a divergence, said so
            self._guard.check_sampling_error(err, self.state.global_step, self.args.output_dir)
            raise
        args = self.args
        input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        k = output["completion_ids"].size(1)
        saved: dict[str, list[torch.Tensor]] = {}

        def save(key, value):
            saved.setdefault(key, []).append(value)

        # Evaluation batches are scored once, by the current policy: there is no old policy to keep.
        needs_old_hidden = (
            args.objective in LCO_OBJECTIVES and self.model.training and self._reuses_rollouts()
        )
        needs_values = args.objective == "ppo"
        batch = args.per_device_train_batch_size
        with torch.no_grad():
            for s in range(0, input_ids.size(0), batch):
                ids, am = input_ids[s : s + batch], attention_mask[s : s + batch]
                if needs_old_hidden or needs_values:
                    h, w, b = self._hidden_and_head(self.model, ids, am, k)
                    if needs_old_hidden:
                        save("old_hidden", h)
                        if s == 0:  # a copy: the optimizer updates the live head in place
                            self._old_head = (w.clone(), None if b is None else b.clone())
                    if needs_values:
                        save("old_values", self._value_head()(h.float()).squeeze(-1))
                        old_logps, _ = chunked_token_stats(
                            h,
                            w,
                            b,
                            output["completion_ids"][s : s + batch],
                            args.lco_chunk_size,
                            self.temperature,
                        )
                        save("ppo_old_logps", old_logps)
                for role, model in self._aux_models.items():
                    h, w, b = self._hidden_and_head(model, ids, am, k)
                    if role == "ppo_reference":
                        logps, _ = chunked_token_stats(
                            h,
                            w,
                            b,
                            output["completion_ids"][s : s + batch],
                            args.lco_chunk_size,
                            self.temperature,
                        )
                        save("ref_logps", logps)
                    else:
                        save(f"{role}_hidden", h)
                        self._aux_heads[role] = (w, b)
        for key, pieces in saved.items():
            output[key] = torch.cat(pieces)
        self._attach_token_advantages(output)
        if self._gap_monitor is not None:
            output["sequence_rewards"] = self._gap_sequence_rewards(output["advantages"].numel())
        return output

    def _value_head(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model).lco_value_head

    def _sequence_rewards(self, n_local: int) -> torch.Tensor:
        """This process's slice of the weighted sequence rewards of the last generation batch."""
        weights = self.reward_weights.to(self._last_rewards.device)
        rewards = torch.nan_to_num((self._last_rewards * weights.unsqueeze(0)).nansum(dim=1))
        start = self.accelerator.process_index * n_local
        return rewards, rewards[start : start + n_local]

    def _attach_token_advantages(self, output: dict) -> None:
        """Token advantages ``[B, T]`` for the sampled tokens, by objective × advantage."""
        args = self.args
        mask = output["completion_mask"].float()
        seq_adv = output["advantages"]  # TRL's group/batch-normalised outcome advantage, [B]
        if args.objective == "reinforce":
            all_rewards, _ = self._sequence_rewards(seq_adv.numel())
            group = self.num_generations if self.model.training else self.num_generations_eval
            if group > 1:
                adv = group_advantages(all_rewards, group, baseline="leave_one_out", scale="none")
            else:
                adv = group_advantages(all_rewards, 1, baseline="mean", scale="batch")
            start = self.accelerator.process_index * seq_adv.numel()
            output["advantages"] = seq_adv = adv[start : start + seq_adv.numel()]
        if args.objective == "ppo":
            _, rewards = self._sequence_rewards(seq_adv.numel())
            old_logps = output["ppo_old_logps"]
            per_token = torch.zeros_like(mask)
            if "ref_logps" in output:
                per_token = -args.ppo_kl_coef * (old_logps - output["ref_logps"]) * mask
            last = (mask.cumsum(-1) == mask.sum(-1, keepdim=True)) & mask.bool()
            per_token = per_token + last.float() * rewards.unsqueeze(-1)
            advantages, returns = gae(per_token, output["old_values"], mask, args.ppo_gamma, args.ppo_lam)
            # Whitened over the valid tokens, as TRL's former PPOTrainer did.
            mean = masked_mean(advantages, mask)
            std = masked_mean((advantages - mean) ** 2, mask).sqrt()
            output["token_advantages"] = (advantages - mean) / (std + 1e-8) * mask
            output["returns"] = returns
            return
        if args.advantage in ("dpo_dense", "logprob_dense", "dpo_token"):
            # dpo_token is eq. 13 read at the sampled token; for the dense advantages this value is
            # only the sign split of the dynamics metrics, after the normalisation the loss applies.
            normalization = "none" if args.advantage == "dpo_token" else args.advantage_normalization
            rows = self._dense_advantage_rows(output)
            actions = output["completion_ids"].reshape(-1)
            picked = []
            for start in range(0, actions.numel(), args.lco_chunk_size):
                end = min(start + args.lco_chunk_size, actions.numel())
                dense = normalize_advantages(rows(start, end), normalization)
                picked.append(dense.gather(-1, actions[start:end, None]).squeeze(-1))
            output["token_advantages"] = torch.cat(picked).view_as(mask) * mask
        else:
            output["token_advantages"] = seq_adv.unsqueeze(-1) * mask

    # ------------------------------------------------------------------ loss time

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("LCOTrainer does not support returning outputs")
        if self._dynamics_due():
            self._log_gradient_norms_by_sign(model, inputs)
        if self._gap_monitor is not None and self._gap_monitor.due(
            self.state.global_step, self.model.training
        ):
            self._gap_monitor.accumulate(self.accelerator.unwrap_model(model), inputs)
        return self._objective_loss(model, inputs)

    def _objective_loss(self, model, inputs):
        objective = self.args.objective
        if objective in TRL_OBJECTIVES:
            if self.args.advantage == "dpo_token":
                inputs = {**inputs, "advantages": inputs["token_advantages"]}
            return self._compute_loss(model, inputs)
        if objective in LCO_OBJECTIVES:
            loss = self._lco_loss(model, inputs)
        elif objective in ("minillm", "gkd"):
            loss = self._distillation_loss(model, inputs)
        else:
            loss = self._policy_gradient_loss(model, inputs)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["lco/objective"].append(float(loss.detach()))
        normalizer = self._accumulation_steps() if mode == "train" else 1.0
        return loss / normalizer

    # ------------------------------------------------------------------ training dynamics (Figs. 3–6)

    def _accumulation_steps(self) -> int:
        # Set by Trainer's loop for the current window; before training starts it is the configured value.
        return getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)

    def _dynamics_due(self) -> bool:
        every = self.args.dynamics_every
        first_micro_step = self._step % self._accumulation_steps() == 0
        return (
            bool(every) and self.model.training and first_micro_step and self.state.global_step % every == 0
        )

    def _log_gradient_norms_by_sign(self, model, inputs) -> None:
        """‖∇_θ L‖ restricted to tokens with A > 0 and with A < 0, by two separate backward passes.

        Run on the unwrapped module with ``torch.autograd.grad`` so that neither ``.grad`` nor the
        DDP reducer sees these passes; the metrics they would log are discarded.
        """
        module = self.accelerator.unwrap_model(model)
        params = [p for p in module.parameters() if p.requires_grad]
        token_adv = inputs["token_advantages"]
        snapshot = {k: len(v) for k, v in self._metrics["train"].items()}
        for sign, selected in (("pos", token_adv > 0), ("neg", token_adv < 0)):
            masked = {
                **inputs,
                "completion_mask": inputs["completion_mask"] * selected.to(inputs["completion_mask"].dtype),
            }
            norm = torch.zeros((), device=token_adv.device)
            if bool(selected.any()):
                loss = self._objective_loss(module, masked)
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None))
                # undo the gradient-accumulation scaling so the norm is per optimizer step
                norm = norm * self._accumulation_steps()
            self._dynamics_norms[sign] = float(self.accelerator.gather(norm.reshape(1)).mean())
        for key in list(self._metrics["train"]):
            del self._metrics["train"][key][snapshot.get(key, 0) :]
        for sign, value in self._dynamics_norms.items():
            self._metrics["train"][f"lco/grad_norm_{sign}"].append(value)

    # ------------------------------------------------------------------ Gradient-Gap metrics (lco.gap)

    def _add_gap_monitor(self) -> GapMonitor:
        """The Gradient-Gap monitor (and the step-size guard), appended after every other callback."""
        args = self.args
        zero3 = self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3
        if self.is_fsdp_enabled or zero3:
            raise ValueError(
                "gap_every > 0 needs every process to hold the full parameters (one device or DDP, DeepSpeed "
                "ZeRO-1/2): it copies θ and takes score gradients on the unwrapped module, which FSDP and ZeRO-3 shard"
            )
        metrics = self._metrics["train"]
        guard_on = args.gap_step_guard != "off"
        monitor = GapMonitor(
            args.gap_every, self._completion_token_logps, self.accelerator, metrics, keep_log_ratios=guard_on
        )
        self.add_callback(monitor)
        self._step_guard = None
        if guard_on:
            self._step_guard = StepSizeGuard(
                monitor,
                args.gap_step_guard,
                args.gap_step_guard_tolerance,
                args.gap_step_guard_min_lr_scale,
                max_length=args.max_completion_length,
                metrics=metrics,
            )
            self.add_callback(self._step_guard)
        return monitor

    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None):
        # True resumes from the newest *complete* checkpoint; a given one must be complete
        resume_from_checkpoint = resolve_resume_checkpoint(self.args.output_dir, resume_from_checkpoint)
        return super().train(resume_from_checkpoint, trial, ignore_keys_for_eval)

    def _save_checkpoint(self, model, trial):
        # written under a staging name and renamed into place once complete (a kill loses no checkpoint)
        with staged_save(self, trial):
            self._write_checkpoint(model, trial)

    def _write_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self._gap_monitor is not None and self.args.should_save:
            # M(K), J(0) and the guard's lr scale continue on resume, as TRL does for its entropy controller.
            state = {"monitor": self._gap_monitor.state_dict()}
            if self._step_guard is not None:
                state["step_guard"] = self._step_guard.state_dict()
            folder = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            with open(os.path.join(folder, GAP_STATE_FILE), "w") as f:
                json.dump(state, f)

    def _save(self, output_dir=None, state_dict=None):
        super()._save(output_dir, state_dict)
        if self.args.objective == "ppo" and self.args.should_save:
            save_value_head(
                self._value_head(), output_dir if output_dir is not None else self.args.output_dir
            )

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if self.args.objective == "ppo":
            load_value_head(self._value_head(), resume_from_checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, GAP_STATE_FILE) if checkpoint is not None else None
        if self._gap_monitor is not None and path is not None and os.path.exists(path):
            with open(path) as f:
                state = json.load(f)
            self._gap_monitor.load_state_dict(state["monitor"])
            if self._step_guard is not None and "step_guard" in state:
                self._step_guard.load_state_dict(state["step_guard"])

    def _gap_sequence_rewards(self, n_local: int) -> torch.Tensor:
        """This process's weighted sequence rewards, NaN where every reward function declined to score."""
        _, rewards = self._sequence_rewards(n_local)
        start = self.accelerator.process_index * n_local
        unscored = torch.isnan(self._last_rewards[start : start + n_local]).all(dim=1)
        return rewards.masked_fill(unscored.to(rewards.device), float("nan"))

    def _completion_token_logps(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """log π_θ(o_t | q, o_<t) of the completion tokens ``[B, T]`` (with grad, sampling temperature), and
        the mask of the tokens the policy generated (tool outputs excluded)."""
        ids, am, k, mask = self._sequence_inputs(inputs)
        tokens = inputs["completion_ids"]

        def head_fn(h, w, b):
            return chunked_token_stats(h, w, b, tokens, self.args.lco_chunk_size, self.temperature)[0]

        return head_outputs(model, ids, am, k, head_fn), mask.float()

    def _sequence_inputs(self, inputs):
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        am = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        return ids, am, inputs["completion_ids"].size(1), mask

    def _dense_advantage_rows(self, inputs):
        """The dense advantage over the vocabulary (eq. 13 or 12), chunk by chunk, from saved hidden states."""
        if self.args.advantage in ("dpo_dense", "dpo_token"):
            (w_d, b_d), (w_r, b_r) = self._aux_heads["dpo"], self._aux_heads["ref"]
            return dpo_advantage_chunks(
                dpo_hidden=_flat(inputs["dpo_hidden"]),
                dpo_weight=w_d,
                dpo_bias=b_d,
                ref_hidden=_flat(inputs["ref_hidden"]),
                ref_weight=w_r,
                ref_bias=b_r,
            )
        return logprob_advantage_chunks(_flat(inputs["dpo_hidden"]), *self._aux_heads["dpo"])

    def lco_inputs(self, inputs) -> dict:
        """The fused-loss arguments (old logits and advantages sources) for one micro-batch."""
        args = self.args
        actions = inputs["completion_ids"].reshape(-1)
        if args.advantage in ("outcome", "dpo_token"):
            advantages = SparseAdvantages(inputs["token_advantages"].reshape(-1), actions)
        else:
            advantages = self._dense_advantage_rows(inputs)
        old_logits = None  # on-policy: z_old is the current logits, detached (no extra pass)
        if "old_hidden" in inputs:
            old_h = _flat(inputs["old_hidden"])
            w_old, b_old = self._old_head

            def old_logits(start: int, end: int) -> torch.Tensor:
                z = old_h[start:end].float() @ w_old.float().t()
                return z if b_old is None else z + b_old.float()

        return {"advantages": advantages, "old_logits": old_logits, "actions": actions}

    def _lco_loss(self, model, inputs):
        args = self.args
        ids, am, k, mask = self._sequence_inputs(inputs)
        sources = self.lco_inputs(inputs)

        def head_fn(h, w, b):
            return fused_lco_loss(
                _flat(h),
                w,
                bias=b,
                loss=args.objective,
                beta=args.lco_beta,
                normalization=args.advantage_normalization,
                mask=mask.reshape(-1).bool(),
                chunk_size=args.lco_chunk_size,
                return_stats=True,
                **sources,
            )

        loss, stats = head_outputs(model, ids, am, k, head_fn)
        self._log_lco_stats(stats, inputs["token_advantages"].reshape(-1), mask.reshape(-1).bool())
        return loss

    def _log_lco_stats(self, stats: dict, token_adv: torch.Tensor, mask: torch.Tensor) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = self._metrics[mode]
        gather = self.accelerator.gather

        def mean_over(values: torch.Tensor, selected: torch.Tensor) -> float:
            totals = gather(torch.stack([(values * selected).sum(), selected.sum()]).reshape(1, 2)).sum(0)
            return float(totals[0] / totals[1].clamp(min=1.0))

        m = mask.float()
        for name in ("entropy", "kl_old", "sampled_prob"):
            if name in stats:
                metrics[f"lco/{name}"].append(mean_over(stats[name], m))
        for sign, selected in (("pos", m * (token_adv > 0)), ("neg", m * (token_adv < 0))):
            for name in ("logit_grad_sampled", "logit_grad_nonsampled"):
                if name in stats:
                    metrics[f"lco/{name}_{sign}"].append(mean_over(stats[name], selected))

    def _policy_gradient_loss(self, model, inputs):
        args = self.args
        ids, am, k, mask = self._sequence_inputs(inputs)
        tokens = inputs["completion_ids"]
        with_values = args.objective == "ppo"

        def head_fn(h, w, b):
            logps, entropy = chunked_token_stats(h, w, b, tokens, args.lco_chunk_size, self.temperature)
            values = self._value_head()(h.float()).squeeze(-1) if with_values else None
            return logps, entropy, values

        logps, entropy, values = head_outputs(model, ids, am, k, head_fn)
        adv = inputs["token_advantages"]
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["entropy"].append(float(masked_mean(entropy, mask)))
        self._metrics[mode]["lco/sampled_prob"].append(float(masked_mean(logps.detach().exp(), mask)))
        if args.objective == "ppo":
            old_logps = inputs["ppo_old_logps"]
            pg = ppo_clip_loss(logps, old_logps, adv, self.epsilon_low, self.epsilon_high, mask)
            vf = value_loss(values, inputs["old_values"], inputs["returns"], args.ppo_cliprange_value, mask)
            self._metrics[mode]["lco/value_loss"].append(float(vf.detach()))
            return pg + args.ppo_vf_coef * vf
        if args.objective == "reinforce":
            return reinforce_loss(logps, adv, mask)
        # sft: imitate the completions that beat their baseline (rejection-sampling fine-tuning).
        keep = mask * (inputs["advantages"] > 0).unsqueeze(-1)
        return masked_mean(-logps, keep)

    def _distillation_loss(self, model, inputs):
        args = self.args
        ids, am, k, mask = self._sequence_inputs(inputs)
        teacher_h = _flat(inputs["teacher_hidden"])
        w_t, b_t = self._aux_heads["teacher"]

        def teacher_logits(start: int, end: int) -> torch.Tensor:
            z = teacher_h[start:end].float() @ w_t.float().t()
            return z if b_t is None else z + b_t.float()

        if args.objective == "minillm":
            per_token = reverse_kl_per_token
        else:
            per_token = functools.partial(generalized_jsd_per_token, beta=args.gkd_beta)

        def head_fn(h, w, b):
            return chunked_distribution_loss(
                h, w, b, teacher_logits, per_token, mask, args.lco_chunk_size, temperature=self.temperature
            )

        total = head_outputs(model, ids, am, k, head_fn)
        return total / mask.sum().clamp(min=1.0)


def _flat(hidden: torch.Tensor) -> torch.Tensor:
    return hidden.reshape(-1, hidden.shape[-1])


def auxiliary_model_paths(args: LCOConfig) -> dict[str, str]:
    """Which frozen models the objective × advantage needs, by role."""
    paths: dict[str, str] = {}
    if args.advantage in ("dpo_token", "dpo_dense"):
        paths["dpo"] = args.reward_model_path
        paths["ref"] = args.reference_reward_model_path
    elif args.advantage == "logprob_dense":
        paths["dpo"] = args.reward_model_path
    if args.objective in ("minillm", "gkd"):
        paths["teacher"] = args.teacher_model_path or args.reward_model_path
    return paths


def check_vocabularies(policy_tokenizer, paths: dict[str, str]) -> None:
    """Reward models, references and teachers must share the policy's tokenizer (checked before loading weights).

    A local model folder saved without tokenizer files cannot be compared here; it is then only
    held to the LM-head size check at load time, with a warning.
    """
    tokenizer = getattr(policy_tokenizer, "tokenizer", policy_tokenizer)
    policy_vocab = tokenizer.get_vocab()
    for role, path in paths.items():
        if os.path.isdir(path) and not any(os.path.exists(os.path.join(path, f)) for f in _TOKENIZER_FILES):
            if not os.path.exists(os.path.join(path, "config.json")):
                raise ValueError(f"the {role} model path {path} holds no model (no config.json)")
            logger.warning(
                "%s model at %s has no tokenizer files; its vocabulary cannot be compared", role, path
            )
            continue
        other = AutoTokenizer.from_pretrained(path)
        if other.get_vocab() != policy_vocab:
            raise ValueError(
                f"the {role} model at {path} has a different vocabulary than the policy's tokenizer "
                f"({vocabulary_difference(other.get_vocab(), policy_vocab)}); LCO's dense advantages compare "
                "distributions token by token, so every model must share the policy's tokenizer"
            )
