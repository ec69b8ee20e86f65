"""What the demo's stages share at run time: the evaluation splits and their sizes, the device, the
progress callback, decoding a policy for pass@1, the rollout count of a step, and φ_DPO's sequence
reward.

Every stage module (:mod:`.warmup`, :mod:`.reward_model`, :mod:`.rl`, :mod:`.evaluate`) and the report
import these from here and from nowhere else, so that no stage imports another stage. Nothing here
imports torch, transformers or TRL at module level: a spawned worker may import this module before
its thread count is set.
"""

from __future__ import annotations

import inspect
import math

from ..eval.answers import is_correct
from ..tasks.arithmetic import generate_splits
from .settings import EvalSettings, TaskSettings

SPLITS = ("test", "hard")  # the splits the demo evaluates every policy on; the report reads them from here
ALL_SPLITS = ("test", "hard", "validation")  # the study evaluates its selection runs on the validation split


def problems_evaluated(split: str, task: TaskSettings, settings: EvalSettings) -> int:
    """How many problems of ``split`` the evaluation takes: the first ``settings.<split>_problems``.

    The validation split's size is :func:`~lco.tasks.arithmetic.generate_splits`' default (it is not a
    field of :class:`TaskSettings`, whose fields key the cached warm-up)."""
    size = getattr(task, f"{split}_size", None)
    if size is None:
        size = inspect.signature(generate_splits).parameters[f"{split}_size"].default
    return min(getattr(settings, f"{split}_problems"), size)


def on_accelerator() -> bool:
    """Whether a CUDA device is there (the demo runs on it, else on the CPU)."""
    import torch

    return torch.cuda.is_available()


def progress_callback(progress):
    """A ``TrainerCallback`` that advances the stage's progress bar by one per optimizer step."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            progress(1)

    return _Progress()


def rollouts_after(step: int, iterations: int, batch_size: int) -> int:
    """Completions sampled after ``step`` optimizer steps (a new batch every ``iterations`` steps)."""
    return math.ceil(step / iterations) * batch_size


def pass_at_one(
    model,
    tokenizer,
    problems,
    greedy: bool,
    max_new_tokens: int,
    temperature: float = 0.6,
    top_p: float = 0.95,
    seed: int = 0,
    batch_size: int = 128,
) -> tuple[float, list[tuple[str, bool]]]:
    """pass@1 (one completion per problem) of an in-memory model and the (completion, correct) pairs.

    The global RNG is restored afterwards, so measuring a model during training does not change the
    training's own sampling.
    """
    import torch

    from ..eval.generation import DecodingConfig, TransformersGenerator, encode_prompts
    from ..eval.policies import Policy

    was_training = model.training
    model.eval()
    policy = Policy("checkpoint", "in-memory", model, tokenizer)
    decoding = DecodingConfig(
        greedy=greedy, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens
    )
    prompt_ids = encode_prompts(tokenizer, [p.prompt for p in problems], chat_template="off")
    with torch.random.fork_rng():
        completions = TransformersGenerator(policy, batch_size).generate(prompt_ids, decoding, seed)
    model.train(was_training)
    verdicts = [
        (c[0].text, is_correct(c[0].text, str(p.answer))) for c, p in zip(completions, problems, strict=True)
    ]
    return sum(ok for _, ok in verdicts) / len(verdicts), verdicts


def policy_generator(policy: dict, batch_size: int):
    """The generator of ``policy`` (``{"kind", "model", "reward_model", "ref_model", "beta"}``, as
    :func:`lco.eval.build_generator` takes it) on the demo's device and dtype."""
    from ..eval.generation import build_generator

    return build_generator(
        policy["kind"],
        model=policy.get("model"),
        reward_model=policy.get("reward_model"),
        ref_model=policy.get("ref_model"),
        beta=policy.get("beta", 1.0),
        device="auto",
        dtype="float32",
        batch_size=batch_size,
    )


def greedy_pass_at_one(policy: dict, task: TaskSettings, problems: int, batch_size: int = 128) -> float:
    """Greedy pass@1 of ``policy`` (as :func:`policy_generator` takes it) on the first ``problems``
    test problems — the decoding the reward-model gate compares (Table 1's ordering)."""
    from ..eval.generation import DecodingConfig, encode_prompts

    test = generate_splits(**vars(task))["test"][:problems]
    generator = policy_generator(policy, batch_size)
    prompt_ids = encode_prompts(generator.tokenizer, [p.prompt for p in test], chat_template="off")
    completions = generator.generate(prompt_ids, DecodingConfig(greedy=True, max_new_tokens=16), seed=0)
    correct = sum(is_correct(c[0].text, str(p.answer)) for c, p in zip(completions, test, strict=True))
    return correct / len(test)


class DPOSequenceReward:
    """φ_DPO's implicit sequence reward β·Σ_t log φ_DPO(y_t|s_t)/φ_ref(y_t|s_t), as a TRL reward function.

    The reward of the paper's "w/ DPO-RM" rows for a method that takes one scalar per completion (PPO);
    the reward-model stage trains φ_DPO, the RL stage reads it through this class.
    """

    __name__ = "dpo_reward"

    def __init__(self, dpo_path: str, ref_path: str, beta: float):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = "cuda" if on_accelerator() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(ref_path)
        self.dpo = AutoModelForCausalLM.from_pretrained(dpo_path).to(self.device).eval().requires_grad_(False)
        self.ref = AutoModelForCausalLM.from_pretrained(ref_path).to(self.device).eval().requires_grad_(False)
        self.beta = beta

    def _completion_logps(self, model, ids, mask, starts):
        import torch

        logps = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
        token_logps = logps.gather(-1, ids[:, 1:, None]).squeeze(-1)
        positions = torch.arange(ids.shape[1] - 1, device=ids.device)[None, :]
        keep = (positions >= (starts[:, None] - 1)) & mask[:, 1:].bool()
        return (token_logps * keep).sum(-1)

    def __call__(self, prompts, completion_ids, **kwargs) -> list[float]:
        import torch

        sequences, starts = [], []
        for prompt, completion in zip(prompts, completion_ids, strict=True):
            prompt_ids = self.tokenizer(prompt)["input_ids"]
            sequences.append(prompt_ids + list(completion))
            starts.append(len(prompt_ids))
        width = max(len(s) for s in sequences)
        # right padding: positions of the real tokens start at 0, as in training
        ids = torch.full((len(sequences), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        ids, mask, starts_t = (
            ids.to(self.device),
            mask.to(self.device),
            torch.tensor(starts, device=self.device),
        )
        with torch.no_grad():
            dpo = self._completion_logps(self.dpo, ids, mask, starts_t)
            ref = self._completion_logps(self.ref, ids, mask, starts_t)
        return (self.beta * (dpo - ref)).tolist()


__all__ = [
    "ALL_SPLITS",
    "SPLITS",
    "DPOSequenceReward",
    "greedy_pass_at_one",
    "on_accelerator",
    "pass_at_one",
    "policy_generator",
    "problems_evaluated",
    "progress_callback",
    "rollouts_after",
]
