"""Sampling completions from a policy: batched ``transformers`` generation, or vLLM when asked for.

The decoding settings are explicit and the same for every policy: the paper samples at temperature
0.6 with top-p 0.95 (§5, following DeepSeek-R1); greedy decoding is the deterministic alternative.
A run is reproducible from its seed: the torch generator is seeded once before the run's first batch.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .policies import Policy, check_policy_args, load_policy, load_tokenizer

BACKENDS = ("transformers", "vllm")
CHAT_TEMPLATE_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class DecodingConfig:
    """How completions are sampled. ``num_samples`` completions are drawn per prompt (pass@k needs k ≤ n)."""

    greedy: bool = False
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 2048
    num_samples: int = 1

    def __post_init__(self):
        if not self.greedy and not self.temperature > 0:
            raise ValueError(f"--temperature must be positive for sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.num_samples < 1:
            raise ValueError(f"--samples-per-seed must be at least 1, got {self.num_samples}")


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int
    stopped: bool  # False: cut at max_new_tokens before an end-of-sequence token


def encode_prompts(tokenizer, texts: list[str], chat_template: str = "auto") -> list[list[int]]:
    """Token ids of each prompt, as a single user turn of the chat template when there is one.

    ``chat_template``: ``auto`` uses the tokenizer's chat template if it has one, ``on`` requires it,
    ``off`` encodes the raw text.
    """
    if chat_template not in CHAT_TEMPLATE_MODES:
        raise ValueError(
            f"--chat-template must be one of {', '.join(CHAT_TEMPLATE_MODES)}, got {chat_template!r}"
        )
    has_template = getattr(tokenizer, "chat_template", None) is not None
    if chat_template == "on" and not has_template:
        raise ValueError("--chat-template on: the policy's tokenizer has no chat template")
    use_template = chat_template == "on" or (chat_template == "auto" and has_template)
    encoded = []
    for text in texts:
        if use_template:
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
            # the rendered template already holds the special tokens (BOS, role markers)
            encoded.append(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        else:
            encoded.append(tokenizer(text)["input_ids"])
    return encoded


def _eos_ids(policy: Policy) -> list[int]:
    ids = policy.model.generation_config.eos_token_id
    ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
    if policy.tokenizer.eos_token_id is not None and policy.tokenizer.eos_token_id not in ids:
        ids.append(policy.tokenizer.eos_token_id)
    if not ids:
        raise ValueError(f"{policy.name_or_path}: neither the model nor its tokenizer defines an eos token")
    return ids


class TransformersGenerator:
    """Batched ``model.generate`` with left padding; the π* processor is attached for ``pistar``."""

    def __init__(self, policy: Policy, batch_size: int = 16):
        if batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
        self.policy = policy
        self.tokenizer = policy.tokenizer
        self.batch_size = batch_size
        self.eos_ids = _eos_ids(policy)

    def _generation_config(self, decoding: DecodingConfig):
        from transformers import GenerationConfig

        common = dict(
            max_new_tokens=decoding.max_new_tokens,
            eos_token_id=self.eos_ids,
            pad_token_id=self.policy.tokenizer.pad_token_id,
            repetition_penalty=1.0,
            num_beams=1,
        )
        if decoding.greedy:
            return GenerationConfig(do_sample=False, **common)
        # top_k=0 switches off transformers' global default top_k=50: only temperature and top-p act
        return GenerationConfig(
            do_sample=True, temperature=decoding.temperature, top_p=decoding.top_p, top_k=0, **common
        )

    @torch.no_grad()
    def generate(
        self, prompt_ids: list[list[int]], decoding: DecodingConfig, seed: int, desc: str = "generating"
    ) -> list[list[Completion]]:
        """``decoding.num_samples`` completions for each prompt, in prompt order."""
        from transformers import LogitsProcessorList

        n = 1 if decoding.greedy else decoding.num_samples
        # longest prompts first: less padding per batch, and an out-of-memory error shows up at once
        items = sorted(
            ((i, s) for i in range(len(prompt_ids)) for s in range(n)), key=lambda it: -len(prompt_ids[it[0]])
        )
        config = self._generation_config(decoding)
        model, tok = self.policy.model, self.policy.tokenizer
        device = next(model.parameters()).device
        results: list[list[Completion | None]] = [[None] * n for _ in prompt_ids]
        torch.manual_seed(seed)
        batches = range(0, len(items), self.batch_size)
        for start in tqdm(batches, desc=desc, unit="batch", leave=False):
            batch = items[start : start + self.batch_size]
            seqs = [prompt_ids[i] for i, _ in batch]
            width = max(len(s) for s in seqs)
            input_ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for row, s in enumerate(seqs):
                input_ids[row, width - len(s) :] = torch.tensor(s, dtype=torch.long)
                mask[row, width - len(s) :] = 1
            input_ids, mask = input_ids.to(device), mask.to(device)
            processors = LogitsProcessorList()
            if self.policy.pistar is not None:
                self.policy.pistar.begin(mask)
                processors.append(self.policy.pistar)
            out = model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=config,
                logits_processor=processors,
            )
            for row, (i, s) in enumerate(batch):
                results[i][s] = self._decode(out[row, width:].tolist())
        return results  # type: ignore[return-value]

    def _decode(self, tokens: list[int]) -> Completion:
        end = next((j for j, t in enumerate(tokens) if t in self.eos_ids), None)
        kept = tokens if end is None else tokens[:end]
        text = self.policy.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text=text, num_tokens=len(kept), stopped=end is not None)


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


class VLLMGenerator:
    """vLLM offline generation for checkpoints (and φ_DPO); prompts are passed as token ids."""

    def __init__(self, model_path: str, tokenizer, dtype: str = "auto", **llm_kwargs):
        if not vllm_available():
            raise ValueError(
                "--backend vllm: vLLM is not installed (pip install 'lco[vllm]' on a GPU machine)"
            )
        from vllm import LLM

        self.tokenizer = tokenizer
        self.llm = LLM(model=model_path, tokenizer=model_path, dtype=dtype, **llm_kwargs)

    def generate(
        self, prompt_ids: list[list[int]], decoding: DecodingConfig, seed: int, desc: str = "generating"
    ) -> list[list[Completion]]:
        from vllm import SamplingParams

        n = 1 if decoding.greedy else decoding.num_samples
        params = [
            SamplingParams(
                n=n,
                temperature=0.0 if decoding.greedy else decoding.temperature,
                top_p=1.0 if decoding.greedy else decoding.top_p,
                max_tokens=decoding.max_new_tokens,
                seed=seed * 1_000_003 + i,  # one stream per prompt, reproducible from the run's seed
            )
            for i in range(len(prompt_ids))
        ]
        prompts = [{"prompt_token_ids": ids} for ids in prompt_ids]
        outputs = self.llm.generate(prompts, params, use_tqdm=True)
        return [
            [
                Completion(text=o.text, num_tokens=len(o.token_ids), stopped=o.finish_reason == "stop")
                for o in request.outputs
            ]
            for request in outputs
        ]


def build_generator(
    kind: str,
    model: str | None = None,
    reward_model: str | None = None,
    ref_model: str | None = None,
    beta: float = 1.0,
    normalize: str = "mean",
    backend: str = "transformers",
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 16,
):
    """Load a policy (see :mod:`lco.eval.policies`) behind the chosen backend.

    vLLM loads the weights itself, so with ``backend="vllm"`` only the tokenizer is loaded here; it
    cannot run the π* processor, which needs φ_DPO and φ_ref at every step.
    """
    if backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    check_policy_args(kind, model, reward_model, ref_model, beta)
    if backend == "vllm":
        if kind == "pistar":
            raise ValueError(
                "--backend vllm cannot decode --policy pistar (it needs φ_DPO and φ_ref at every step); "
                "use --backend transformers"
            )
        path, flag = (reward_model, "--reward-model") if kind == "rm" else (model, "--model")
        if not vllm_available():
            raise ValueError(
                "--backend vllm: vLLM is not installed (pip install 'lco[vllm]' on a GPU machine)"
            )
        return VLLMGenerator(path, load_tokenizer(path, flag), dtype=dtype)
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    policy = load_policy(kind, model, reward_model, ref_model, beta, normalize, device, dtype)
    return TransformersGenerator(policy, batch_size)
