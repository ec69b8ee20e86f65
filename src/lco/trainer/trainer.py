"""``LCOTrainer``: TRL's ``GRPOTrainer`` with LCO and the paper's baselines as one config switch.

The trainer only wires. Generation, reward functions, vLLM, accelerate/DeepSpeed and logging are
TRL's. What an objective × advantage needs is its row of :mod:`lco.objectives.registry`; the
trainer reads the row and never branches on the objective's or the advantage's name.

At generation time (:meth:`LCOTrainer._generate_and_score_completions`) it puts into the batch what
the row asks for — the old policy's final hidden states and a copy of its head when rollouts are
reused (never its ``[B, T, V]`` logits), the reward models' or teacher's hidden states and heads,
the critic's values and PPO's old/reference log-probs — and builds the token advantages with the
row's builder from :mod:`lco.advantages`. With ``lco_anchor_update_steps`` ≠ 1 the "old policy" is
the frozen snapshot of :mod:`lco.trainer.anchor`, on every batch. At loss time (:meth:`LCOTrainer._objective_loss`) it
hands those tensors to a pure objective:

=============================  =================================================================
objective                      loss
=============================  =================================================================
lco_kld / lco_lch / lco_mse    :func:`lco.objectives.fused.fused_lco_loss` (eqs. 8–10), chunked
grpo dapo dr_grpo gspo cispo   TRL's own ``GRPOTrainer._compute_loss`` (``loss_type`` set for you)
ppo                            :func:`lco.ppo_clip_loss` + :func:`lco.value_loss`; advantages from
                               :func:`lco.ppo_token_rewards` and :func:`lco.ppo_gae_advantages`
reinforce                      :func:`lco.reinforce_loss`; advantages from :func:`lco.reinforce_advantages`
minillm / gkd                  :func:`lco.objectives.heads.chunked_distribution_loss` with the reverse KL /
                               generalised JSD per token, to the teacher
sft                            the NLL of the completions with a positive advantage
=============================  =================================================================

Every LM-head path reads logits through :func:`lco.objectives.heads.head_logit_chunks`, one chunk
of ``head_chunk_size`` tokens at a time, inside the model's patched forward
(:mod:`lco.trainer.hidden_state_forward`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

import torch
from accelerate.utils import is_peft_model
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer

from ..advantages import (
    normalize_advantages,
    ppo_gae_advantages,
    ppo_token_rewards,
    reinforce_advantages,
)
from ..objectives.fused import (
    SparseAdvantages,
    default_chunk_size,
    dpo_advantage_chunks,
    fused_lco_loss,
    logprob_advantage_chunks,
)
from ..objectives.heads import chunked_distribution_loss, chunked_token_stats, head_logit_chunks
from ..objectives.policy_gradient import ppo_clip_loss, reinforce_loss, value_loss
from ..objectives.reduction import masked_mean
from ..objectives.registry import ADVANTAGE_SPECS, OBJECTIVE_SPECS
from ..vocabularies import vocabulary_difference
from .anchor import Anchor, build_anchor, output_vocab_size, place_frozen
from .checkpoints import resolve_resume_checkpoint, staged_save
from .config import LCOConfig
from .data import check_train_dataset
from .gap_monitor import GAP_STATE_FILE, GapMonitor, StepSizeGuard
from .guard import NonFiniteGuard
from .hidden_state_forward import add_hidden_state_head, head_outputs
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
        self._spec = OBJECTIVE_SPECS[args.objective]
        self._advantage = ADVANTAGE_SPECS[args.advantage]
        check_before_loading(args, model, auxiliary_model_paths(args))
        if reward_funcs is None:
            if not (self._spec.uses_advantage and self._advantage.uses_outcome_reward):
                # TRL requires a reward source; the dense advantage needs none, so a constant 0 stands in
                reward_funcs = [no_reward_function]
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
        # Built before the forward patch: a copied policy's patched forward would close over the original.
        # On TRL's reference-model machinery (adapters disabled, a snapshot adapter, TRL's ref model, or
        # a frozen copy placed and synced as TRL does): lco.trainer.anchor.
        self._anchor: Anchor | None = build_anchor(self, model, peft_config is not None, self._place_frozen)
        if self._anchor is not None:
            self.add_callback(self._anchor)
        add_hidden_state_head(policy)
        # read from the full shape: under ZeRO-3 the head's local weight is an empty partition
        self._policy_vocab = output_vocab_size(policy)
        self._guard.vocab_size = self._policy_vocab  # for the uniform-collapse check
        self._aux_models = {role: self._load_frozen(path) for role, path in self._auxiliary_paths.items()}
        if self._spec.needs_values:
            hidden = policy.config.get_text_config().hidden_size
            # The critic: a value head on the policy's final hidden states, saved apart (value_head.py)
            attach_value_head(policy, hidden)
        if self._spec.needs_reference and args.ppo_kl_coef > 0 and "ppo_reference" not in self._aux_models:
            self._aux_models["ppo_reference"] = self._load_frozen(policy.config._name_or_path)
        self._dynamics_norms: dict[str, float] = {}
        self._last_rewards: torch.Tensor | None = None
        self._gap_monitor = self._add_gap_monitor() if args.gap_every > 0 else None

    # ------------------------------------------------------------------ models

    def _load_frozen(self, path: str) -> nn.Module:
        """A frozen causal LM in eval mode (a reward model, reference or teacher), placed like TRL's ref model."""
        dtype = self.accelerator.unwrap_model(self.model).dtype
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        vocab = output_vocab_size(model)
        if vocab < self._policy_vocab:
            raise ValueError(
                f"the model at {path} has an LM head of {vocab} tokens but the policy has {self._policy_vocab}; "
                "reward models, references and teachers must cover the policy's vocabulary"
            )
        return self._place_frozen(model)

    def _place_frozen(self, model: nn.Module) -> nn.Module:
        """Eval mode, no gradient, the hidden-state head, and TRL's ref-model placement."""
        return place_frozen(model, self.accelerator, self.is_deepspeed_enabled, self.is_fsdp_enabled)

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
        """TRL's batch plus what the objective × advantage needs at loss time (see the module docstring).

        Heads travel with the batch as ``<role>_head``: one ``(weight, bias)`` reference per completion
        (all the same tensors), because TRL shuffles and splits every batch value along its first axis.
        """
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
        heads: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

        def save(key, value):
            saved.setdefault(key, []).append(value)

        # Evaluation batches are scored once, by the current policy: there is no old policy to keep.
        # With an anchor snapshot (lco_anchor_update_steps != 1) z_old is always the snapshot's.
        needs_old_hidden = (
            self._spec.needs_old_hidden
            and self.model.training
            and (self._anchor is not None or self._reuses_rollouts())
        )
        old_policy = self._anchor.model if self._anchor is not None else lambda: contextlib.nullcontext(self.model)
        needs_values = self._spec.needs_values
        batch = args.per_device_train_batch_size
        with torch.no_grad():
            for s in range(0, input_ids.size(0), batch):
                ids, am = input_ids[s : s + batch], attention_mask[s : s + batch]
                if needs_old_hidden:
                    with old_policy() as old_model:  # e.g. the policy with its adapters disabled, inside only
                        h, w, b = self._hidden_and_head(old_model, ids, am, k)
                    save("old_hidden", h)
                    if s == 0:  # a copy: the optimizer (or the anchor's refresh) updates the head in place
                        heads["old"] = (w.clone(), None if b is None else b.clone())
                if needs_values:
                    h, w, b = self._hidden_and_head(self.model, ids, am, k)
                    save("old_values", self._value_head()(h.float()).squeeze(-1))
                    old_logps, _ = chunked_token_stats(
                        h,
                        w,
                        b,
                        output["completion_ids"][s : s + batch],
                        self._chunk_for_hidden(h),
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
                            self._chunk_for_hidden(h),
                            self.temperature,
                        )
                        save("ref_logps", logps)
                    else:
                        save(f"{role}_hidden", h)
                        heads[role] = (w, b)
        for key, pieces in saved.items():
            output[key] = torch.cat(pieces)
        for role, head in heads.items():
            output[f"{role}_head"] = [head] * input_ids.size(0)
        self._attach_token_advantages(output)
        if self._gap_monitor is not None:
            output["sequence_rewards"] = self._gap_sequence_rewards(output["advantages"].numel())
        return output

    def _chunk_for(self, n_tokens: int, hidden_size: int | None = None, device=None) -> int:
        """Tokens per chunk of a head path over ``n_tokens`` rows: the user's ``head_chunk_size``, else
        the fused loss's pick from N, V, H and the device's free memory (:func:`default_chunk_size`)."""
        if self.args.head_chunk_size:
            return self.args.head_chunk_size
        return default_chunk_size(self._policy_vocab, n_tokens, hidden_size, device)

    def _chunk_for_hidden(self, hidden: torch.Tensor) -> int:
        return self._chunk_for(hidden.numel() // hidden.shape[-1], hidden.shape[-1], hidden.device)

    def _value_head(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model).lco_value_head

    def _sequence_rewards(self, n_local: int) -> torch.Tensor:
        """This process's slice of the weighted sequence rewards of the last generation batch."""
        weights = self.reward_weights.to(self._last_rewards.device)
        rewards = torch.nan_to_num((self._last_rewards * weights.unsqueeze(0)).nansum(dim=1))
        start = self.accelerator.process_index * n_local
        return rewards, rewards[start : start + n_local]

    def _attach_token_advantages(self, output: dict) -> None:
        """Token advantages ``[B, T]`` for the sampled tokens, by the objective's builder."""
        builders = {
            "sequence": self._sequence_token_advantages,
            "leave_one_out": self._leave_one_out_token_advantages,
            "gae": self._gae_token_advantages,
        }
        builders[self._spec.token_advantages](output)

    def _leave_one_out_token_advantages(self, output: dict) -> None:
        """REINFORCE: TRL's advantage replaced by the leave-one-out (or batch-mean) baseline's."""
        n_local = output["advantages"].numel()
        all_rewards, _ = self._sequence_rewards(n_local)
        group = self.num_generations if self.model.training else self.num_generations_eval
        start = self.accelerator.process_index * n_local
        output["advantages"] = reinforce_advantages(all_rewards, group)[start : start + n_local]
        self._sequence_token_advantages(output)

    def _gae_token_advantages(self, output: dict) -> None:
        """PPO: per-token KL folded into the last-token reward, GAE with the critic, whitened."""
        args = self.args
        mask = output["completion_mask"].float()
        _, rewards = self._sequence_rewards(output["advantages"].numel())
        token_rewards = ppo_token_rewards(
            rewards, mask, output["ppo_old_logps"], output.get("ref_logps"), args.ppo_kl_coef
        )
        output["token_advantages"], output["returns"] = ppo_gae_advantages(
            token_rewards, output["old_values"], mask, args.ppo_gamma, args.ppo_lam
        )

    def _sequence_token_advantages(self, output: dict) -> None:
        """The sequence advantage on every token, or a reward model's advantage read at the sampled token."""
        mask = output["completion_mask"].float()
        if self._advantage.rows is None:
            output["token_advantages"] = output["advantages"].unsqueeze(-1) * mask
            return
        # dpo_token is eq. 13 read at the sampled token; for the dense advantages this value is
        # only the sign split of the dynamics metrics, after the normalisation the loss applies.
        normalization = self.args.advantage_normalization if self._advantage.dense else "none"
        rows = self._dense_advantage_rows(output)
        actions = output["completion_ids"].reshape(-1)
        picked = []
        chunk = self._chunk_for(actions.numel())
        for start in range(0, actions.numel(), chunk):
            end = min(start + chunk, actions.numel())
            dense = normalize_advantages(rows(start, end), normalization)
            picked.append(dense.gather(-1, actions[start:end, None]).squeeze(-1))
        output["token_advantages"] = torch.cat(picked).view_as(mask) * mask

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
        if self._spec.loss == "trl":
            if self._advantage.rows is not None:
                # a per-token advantage read from the reward models replaces TRL's sequence advantage
                inputs = {**inputs, "advantages": inputs["token_advantages"]}
            return self._compute_loss(model, inputs)
        losses = {
            "lco": self._lco_loss,
            "ppo": self._ppo_loss,
            "reinforce": self._reinforce_loss,
            "sft": self._sft_loss,
            "distillation": self._distillation_loss,
        }
        loss = losses[self._spec.loss](model, inputs)
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
        DDP reducer sees these passes; the metrics they would log are discarded. The sign selects
        the loss's tokens through ``tool_mask`` (multiplying one TRL put there), which every loss
        reads as ``completion_mask * tool_mask`` (TRL's ``_compute_loss`` and ``_sequence_inputs``);
        ``completion_mask`` is also the attention mask and stays whole, so each pass sees the same
        context as the training step.
        """
        module = self.accelerator.unwrap_model(model)
        params = [p for p in module.parameters() if p.requires_grad]
        token_adv = inputs["token_advantages"]
        snapshot = {k: len(v) for k, v in self._metrics["train"].items()}
        for sign, selected in (("pos", token_adv > 0), ("neg", token_adv < 0)):
            keep = selected.to(inputs["completion_mask"].dtype)
            masked = {**inputs, "tool_mask": inputs["tool_mask"] * keep if "tool_mask" in inputs else keep}
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
        if self._anchor is not None:  # every process: a ZeRO-3 anchor is gathered for the save
            step_folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            self._anchor.save(os.path.join(self._get_output_dir(trial=trial), step_folder), self.args.should_save)

    def _save(self, output_dir=None, state_dict=None):
        super()._save(output_dir, state_dict)
        if self._spec.needs_values and self.args.should_save:
            save_value_head(
                self._value_head(), output_dir if output_dir is not None else self.args.output_dir
            )

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if self._spec.needs_values:
            load_value_head(self._value_head(), resume_from_checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if self._anchor is not None and checkpoint is not None:
            self._anchor.load(checkpoint)
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
            return chunked_token_stats(h, w, b, tokens, self._chunk_for_hidden(h), self.temperature)[0]

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
        if self._advantage.rows == "dpo":
            (w_d, b_d), (w_r, b_r) = inputs["dpo_head"][0], inputs["ref_head"][0]
            return dpo_advantage_chunks(
                dpo_hidden=_flat(inputs["dpo_hidden"]),
                dpo_weight=w_d,
                dpo_bias=b_d,
                ref_hidden=_flat(inputs["ref_hidden"]),
                ref_weight=w_r,
                ref_bias=b_r,
            )
        return logprob_advantage_chunks(_flat(inputs["dpo_hidden"]), *inputs["dpo_head"][0])

    def _lco_sources(self, inputs) -> dict:
        """The fused-loss arguments for one micro-batch: the advantage source, z_old and the actions.

        z_old is ``None`` on-policy (the current logits, detached: no extra pass); on reused rollouts
        or with an anchor snapshot it is the old policy's (the snapshot's) saved hidden states times
        its head, both carried in the batch; divided by T when ``lco_temperature_consistent``.
        """
        actions = inputs["completion_ids"].reshape(-1)
        if self._advantage.dense:
            advantages = self._dense_advantage_rows(inputs)
        else:
            advantages = SparseAdvantages(inputs["token_advantages"].reshape(-1), actions)
        old_logits = None
        if "old_hidden" in inputs:
            old_logits = head_logit_chunks(inputs["old_hidden"], *inputs["old_head"][0])
            if self.args.lco_temperature_consistent:
                old_rows, T = old_logits, self.temperature

                def old_logits(start, end):
                    return old_rows(start, end) / T

        return {"advantages": advantages, "old_logits": old_logits, "actions": actions}

    def _lco_options(self) -> dict:
        """The stability options of LCOConfig as fused_lco_loss arguments (docs/trainer.md)."""
        args = self.args
        support = {"full": None, "top_k": args.lco_support_k, "sampled": "sampled"}[args.lco_support]
        # The logged entropy is H(softmax(z/T)) for every method (TRL logs z/T); with the
        # temperature-consistent loss the fused loss already sees z/T.
        stats_temperature = 1.0 if args.lco_temperature_consistent else self.temperature
        return {
            "beta_negative": args.lco_beta_negative,
            "support": support,
            "stats_temperature": stats_temperature,
        }

    def _lco_loss(self, model, inputs):
        args = self.args
        ids, am, k, mask = self._sequence_inputs(inputs)
        sources = self._lco_sources(inputs)
        options = self._lco_options()
        T = self.temperature if args.lco_temperature_consistent else 1.0

        def head_fn(h, w, b):
            if T != 1.0:
                # z/T = (h/T)·Wᵀ + b/T: the fused kernel sees z/T, autograd carries the 1/T back to h and b.
                h, b = h / T, (None if b is None else b / T)
            return fused_lco_loss(
                _flat(h),
                w,
                bias=b,
                loss=args.objective,
                beta=args.lco_beta,
                normalization=args.advantage_normalization,
                mask=mask.reshape(-1).bool(),
                chunk_size=self._chunk_for_hidden(h),
                return_stats=True,
                **sources,
                **options,
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
        # KL(π_θ ‖ π_anchor): the anchor is the snapshot (lco_anchor_update_steps != 1), else the
        # generating policy (0 on-policy); the same number as lco/kl_old, named for what it measures.
        metrics["lco/kl_anchor"].append(mean_over(stats["kl_old"], m))
        for sign, selected in (("pos", m * (token_adv > 0)), ("neg", m * (token_adv < 0))):
            for name in ("logit_grad_sampled", "logit_grad_nonsampled"):
                if name in stats:
                    metrics[f"lco/{name}_{sign}"].append(mean_over(stats[name], selected))

    def _token_logps(self, model, inputs):
        """log π_θ of the completion tokens (with grad), the critic's values (PPO) and the token mask;
        logs the entropy and the sampled token's probability."""
        ids, am, k, mask = self._sequence_inputs(inputs)
        tokens = inputs["completion_ids"]
        with_values = self._spec.needs_values

        def head_fn(h, w, b):
            logps, entropy = chunked_token_stats(h, w, b, tokens, self._chunk_for_hidden(h), self.temperature)
            values = self._value_head()(h.float()).squeeze(-1) if with_values else None
            return logps, entropy, values

        logps, entropy, values = head_outputs(model, ids, am, k, head_fn)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["entropy"].append(float(masked_mean(entropy, mask)))
        self._metrics[mode]["lco/sampled_prob"].append(float(masked_mean(logps.detach().exp(), mask)))
        return logps, values, mask

    def _ppo_loss(self, model, inputs):
        args = self.args
        logps, values, mask = self._token_logps(model, inputs)
        adv, old_logps = inputs["token_advantages"], inputs["ppo_old_logps"]
        pg = ppo_clip_loss(logps, old_logps, adv, self.epsilon_low, self.epsilon_high, mask)
        vf = value_loss(values, inputs["old_values"], inputs["returns"], args.ppo_cliprange_value, mask)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["lco/value_loss"].append(float(vf.detach()))
        return pg + args.ppo_vf_coef * vf

    def _reinforce_loss(self, model, inputs):
        logps, _, mask = self._token_logps(model, inputs)
        return reinforce_loss(logps, inputs["token_advantages"], mask)

    def _sft_loss(self, model, inputs):
        # imitate the completions that beat their baseline (rejection-sampling fine-tuning)
        logps, _, mask = self._token_logps(model, inputs)
        keep = mask * (inputs["advantages"] > 0).unsqueeze(-1)
        return masked_mean(-logps, keep)

    def _distillation_loss(self, model, inputs):
        ids, am, k, mask = self._sequence_inputs(inputs)
        teacher_logits = head_logit_chunks(inputs["teacher_hidden"], *inputs["teacher_head"][0])
        per_token = self._spec.distill_per_token(self.args)

        def head_fn(h, w, b):
            return chunked_distribution_loss(
                h, w, b, teacher_logits, per_token, mask, self._chunk_for_hidden(h), temperature=self.temperature
            )

        total = head_outputs(model, ids, am, k, head_fn)
        return total / mask.sum().clamp(min=1.0)


def no_reward_function(completions, **kwargs) -> list[float]:
    """Reward 0 for every completion: TRL requires a reward source, a dense advantage (eqs. 12, 13) uses none."""
    return [0.0] * len(completions)


def _flat(hidden: torch.Tensor) -> torch.Tensor:
    return hidden.reshape(-1, hidden.shape[-1])


def auxiliary_model_paths(args: LCOConfig) -> dict[str, str]:
    """Which frozen models the objective × advantage needs, by role (read from their specs)."""
    role_paths = {"dpo": args.reward_model_path, "ref": args.reference_reward_model_path}
    paths = {role: role_paths[role] for role in ADVANTAGE_SPECS[args.advantage].reward_models}
    if OBJECTIVE_SPECS[args.objective].needs_teacher:
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
