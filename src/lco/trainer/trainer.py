"""``LCOTrainer``: TRL's ``GRPOTrainer`` with LCO and the paper's baselines as one config switch.

The trainer only wires. Generation, reward functions, vLLM, accelerate/DeepSpeed and logging are
TRL's. What an objective × advantage needs, and the functions that compute it, are its rows of
:mod:`lco.objectives.registry`; the trainer reads the rows and never branches on a name.

At generation time (:meth:`LCOTrainer._generate_and_score_completions`) it runs the frozen models
the rows ask for and puts one typed :class:`~lco.objectives.rollout.Rollout` per completion into
the batch (under :data:`~lco.objectives.rollout.ROLLOUT_KEY`): z_old from the old policy or the
anchor when rollouts are reused or an anchor is kept (its final hidden states and a copy of its
head, never its ``[B, T, V]`` logits), the reward models' or teacher's hidden states and heads, the
critic's values and PPO's old/reference log-probs, and the token advantages of the row's builder
(:mod:`lco.objectives.token_advantages`). With ``lco_anchor_update_steps`` ≠ 1 the "old policy" is
the frozen snapshot of :mod:`lco.trainer.anchor`, on every batch. At loss time
(:meth:`LCOTrainer._objective_loss`) it calls the row's loss (:mod:`lco.objectives.losses`) with
the batch and a :class:`~lco.objectives.losses.LossContext` — the policy's forward, TRL's own loss,
the critic, the config — and logs the metrics it returns:

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
import os
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from accelerate.utils import is_peft_model
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer

from ..objectives.chunked import default_chunk_size
from ..objectives.heads import chunked_token_stats
from ..objectives.losses import LossBatch, LossContext, Metrics, TokenMean
from ..objectives.registry import ADVANTAGE_SPECS, OBJECTIVE_SPECS
from ..objectives.rollout import ROLLOUT_KEY, Head, HiddenStates, OldLogits, Rollout
from ..objectives.token_advantages import AdvantageInputs
from .anchor import Anchor, build_anchor, output_vocab_size, place_frozen
from .auxiliary_models import TEACHER, auxiliary_model_paths, check_vocabularies
from .checkpoints import resolve_resume_checkpoint, staged_save
from .config import LCOConfig
from .data import check_train_dataset
from .dynamics import gradient_norms_by_sign
from .gap_monitor import GapMonitor, build_gap_monitor, load_gap_state, save_gap_state
from .guard import NonFiniteGuard, checked_reward_funcs
from .hidden_state_forward import add_hidden_state_head, head_outputs
from .preflight import check_before_loading
from .trl_options import check_trl_loss_options, token_corrections
from .value_head import attach_value_head, load_value_head, save_value_head

__all__ = ["LCOTrainer", "auxiliary_model_paths", "check_vocabularies"]

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
        check_before_loading(
            args, model, auxiliary_model_paths(args), tokenizer_from_model=processing_class is None
        )
        check_trl_loss_options(args)  # TRL loss options the objective would otherwise ignore: refused
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

        teach = self._spec.uses_advantage and self._advantage.uses_outcome_reward  # else rewards are only logged
        self._guard = NonFiniteGuard(args.max_nonfinite_steps, rewards_teach=teach)
        callbacks = [*(callbacks or []), self._guard]
        super().__init__(
            model=model,
            reward_funcs=checked_reward_funcs(reward_funcs),  # a raise, None or wrong type: one line
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
        self._anchor: Anchor | None = build_anchor(self, peft_config is not None, self._place_frozen)
        if self._anchor is not None:
            self.add_callback(self._anchor)
        add_hidden_state_head(policy)
        # read from the full shape: under ZeRO-3 the head's local weight is an empty partition
        self._policy_vocab = output_vocab_size(policy)
        self._guard.vocab_size = self._policy_vocab  # for the uniform-collapse check
        frozen = {role: self._load_frozen(path) for role, path in self._auxiliary_paths.items()}
        self._reward_models = tuple(frozen[role] for role in self._advantage.reward_models)
        self._teacher = frozen.get(TEACHER)
        if self._spec.needs_values:
            hidden = policy.config.get_text_config().hidden_size
            # The critic: a value head on the policy's final hidden states, saved apart (value_head.py)
            attach_value_head(policy, hidden)
        self._reference = None  # the frozen initial policy of PPO's per-token KL penalty
        if self._spec.needs_reference and args.ppo_kl_coef > 0:
            self._reference = self._load_frozen(policy.config._name_or_path)
        self._divergence = self._spec.distill_per_token(args) if self._spec.distill_per_token else None
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
        """TRL's batch plus the row's :class:`Rollout`, one record per completion under ``ROLLOUT_KEY``.

        One record per completion, because TRL shuffles and splits every batch value along its first
        axis (:meth:`Rollout.split`: row views, the heads shared); the loss collates its micro-batch's.
        """
        try:
            output = super()._generate_and_score_completions(inputs)
        except RuntimeError as err:  # sampling from NaN/inf probabilities is a divergence, said so
            self._guard.check_sampling_error(err, self.state.global_step, self.args.output_dir)
            raise
        output[ROLLOUT_KEY] = self._rollout(output).split()
        return output

    def _rollout(self, output: dict) -> Rollout:
        """What the objective × advantage rows ask to keep from generation time (module docstring)."""
        tokens = output["completion_ids"]

        def token_logps(h, w, b, rows):
            return chunked_token_stats(h, w, b, tokens[rows], self._chunk_for_hidden(h), self.temperature)[0]

        old_values = old_logps = ref_logps = None
        if self._spec.needs_values:
            value_head = self._value_head()
            old_values, old_logps = self._no_grad_pass(
                output,
                self.model,
                lambda h, w, b, rows: (value_head(h.float()).squeeze(-1), token_logps(h, w, b, rows)),
            )
        if self._reference is not None:
            (ref_logps,) = self._no_grad_pass(output, self._reference, lambda *a: (token_logps(*a),))
        reward_models = tuple(self._hidden_states(output, model) for model in self._reward_models)
        n_local = output["advantages"].numel()
        all_rewards, _ = self._sequence_rewards(n_local)
        built = self._spec.token_advantages(
            AdvantageInputs(
                advantages=output["advantages"],
                completion_ids=tokens,
                completion_mask=output["completion_mask"],
                rewards=all_rewards,
                start=self.accelerator.process_index * n_local,
                group=self.num_generations if self.model.training else self.num_generations_eval,
                config=self.args,
                chunk_size=self._chunk_for,
                advantage_rows=self._advantage.rows,
                dense_advantage=self._advantage.dense,
                reward_models=reward_models,
                old_logps=old_logps,
                ref_logps=ref_logps,
                old_values=old_values,
            )
        )
        if built.advantages is not None:  # REINFORCE's baseline replaces TRL's sequence advantage
            output["advantages"] = built.advantages
        return Rollout(
            token_advantages=built.token_advantages,
            z_old=self._z_old(output),
            reward_models=reward_models,
            teacher=None if self._teacher is None else self._hidden_states(output, self._teacher),
            old_logps=old_logps,
            ref_logps=ref_logps,
            old_values=old_values,
            returns=built.returns,
            sequence_rewards=None if self._gap_monitor is None else self._gap_sequence_rewards(n_local),
        )

    def _z_old_source(self) -> tuple[str, Callable[[], AbstractContextManager[nn.Module]]] | None:
        """Which model's logits are z_old for this generation batch: ``(label, context yielding the module)``,
        or ``None`` when the loss's current logits, detached, serve (on-policy). Evaluation batches are scored
        once, by the current policy: there is no old policy to keep. With an anchor, z_old is always the
        anchor's (a context: e.g. the policy with its adapters disabled, inside it only)."""
        if not (self._spec.needs_old_hidden and self.model.training):
            return None
        if self._anchor is not None:
            return "anchor", self._anchor.model
        return ("policy", lambda: contextlib.nullcontext(self.model)) if self._reuses_rollouts() else None

    def _z_old(self, output: dict) -> OldLogits | None:
        """z_old (eq. 7) as the loss will read it, from :meth:`_z_old_source`'s final hidden states and head."""
        source = self._z_old_source()
        if source is None:
            return None
        label, old_model = source
        with old_model() as model:
            # a copy of the head: the optimizer (or the anchor's refresh) updates it in place
            states = self._hidden_states(output, model, copy_head=True)
        T = self.temperature if self.args.lco_temperature_consistent else 1.0
        return OldLogits(states.hidden, states.head, source=label, temperature=T)

    def _hidden_states(self, output: dict, model: nn.Module, copy_head: bool = False) -> HiddenStates:
        """``model``'s final hidden states at the completion positions and its head (the policy's V rows)."""
        heads = []

        def keep(h, w, b, rows):
            heads.append((w, b))
            return (h,)

        (hidden,) = self._no_grad_pass(output, model, keep)
        w, b = heads[0]
        if copy_head:
            w, b = w.clone(), None if b is None else b.clone()
        return HiddenStates(hidden, Head(w, b))

    def _no_grad_pass(self, output: dict, model: nn.Module, fn: Callable) -> tuple[torch.Tensor, ...]:
        """``fn(h, W, b, rows)`` on ``model``'s detached final hidden states and head, without grad,
        ``per_device_train_batch_size`` completions at a time; each returned tensor concatenated over rows."""
        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        am = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        k, batch, pieces = output["completion_ids"].size(1), self.args.per_device_train_batch_size, []
        with torch.no_grad():
            for s in range(0, ids.size(0), batch):
                rows = slice(s, s + batch)
                pieces.append(fn(*self._hidden_and_head(model, ids[rows], am[rows], k), rows))
        return tuple(torch.cat(parts) for parts in zip(*pieces, strict=True))

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

    def _sequence_rewards(self, n_local: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted sequence rewards of the last generation batch: every process's ``[N]``, and this
        process's slice ``[n_local]`` (NaN, where no reward function scored, counts as 0)."""
        weights = self.reward_weights.to(self._last_rewards.device)
        rewards = torch.nan_to_num((self._last_rewards * weights.unsqueeze(0)).nansum(dim=1))
        start = self.accelerator.process_index * n_local
        return rewards, rewards[start : start + n_local]

    def _gap_sequence_rewards(self, n_local: int) -> torch.Tensor:
        """This process's weighted sequence rewards, NaN where every reward function declined to score."""
        _, rewards = self._sequence_rewards(n_local)
        start = self.accelerator.process_index * n_local
        unscored = torch.isnan(self._last_rewards[start : start + n_local]).all(dim=1)
        return rewards.masked_fill(unscored.to(rewards.device), float("nan"))

    # ------------------------------------------------------------------ loss time

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("LCOTrainer does not support returning outputs")
        if self._dynamics_due():
            self._log_gradient_norms_by_sign(model, inputs)
        if self._gap_monitor is not None and self._gap_monitor.due(
            self.state.global_step, self.model.training
        ):
            rewards = Rollout.collate(inputs[ROLLOUT_KEY]).sequence_rewards
            self._gap_monitor.accumulate(self.accelerator.unwrap_model(model), inputs, rewards)
        return self._objective_loss(model, inputs)

    def _objective_loss(self, model, inputs):
        """The row's loss on one micro-batch (scaled for gradient accumulation); logs its metrics."""
        ids, am, k, mask = self._sequence_inputs(inputs)
        batch = LossBatch(
            completion_ids=inputs["completion_ids"],
            mask=mask,
            advantages=inputs["advantages"],
            rollout=Rollout.collate(inputs[ROLLOUT_KEY]),
            inputs=inputs,
        )
        training = self.model.training
        ctx = LossContext(
            forward=lambda head_fn: head_outputs(model, ids, am, k, head_fn),
            base_loss=lambda batch_inputs: self._compute_loss(model, batch_inputs),
            config=self.args,
            temperature=self.temperature,
            chunk_size=self._chunk_for_hidden,
            accumulation_steps=self._accumulation_steps() if training else 1.0,
            advantage_rows=self._advantage.rows,
            dense_advantage=self._advantage.dense,
            clip=(self.epsilon_low, self.epsilon_high),
            value_head=self._value_head() if self._spec.needs_values else None,
            divergence=self._divergence,
            corrections=token_corrections(self, inputs),  # TRL's vLLM ratio / off-policy / entropy masks
        )
        loss, metrics = self._spec.loss(batch, ctx)
        self._log_metrics(metrics)
        return loss

    def _log_metrics(self, metrics: Metrics) -> None:
        """Append a loss's metrics; a :class:`TokenMean` is reduced over every process's tokens."""
        logged = self._metrics["train" if self.model.training else "eval"]
        for name, value in metrics.items():
            if isinstance(value, TokenMean):
                pair = torch.stack([(value.values * value.weights).sum(), value.weights.sum()])
                totals = self.accelerator.gather(pair.reshape(1, 2)).sum(0)
                value = float(totals[0] / totals[1].clamp(min=1.0))
            logged[name].append(value)

    def _completion_token_logps(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """log π_θ(o_t | q, o_<t) of the completion tokens ``[B, T]`` (with grad, sampling temperature), and
        the mask of the tokens the policy generated (tool outputs excluded)."""
        ids, am, k, mask = self._sequence_inputs(inputs)
        tokens = inputs["completion_ids"]

        def head_fn(h, w, b):
            return chunked_token_stats(h, w, b, tokens, self._chunk_for_hidden(h), self.temperature)[0]

        return head_outputs(model, ids, am, k, head_fn), mask.float()

    def _sequence_inputs(self, inputs):
        """Prompt + completion ids and attention mask, the completion length, and the loss mask."""
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        am = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        tool_mask = inputs.get("tool_mask")  # TRL's: 0 on tool outputs
        mask = inputs["completion_mask"] if tool_mask is None else inputs["completion_mask"] * tool_mask
        return ids, am, inputs["completion_ids"].size(1), mask

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
        """``lco/grad_norm_pos`` / ``_neg`` (:func:`lco.trainer.dynamics.gradient_norms_by_sign`); the
        metrics the two extra loss passes would log are discarded."""
        metrics = self._metrics["train"]
        snapshot = {k: len(v) for k, v in metrics.items()}
        self._dynamics_norms = gradient_norms_by_sign(
            self._objective_loss,
            self.accelerator.unwrap_model(model),
            inputs,
            Rollout.collate(inputs[ROLLOUT_KEY]).token_advantages,
            self._accumulation_steps(),
            self.accelerator.gather,
        )
        for key in list(metrics):
            del metrics[key][snapshot.get(key, 0) :]
        for sign, value in self._dynamics_norms.items():
            metrics[f"lco/grad_norm_{sign}"].append(value)

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
        monitor, self._step_guard = build_gap_monitor(
            args, self._completion_token_logps, self.accelerator, self._metrics["train"]
        )
        for callback in (monitor, self._step_guard):
            if callback is not None:
                self.add_callback(callback)
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
        folder = os.path.join(
            self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        )
        if self._gap_monitor is not None and self.args.should_save:
            save_gap_state(folder, self._gap_monitor, self._step_guard)
        if self._anchor is not None:  # every process: a ZeRO-3 anchor is gathered for the save
            self._anchor.save(folder, self.args.should_save)

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
        if self._gap_monitor is not None and checkpoint is not None:
            load_gap_state(checkpoint, self._gap_monitor, self._step_guard)


def no_reward_function(completions, **kwargs) -> list[float]:
    """Reward 0 for every completion: TRL requires a reward source, a dense advantage (eqs. 12, 13) uses none."""
    return [0.0] * len(completions)
