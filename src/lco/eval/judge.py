"""``--suite judge``: pairwise win rate and length-controlled win rate against reference outputs.

The paper reports AlpacaEval 2.0 (§5): the policy's response to each instruction is compared with a
reference response (GPT-4-1106-Preview's) by an LLM judge (GPT-4o in the paper). Here the judge is
pluggable: a local Hugging Face causal LM (:class:`LocalJudge`) or any OpenAI-compatible chat
endpoint (:class:`OpenAIJudge`, URL from the command line, API key from an environment variable).

For each pair the judge gives a preference p ∈ [0, 1] that the policy's response is better; the two
responses are shown in a random order (seeded) to cancel position bias, and p is read from the
judge's probabilities of answering "A" or "B" when it exposes them.

Win rate = 100 · mean p.

Length-controlled win rate (the idea of AlpacaEval 2's LC win rate, Dubois et al., 2024): LLM judges
favour longer answers, so the preference is regressed on the length difference and read off at zero
length difference. We fit the logistic model

    p_i ≈ σ(θ + φ · tanh(Δ_i / sd(Δ))),   Δ_i = len(policy output_i) − len(reference_i)   (characters)

by maximum likelihood with soft labels p_i, and report LC win rate = 100 · σ(θ): the win rate the
policy would get if its answers were as long as the reference's. AlpacaEval's GLM also has an
instruction-difficulty term fitted across many models; with one policy against one reference it is
not identifiable, so it is omitted here and the numbers are comparable across our runs, not with the
AlpacaEval leaderboard.

An unreachable judge is never skipped: :class:`JudgeError` is raised (after retries) with what failed.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from .pistar import last_logits_only

JUDGE_PROMPT = """You are an impartial judge comparing two responses to the same instruction.
Pick the response that follows the instruction better: more helpful, correct, relevant and clear.
Do not let the order of the responses or their length alone decide.

## Instruction
{instruction}

## Response A
{response_a}

## Response B
{response_b}

Which response is better? Answer with exactly one letter: A or B."""


class JudgeError(RuntimeError):
    """The judge could not be reached or gave no usable answer; the evaluation stops, it is not skipped."""


def _normalise_pair(p_a: float, p_b: float) -> float | None:
    total = p_a + p_b
    return p_a / total if total > 0 else None


class LocalJudge:
    """A local causal LM as judge: p(A better) = P(A) / (P(A) + P(B)) from its next-token distribution."""

    def __init__(self, path: str, device: torch.device, dtype: torch.dtype = torch.float32):
        from .policies import load_causal_lm, load_tokenizer

        self.name = path
        self.tokenizer = load_tokenizer(path, "--judge-model")
        self.model = load_causal_lm(path, "--judge-model", device, dtype)
        self.device = device
        self.choice_ids: dict[str, list[int]] = {}
        for letter in ("A", "B"):
            ids = set()
            for variant in (letter, " " + letter):
                tokens = self.tokenizer.encode(variant, add_special_tokens=False)
                if len(tokens) == 1:
                    ids.add(tokens[0])
            if not ids:
                raise ValueError(f"--judge-model {path}: {letter!r} is not a single token of its tokenizer")
            self.choice_ids[letter] = sorted(ids)

    def _encode(self, prompt: str) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            rendered = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            return self.tokenizer(rendered, add_special_tokens=False)["input_ids"]
        return self.tokenizer(prompt + "\nAnswer:")["input_ids"]

    @torch.no_grad()
    def prefer_a(self, prompt: str) -> float | None:
        ids = torch.tensor([self._encode(prompt)], device=self.device)
        probs = torch.softmax(
            self.model(input_ids=ids, **last_logits_only(self.model)).logits[0, -1].float(), -1
        )
        return _normalise_pair(*(float(probs[self.choice_ids[c]].sum()) for c in ("A", "B")))

    def check(self) -> None:
        """A local model that loaded is reachable."""


class OpenAIJudge:
    """An OpenAI-compatible ``/chat/completions`` endpoint as judge.

    ``url`` is the API base (e.g. ``https://api.openai.com/v1``); the key is read from the
    environment variable ``api_key_env``. p(A better) comes from the top log-probabilities of the
    one-token answer when the endpoint returns them, else from the answer letter (1 or 0).
    """

    def __init__(
        self,
        url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 3,
    ):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--judge-url must start with http:// or https://, got {url!r}")
        key = os.environ.get(api_key_env)
        if not key:
            raise ValueError(
                f"--judge-url needs an API key in the environment variable {api_key_env} (set it, or name "
                "another variable with --judge-api-key-env)"
            )
        self.url = url.rstrip("/") + "/chat/completions"
        self.name, self.model, self.api_key_env = url, model, api_key_env
        self._key, self.timeout, self.max_retries = key, timeout, max_retries

    def _post(self, payload: dict) -> dict:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"},
            method="POST",
        )
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode())
            except urllib.error.HTTPError as err:
                body = err.read().decode(errors="replace")[:300]
                if err.code in (401, 403):
                    raise JudgeError(
                        f"judge endpoint {self.url} rejected the API key from ${self.api_key_env} "
                        f"(HTTP {err.code}: {body})"
                    ) from err
                if err.code not in (408, 409, 429) and err.code < 500:
                    raise JudgeError(
                        f"judge endpoint {self.url} refused the request (HTTP {err.code}: {body})"
                    ) from err
                last = f"HTTP {err.code}: {body}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as err:
                last = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            if attempt < self.max_retries:
                time.sleep(2.0**attempt)
        raise JudgeError(
            f"judge endpoint {self.url} is unreachable after {self.max_retries + 1} attempts ({last})"
        )

    def prefer_a(self, prompt: str) -> float | None:
        response = self._post(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": True,
                "top_logprobs": 5,
            }
        )
        try:
            choice = response["choices"][0]
        except (KeyError, IndexError, TypeError) as err:
            raise JudgeError(f"judge endpoint {self.url} returned no choices: {str(response)[:300]}") from err
        top = (((choice.get("logprobs") or {}).get("content") or [{}])[0] or {}).get("top_logprobs") or []
        mass = {"A": 0.0, "B": 0.0}
        for entry in top:
            letter = str(entry.get("token", "")).strip()
            if letter in mass:
                mass[letter] += math.exp(float(entry["logprob"]))
        if mass["A"] + mass["B"] > 0:
            return _normalise_pair(mass["A"], mass["B"])
        answer = str((choice.get("message") or {}).get("content") or "").strip()[:1]
        return {"A": 1.0, "B": 0.0}.get(answer)

    def check(self) -> None:
        """One tiny request, so that a wrong URL or key fails before any generation."""
        self.prefer_a(JUDGE_PROMPT.format(instruction="Say hi.", response_a="Hi!", response_b="Bye."))


def judge_preferences(
    judge, instructions: Sequence[str], outputs: Sequence[str], references: Sequence[str], seed: int
) -> list[float | None]:
    """p(policy output better than reference) per instruction; ``None`` where the judge's answer was unusable.

    The policy's output is shown as A or B by a coin flip seeded with ``seed``.
    """
    rng = random.Random(seed)
    prefs: list[float | None] = []
    for instruction, output, reference in tqdm(
        list(zip(instructions, outputs, references, strict=True)), desc="judging", unit="pair", leave=False
    ):
        policy_first = rng.random() < 0.5
        a, b = (output, reference) if policy_first else (reference, output)
        p_a = judge.prefer_a(JUDGE_PROMPT.format(instruction=instruction, response_a=a, response_b=b))
        prefs.append(None if p_a is None else (p_a if policy_first else 1.0 - p_a))
    return prefs


def win_rate(preferences: Sequence[float]) -> float:
    """100 · mean preference for the policy (a tie counts one half)."""
    if not preferences:
        raise ValueError("win_rate needs at least one preference")
    return 100.0 * sum(preferences) / len(preferences)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def fit_length_logistic(
    preferences: Sequence[float], length_diffs: Sequence[float], l2: float = 1e-4, iters: int = 100
) -> tuple[float, float]:
    """(θ, φ) of p ≈ σ(θ + φ·x) with x = tanh(Δ/sd(Δ)), by Newton's method on the soft-label log loss.

    A small L2 penalty keeps the fit finite when every preference is 0 or 1.
    """
    n = len(preferences)
    if n == 0 or n != len(length_diffs):
        raise ValueError("fit_length_logistic needs as many preferences as length differences (at least one)")
    mean_d = sum(length_diffs) / n
    sd = math.sqrt(sum((d - mean_d) ** 2 for d in length_diffs) / n)
    xs = [math.tanh(d / sd) if sd > 0 else 0.0 for d in length_diffs]
    theta = phi = 0.0
    for _ in range(iters):
        g0 = g1 = h00 = h01 = h11 = 0.0
        for p, x in zip(preferences, xs, strict=True):
            q = _sigmoid(theta + phi * x)
            g0 += q - p
            g1 += (q - p) * x
            w = q * (1 - q)
            h00, h01, h11 = h00 + w, h01 + w * x, h11 + w * x * x
        g0, g1 = g0 / n + l2 * theta, g1 / n + l2 * phi
        h00, h01, h11 = h00 / n + l2, h01 / n, h11 / n + l2
        det = h00 * h11 - h01 * h01
        step0, step1 = (h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det
        theta, phi = theta - step0, phi - step1
        if abs(step0) + abs(step1) < 1e-10:
            break
    return theta, phi


def length_controlled_win_rate(
    preferences: Sequence[float], output_lengths: Sequence[int], reference_lengths: Sequence[int]
) -> float:
    """100 · σ(θ): the fitted preference at zero length difference (see the module docstring)."""
    diffs = [float(o - r) for o, r in zip(output_lengths, reference_lengths, strict=True)]
    theta, _ = fit_length_logistic(preferences, diffs)
    return 100.0 * _sigmoid(theta)


def judge_metrics(
    preferences: Sequence[float | None], outputs: Sequence[str], references: Sequence[str]
) -> dict[str, float]:
    """Win rate, LC win rate, and what they rest on (pairs judged, unusable answers, mean lengths)."""
    kept = [(p, o, r) for p, o, r in zip(preferences, outputs, references, strict=True) if p is not None]
    if not kept:
        raise JudgeError("the judge gave no usable answer (neither A nor B) for any pair")
    prefs = [p for p, _, _ in kept]
    return {
        "win_rate": win_rate(prefs),
        "lc_win_rate": length_controlled_win_rate(
            prefs, [len(o) for _, o, _ in kept], [len(r) for _, _, r in kept]
        ),
        "num_judged": float(len(kept)),
        "num_unusable": float(len(preferences) - len(kept)),
        "mean_output_chars": sum(len(o) for _, o, _ in kept) / len(kept),
        "mean_reference_chars": sum(len(r) for _, _, r in kept) / len(kept),
    }
