"""The LCO anchor z_old, built on TRL's reference-model machinery.

LCO's target z* = z_old + A/β (eq. 7 of "Stabilizing Policy Optimization via Logits Convexity",
arXiv:2603.00963) is anchored at π_old. With ``LCOConfig.lco_anchor_update_steps = m``:

- m = 1 is the paper: z_old is the policy that generated the batch; no anchor object exists.
- m = 0: z_old is the initial policy, never refreshed (the authors' code; LCOConfig's default for a reward model's advantage).
- m ≥ 2: z_old is the policy at the beginning of steps 0, m, 2m, … (``on_step_begin``, which the
  Trainer calls before the step's first micro-batch, and so before TRL generates its rollouts).

Where the anchor lives follows what ``trl.GRPOTrainer`` does for its reference model
(``trl/trainer/grpo_trainer.py``, "Reference model", and ``trl.trainer.callbacks.SyncRefModelCallback``):

==============================  =========================================================================
setting                         the anchor (:func:`build_anchor`)
==============================  =========================================================================
PEFT, m = 0                     the same model with its adapters disabled — TRL's ``use_adapter(model,
                                None)``. No copy: :class:`AdapterAnchor`.
PEFT, m ≥ 2 (or m = 0 with a    a second adapter, :data:`ANCHOR_ADAPTER`, on the same base (as TRL's
pre-trained adapter)            ``"ref"`` adapter): only the adapter weights are snapshotted and refreshed,
                                never the base. :class:`AdapterSnapshotAnchor`.
full weights                    a frozen copy placed as TRL places its reference model
                                (``prepare_deepspeed`` — sharded under ZeRO-3 —, ``prepare_fsdp``, or
                                ``accelerator.prepare_model(evaluation_mode=True)``) and refreshed with
                                TRL's ``SyncRefModelCallback.sync_target_model`` at α = 1 (ZeRO-3
                                gathering included). :class:`FrozenModelAnchor`.
==============================  =========================================================================

TRL's own ``ref_model`` (or its ``"ref"`` adapter) is never a second copy beside it: TRL builds one
only for ``beta > 0``, and the LCO objectives refuse ``beta`` (:func:`lco.trainer.preflight.check_trl_beta`;
LCO's β is ``lco_beta``), so under LCO the anchor is the only reference model.

Under ZeRO-3 the policy's weights are partitioned when the trainer is built, so the copy is built
from the policy's config inside ``deepspeed.zero.Init`` (transformers does that when ZeRO-3 is
configured) and filled from the policy by the same gathered sync; elsewhere it is a ``deepcopy``
taken before the policy is wrapped.

The trainer computes z_old from the anchor at generation time, chunk by chunk (its final hidden
states and head travel in the batch as ``old_hidden`` / ``old_head``). Cost: one forward pass per
generation batch; memory: nothing (adapters disabled, shared reference), one adapter (PEFT snapshot),
or one frozen copy of the weights in their dtype, sharded like the policy under ZeRO-3 / FSDP.

Checkpoints hold the anchor's state when it is not the base model or TRL's reference
(:data:`ANCHOR_FILE`: the snapshot adapter's tensors, or the frozen copy's full state dict, and the
refresh steps), so a resumed run continues with the anchor it had. Under PEFT the snapshot adapter is
also written by PEFT's ``save_pretrained`` into ``<checkpoint>/lco_anchor/`` (PEFT saves every adapter);
``PeftModel.from_pretrained(base, folder)`` loads the trained adapter, at the top of the folder.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import os
from collections.abc import Callable, Iterator

import torch
from torch import nn
from transformers import TrainerCallback

ANCHOR_FILE = "lco_anchor.pt"
"""The anchor's state (adapter tensors or full state dict) and refresh steps, in each checkpoint folder."""

ANCHOR_ADAPTER = "lco_anchor"
"""The name of the snapshot adapter under PEFT (next to the trained one, like TRL's ``"ref"``)."""


def sharding(accelerator) -> str | None:
    """``"zero3"``, ``"fsdp"`` or ``None``: whether (and how) each process holds only a shard of the weights."""
    state = accelerator.state
    plugin = getattr(state, "deepspeed_plugin", None)
    if plugin is not None and plugin.zero_stage == 3:
        return "zero3"
    if getattr(state, "fsdp_plugin", None) is not None and str(state.distributed_type).endswith("FSDP"):
        return "fsdp"
    return None


def output_vocab_size(model: nn.Module) -> int:
    """Rows of the model's LM head, also when ZeRO-3 has partitioned it.

    Under ZeRO-3 ``weight.shape`` is the local partition (``torch.Size([0])``); DeepSpeed keeps the
    full shape in ``ds_shape``. A DTensor (FSDP2) reports its global shape.
    """
    weight = model.get_output_embeddings().weight
    shape = getattr(weight, "ds_shape", None) or weight.shape
    if len(shape) == 2 and shape[0] > 0:
        return int(shape[0])
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(config.vocab_size)


@contextlib.contextmanager
def _gathered(params: list[nn.Parameter], modify: bool):
    """Full tensors of ZeRO-3-partitioned parameters inside the block (a no-op for others).

    Yields whether this process should write: with ``modify`` only rank 0 writes and DeepSpeed
    broadcasts on exit (``GatheredParameters(modifier_rank=0)``, as TRL's sync callback does).
    """
    if not any(hasattr(p, "ds_id") for p in params):
        yield True
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=0 if modify else None):
        yield (not modify) or deepspeed.comm.get_rank() == 0


class Anchor(TrainerCallback, abc.ABC):
    """Base of the anchors: refresh schedule, resume, and the module z_old is computed with.

    Subclasses implement :meth:`model` (a context manager yielding the module to run, possibly
    wrapped), :meth:`_copy_from_policy`, :meth:`_state` and :meth:`_load_state`.
    ``refresh_steps`` lists the global steps at which the anchor was set from the policy (0 for
    the anchor of construction).
    """

    kind = "anchor"
    saves_state = True  # False when the anchor is the base model: nothing to save

    def __init__(self, every: int):
        if every == 1:
            raise ValueError("lco_anchor_update_steps=1 anchors at the generating policy itself; no anchor")
        if every < 0:
            raise ValueError(f"lco_anchor_update_steps must be >= 0, got {every}")
        self.every = every
        self.refresh_steps = [0]
        self._restored = False

    @abc.abstractmethod
    def model(self) -> contextlib.AbstractContextManager[nn.Module]:
        """A context manager yielding the module z_old is computed with."""

    @abc.abstractmethod
    def _copy_from_policy(self) -> None:
        """Set the anchor from the policy's current weights."""

    @abc.abstractmethod
    def _state(self) -> dict | None:
        """The tensors to checkpoint (``None`` on processes that do not write)."""

    @abc.abstractmethod
    def _load_state(self, tensors: dict) -> None:
        """Restore the tensors :meth:`_state` returned."""

    # -- schedule
    def on_train_begin(self, args, state, control, **kwargs):
        # Resuming from a checkpoint without ANCHOR_FILE (saved before the anchor existed): the
        # policy of step ⌊s/m⌋·m is gone, so with m ≥ 2 the anchor restarts from the resumed policy;
        # with m = 0 it stays the policy the trainer was built from.
        if not self._restored and self.every > 0 and state.global_step > 0:
            self.refresh(state.global_step)

    def on_step_begin(self, args, state, control, **kwargs):
        step = state.global_step
        if self.every > 0 and step % self.every == 0 and step != self.refresh_steps[-1]:
            self.refresh(step)

    @torch.no_grad()
    def refresh(self, step: int) -> None:
        """Set the anchor to the policy's current weights (every process calls this)."""
        self._copy_from_policy()
        self.refresh_steps.append(step)

    # -- checkpoints
    def save(self, folder: str, write: bool) -> None:
        """Write :data:`ANCHOR_FILE` into ``folder``; every process calls this (ZeRO-3 gathers), ``write``
        says whether this one writes."""
        if not self.saves_state:
            return
        tensors = self._state()
        if write and tensors is not None:
            torch.save(
                {"tensors": tensors, "refresh_steps": self.refresh_steps}, os.path.join(folder, ANCHOR_FILE)
            )

    @torch.no_grad()
    def load(self, folder: str) -> None:
        """Restore the anchor saved in a checkpoint folder (called before ``on_train_begin``)."""
        path = os.path.join(folder, ANCHOR_FILE)
        if not self.saves_state or not os.path.exists(path):
            return
        state = torch.load(path, map_location="cpu", weights_only=True)
        self._load_state(state["tensors"])
        self.refresh_steps = list(state["refresh_steps"])
        self._restored = True


class AdapterAnchor(Anchor):
    """PEFT, m = 0: the policy's own model with its adapters disabled, the base (TRL's reference under PEFT).

    No copy and nothing to save: the base weights are frozen under PEFT.
    """

    saves_state = False
    kind = "adapters_disabled"

    def __init__(self, peft_model: Callable[[], nn.Module]):
        super().__init__(0)
        self._peft_model = peft_model

    @contextlib.contextmanager
    def model(self) -> Iterator[nn.Module]:
        from trl.trainer.utils import use_adapter

        peft_model = self._peft_model()
        with use_adapter(peft_model, None):
            yield peft_model

    def _copy_from_policy(self) -> None:
        raise ValueError("the base model (adapters disabled) is never refreshed")

    def _state(self) -> None:
        return None  # the frozen base weights are the model's own; save() skips this anchor (saves_state)

    def _load_state(self, tensors: dict) -> None:
        raise ValueError("the base model (adapters disabled) has no anchor state to load")


class AdapterSnapshotAnchor(Anchor):
    """PEFT, m ≥ 2: a snapshot of the trained adapter's weights in a second adapter, :data:`ANCHOR_ADAPTER`.

    Added with the trained adapter's config, frozen, and copied from it at construction and at
    every refresh (ZeRO-3: gathered on rank 0 and broadcast, as TRL's sync callback does). The
    base weights are shared: memory is one adapter. The z_old forward activates the snapshot
    adapter (TRL's ``use_adapter``) and switches back.
    """

    kind = "adapter_snapshot"

    def __init__(self, peft_model: Callable[[], nn.Module], every: int):
        super().__init__(every)
        self._peft_model = peft_model
        model = peft_model()
        self.source = model.active_adapter
        if ANCHOR_ADAPTER in model.peft_config:
            raise ValueError(f"the PEFT model already has an adapter named {ANCHOR_ADAPTER!r}")
        model.add_adapter(ANCHOR_ADAPTER, copy.deepcopy(model.peft_config[self.source]))
        model.set_adapter(self.source)  # the trained adapter stays the active, trainable one
        for _, anchor_param in self._pairs():
            anchor_param.requires_grad_(False)
        self._copy_from_policy()

    def _pairs(self) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """(trained adapter parameter, its snapshot) by name, as TRL pairs ``default`` and ``ref``."""
        model = self._peft_model()
        params = dict(model.named_parameters())
        src, dst = f".{self.source}.", f".{ANCHOR_ADAPTER}."
        pairs = [(p, params[name.replace(src, dst)]) for name, p in params.items() if src in name]
        if not pairs:
            raise ValueError(f"found no parameters of the adapter {self.source!r} to snapshot")
        return pairs

    def _anchor_named(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self._peft_model().named_parameters() if f".{ANCHOR_ADAPTER}." in n]

    @contextlib.contextmanager
    def model(self) -> Iterator[nn.Module]:
        from trl.trainer.utils import use_adapter

        peft_model = self._peft_model()
        trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
        try:
            with use_adapter(peft_model, ANCHOR_ADAPTER):
                yield peft_model
        finally:
            # PEFT's set_adapter moves requires_grad to the active adapter; restore it exactly
            for name, param in peft_model.named_parameters():
                param.requires_grad_(name in trainable)

    @torch.no_grad()
    def _copy_from_policy(self) -> None:
        pairs = self._pairs()
        with _gathered([p for pair in pairs for p in pair], modify=True) as write:
            if write:
                for src, dst in pairs:
                    dst.data.copy_(src.data)

    def _state(self) -> dict | None:
        named = self._anchor_named()
        with _gathered([p for _, p in named], modify=False):
            return {n: p.detach().cpu().clone() for n, p in named}

    def _load_state(self, tensors: dict) -> None:
        named = self._anchor_named()
        missing = sorted(set(n for n, _ in named) - set(tensors))
        if missing:
            raise ValueError(
                f"{ANCHOR_FILE} lacks the anchor adapter's {missing[0]} (saved by another setting?)"
            )
        with _gathered([p for _, p in named], modify=True) as write:
            if write:
                for name, param in named:
                    param.data.copy_(tensors[name])


class FrozenModelAnchor(Anchor):
    """A frozen model, placed as TRL places its reference model, refreshed with TRL's sync at α = 1.

    Args:
        model: the placed module (possibly a DeepSpeed engine or FSDP module); ``unwrap`` gives the
            ``PreTrainedModel``.
        policy: ``() -> nn.Module``, the current policy (possibly wrapped).
        unwrap: the accelerator's ``unwrap_model``.
        every: m.
        shard: :func:`sharding` of the run.
    """

    def __init__(self, model: nn.Module, policy, unwrap, every: int, shard: str | None):
        super().__init__(every)
        self.snapshot = model
        self._policy = policy
        self._unwrap = unwrap
        self.shard = shard
        self.kind = f"frozen_copy{'' if shard is None else ':' + shard}"

    @contextlib.contextmanager
    def model(self) -> Iterator[nn.Module]:
        yield self.snapshot

    @torch.no_grad()
    def _copy_from_policy(self) -> None:
        from trl.trainer.callbacks import SyncRefModelCallback

        SyncRefModelCallback.sync_target_model(self._unwrap(self._policy()), self._unwrap(self.snapshot), 1.0)

    def _state(self) -> dict | None:
        module = self._unwrap(self.snapshot)
        if self.shard == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return get_model_state_dict(module, options=options)
        state = {}
        for name, param in module.named_parameters():
            with _gathered([param], modify=False):
                state[name] = param.detach().cpu().clone()
        for name, buffer in module.named_buffers():
            state[name] = buffer.detach().cpu().clone()
        return state

    def _load_state(self, tensors: dict) -> None:
        module = self._unwrap(self.snapshot)
        if self.shard == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(module, tensors, options=StateDictOptions(full_state_dict=True))
            return
        named = dict(module.named_parameters())
        missing = sorted(set(named) - set(tensors))
        if missing:
            raise ValueError(f"{ANCHOR_FILE} lacks the anchor's {missing[0]} (saved by another setting?)")
        for name, param in named.items():
            with _gathered([param], modify=True) as write:
                if write:
                    param.data.copy_(tensors[name])
        for name, buffer in module.named_buffers():
            if name in tensors:
                buffer.copy_(tensors[name])


def place_frozen(model: nn.Module, accelerator, deepspeed: bool, fsdp: bool) -> nn.Module:
    """Eval mode, no gradient, the hidden-state head, and the placement ``GRPOTrainer`` gives its ``ref_model``:
    ``prepare_deepspeed`` (partitioned under ZeRO-3, stage 0 otherwise), ``prepare_fsdp``, or
    ``accelerator.prepare_model(evaluation_mode=True)``."""
    from trl.models import prepare_deepspeed, prepare_fsdp

    from .hidden_state_forward import add_hidden_state_head

    model.eval().requires_grad_(False)
    add_hidden_state_head(model)
    if deepspeed:
        return prepare_deepspeed(model, accelerator)
    if fsdp:
        return prepare_fsdp(model, accelerator)
    return accelerator.prepare_model(model, evaluation_mode=True)


def adapters_are_identity(peft_model: nn.Module) -> bool:
    """True when the trained adapter starts as the identity, so that disabling it gives the initial policy.

    LoRA with ``init_lora_weights`` True or ``"gaussian"`` (B = 0, PEFT's default) is; PiSSA, OLoRA,
    LoftQ, EVA, CorDA and ``False`` change the product or the base, and other PEFT methods are not assumed to be.
    """
    config = peft_model.peft_config[peft_model.active_adapter]
    return type(config).__name__ == "LoraConfig" and config.init_lora_weights in (True, "gaussian")


def build_anchor(trainer, adapters_from_trainer: bool, place_frozen) -> Anchor | None:
    """The anchor for ``trainer.args.lco_anchor_update_steps`` (see the module docstring), or ``None`` for m = 1.

    Call after ``GRPOTrainer.__init__`` (TRL has wrapped the policy in its adapters) and before the trainer patches the policy's forward.

    Args:
        trainer: the ``LCOTrainer``.
        adapters_from_trainer: the adapters were created by TRL from ``peft_config`` (freshly initialised).
        place_frozen: ``module -> placed module`` (eval, no grad, the hidden-state head, TRL's placement).
    """
    from accelerate.utils import is_peft_model

    args = trainer.args
    every = args.lco_anchor_update_steps
    if every == 1:
        return None
    policy = trainer.model  # TRL keeps the unwrapped module here; the wrapper is trainer.model_wrapped

    if is_peft_model(policy):
        if every == 0 and adapters_from_trainer and adapters_are_identity(policy):
            return AdapterAnchor(lambda: trainer.model)
        return AdapterSnapshotAnchor(lambda: trainer.model, every)

    if any(p.device.type == "meta" for p in policy.parameters()):
        raise ValueError(
            f"lco_anchor_update_steps={every} keeps a frozen copy of the policy, taken when the trainer is built, "
            "but this process holds the policy's weights on the meta device (FSDP's cpu_ram_efficient_loading "
            "loads them on rank 0 only); set fsdp_cpu_ram_efficient_loading: false in the accelerate config "
            "(examples/accelerate/fsdp2.yaml), train with LoRA (the m = 0 anchor is then the base, no copy), "
            "or use lco_anchor_update_steps=1"
        )
    shard = sharding(trainer.accelerator)
    unwrap = trainer.accelerator.unwrap_model
    partitioned = any(hasattr(p, "ds_id") for p in policy.parameters())
    if partitioned:
        # a deepcopy of partitioned parameters copies empty shards: build from the config under
        # zero.Init (transformers applies it when ZeRO-3 is configured), then fill from the policy
        from transformers import AutoModelForCausalLM

        frozen = AutoModelForCausalLM.from_config(policy.config, dtype=policy.dtype)
    else:
        frozen = copy.deepcopy(policy)
    anchor = FrozenModelAnchor(place_frozen(frozen), lambda: trainer.model, unwrap, every, shard)
    if partitioned:
        anchor._copy_from_policy()
    return anchor
