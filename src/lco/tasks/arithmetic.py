"""A synthetic, verifiable math task generated from a seed: the demo's MATH500 / AMC23 in miniature.

Problems are ``a+b`` or ``a-b`` with two 2-digit operands; the model answers ``\\boxed{N}``.

- ``test`` (500 problems, the role of MATH500): drawn uniformly;
- ``hard`` (the role of AMC23 / MinervaMath): subtractions that need a borrow (52-27, 29-58) — the
  kind tiny models get wrong most often (measured: about half their average accuracy);
- ``validation``: drawn uniformly, used only to decide when the warm-up has made the policy
  partially capable (never for reporting);
- ``train``: drawn uniformly from the rest.

The splits are disjoint: the evaluation problems are drawn first and excluded from the others.
Harder *shapes* (three operands, three digits) were tried for the hard split: a tiny model that
never sees them scores ~0 on them whatever the RL method, and mixing them into the warm-up halves
its learning speed, so the hard split is the hard *part* of the same distribution instead.
Completions are short — ``\\boxed{-35}`` is 11 byte tokens — so generation is cheap on a CPU.
Answers are checked with math-verify (:func:`lco.eval.is_correct`), not by string equality, so
``\\boxed{68.0}`` counts for 68; the rule reward is the paper's ±1 (Table 5).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from datasets import Dataset

PROMPT_TEMPLATE = "Compute {expression}. Answer in \\boxed{{}}.\n"
SPLITS = ("train", "test", "hard", "validation")
TEST_SIZE = 500  # the role of MATH500
_OPERAND_RANGE = (10, 99)
_OPS = ("+", "-")


@dataclass(frozen=True)
class Problem:
    expression: str
    answer: int

    @property
    def prompt(self) -> str:
        return PROMPT_TEMPLATE.format(expression=self.expression)

    @property
    def solution(self) -> str:
        """The reference completion: the answer in a box (the model's end-of-sequence token follows)."""
        return f"\\boxed{{{self.answer}}}"


def _random_problem(rng: random.Random) -> Problem:
    lo, hi = _OPERAND_RANGE
    a, b, op = rng.randint(lo, hi), rng.randint(lo, hi), rng.choice(_OPS)
    return Problem(f"{a}{op}{b}", a + b if op == "+" else a - b)


def is_hard(problem: Problem) -> bool:
    """A subtraction whose column arithmetic needs a borrow: |a−b| = hi−lo with hi's units < lo's."""
    if "-" not in problem.expression:
        return False
    a, b = (int(x) for x in problem.expression.split("-"))
    return max(a, b) % 10 < min(a, b) % 10


def _draw(rng: random.Random, count: int, exclude: set[str], hard: bool | None = None) -> list[Problem]:
    """``count`` distinct problems not in ``exclude`` (which is updated); ``hard`` filters by :func:`is_hard`."""
    problems: list[Problem] = []
    while len(problems) < count:
        problem = _random_problem(rng)
        if problem.expression in exclude or (hard is not None and is_hard(problem) != hard):
            continue
        exclude.add(problem.expression)
        problems.append(problem)
    return problems


def generate_splits(
    seed: int = 0,
    train_size: int = 6000,
    test_size: int = TEST_SIZE,
    hard_size: int = 200,
    validation_size: int = 200,
) -> dict[str, list[Problem]]:
    """The four disjoint splits, identical for identical arguments (one ``random.Random(seed)``)."""
    sizes = {
        "train_size": train_size,
        "test_size": test_size,
        "hard_size": hard_size,
        "validation_size": validation_size,
    }
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    pool = (_OPERAND_RANGE[1] - _OPERAND_RANGE[0] + 1) ** 2 * len(_OPS)
    if sum(sizes.values()) > pool // 2 or hard_size > pool // 8:
        # drawing most of the problems by rejection would crawl; the demo needs far fewer
        raise ValueError(
            f"the splits' sizes add up to {sum(sizes.values())} (hard: {hard_size}): at most half of the {pool} "
            "distinct problems may be drawn, and at most an eighth of them hard"
        )
    rng = random.Random(seed)
    seen: set[str] = set()
    # evaluation splits first, so that they do not depend on the size of the others
    test = _draw(rng, test_size, seen)
    hard = _draw(rng, hard_size, seen, hard=True)
    validation = _draw(rng, validation_size, seen)
    train = _draw(rng, train_size, seen)
    return {"train": train, "test": test, "hard": hard, "validation": validation}


def to_dataset(problems: list[Problem], with_solution: bool = False) -> Dataset:
    """A ``datasets.Dataset`` with TRL's columns: ``prompt``, ``answer`` (for the reward) and,
    for supervised warm-up, ``completion``."""
    columns = {
        "prompt": [p.prompt for p in problems],
        "answer": [str(p.answer) for p in problems],
    }
    if with_solution:
        columns["completion"] = [p.solution for p in problems]
    return Dataset.from_dict(columns)
