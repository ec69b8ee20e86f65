"""Final-answer extraction and verification for math problems.

A completion's answer is the content of its last ``\\boxed{...}`` (the prompt asks for one), or, when
there is none, the last number in the text. Equivalence with the reference answer is decided by
`math-verify <https://github.com/huggingface/Math-Verify>`_ (symbolic and numeric comparison, so
``\\frac{1}{2}`` = ``0.5`` = ``1/2``).

:func:`math_reward` is the paper's rule-based reward (§6.2, Table 5): +1 for a correct final answer,
−1 otherwise. The trainer and the demo reuse it.
"""

from __future__ import annotations

import re
import threading

from math_verify import parse, verify

_BOX_COMMANDS = ("\\boxed", "\\fbox")
# a plain number: optional sign, thousands groups or digits, optional decimals, optional "/denominator"
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``/``\\fbox{...}`` (balanced braces), or of ``\\boxed x``."""
    start = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    if start < 0:
        return None
    i = start + (len("\\boxed") if text.startswith("\\boxed", start) else len("\\fbox"))
    if i < len(text) and text[i] == " ":  # "\boxed 5": the argument is the next token
        match = re.match(r" +([^\s$]+)", text[i:])
        return match.group(1) if match else None
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None  # unbalanced: the generation was cut off inside the box


def extract_answer(completion: str) -> str | None:
    """The final answer of a completion: the last ``\\boxed{}`` content, else the last number, else None."""
    boxed = _last_boxed(completion)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    numbers = _NUMBER.findall(completion)
    return numbers[-1] if numbers else None


def _as_latex(answer: str) -> str:
    # math-verify extracts from LaTeX environments; a bare answer is put in a box so that it is parsed
    # as one expression (a reference answer that already carries $...$ or \boxed is parsed as is).
    return answer if ("\\boxed" in answer or "$" in answer) else f"\\boxed{{{answer}}}"


def _timeout_seconds() -> int | None:
    # math-verify bounds parsing/verification time with SIGALRM, which only the main thread can use;
    # elsewhere (a trainer's reward worker thread) it would raise, so it runs without a time limit
    return 5 if threading.current_thread() is threading.main_thread() else None


def answers_match(predicted: str, reference: str) -> bool:
    """Whether two final answers are mathematically equivalent (math-verify)."""
    timeout = _timeout_seconds()
    gold = parse(_as_latex(str(reference)), parsing_timeout=timeout)
    pred = parse(_as_latex(predicted), parsing_timeout=timeout)
    if not gold or not pred:
        # unparseable on either side: fall back to an exact match of the normalised strings
        return _normalise(predicted) == _normalise(str(reference))
    return bool(verify(gold, pred, timeout_seconds=timeout))


def _normalise(s: str) -> str:
    return re.sub(r"\s+", "", s).strip("$.").lower()


def is_correct(completion: str, answer: str) -> bool:
    """Whether the completion's final answer (see :func:`extract_answer`) equals the reference ``answer``."""
    predicted = extract_answer(completion)
    return predicted is not None and answers_match(predicted, answer)


def math_reward(completion: str, answer: str) -> float:
    """The rule-based reward of §6.2: +1.0 if the final answer is correct, −1.0 otherwise."""
    return 1.0 if is_correct(completion, answer) else -1.0
