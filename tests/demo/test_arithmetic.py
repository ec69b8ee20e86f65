"""The synthetic task: deterministic from its seed, disjoint splits, answers checked by math-verify."""

from __future__ import annotations

import pytest

from lco.eval import is_correct
from lco.rewards import math_verify_reward
from lco.tasks.arithmetic import PROMPT_TEMPLATE, Problem, generate_splits, is_hard, to_dataset


def test_same_seed_gives_the_same_splits_and_another_seed_does_not():
    first, second = generate_splits(seed=3, train_size=300), generate_splits(seed=3, train_size=300)
    assert first == second
    assert generate_splits(seed=4, train_size=300)["test"] != first["test"]


def test_evaluation_splits_do_not_depend_on_the_train_size():
    small, large = generate_splits(train_size=100), generate_splits(train_size=2000)
    assert small["test"] == large["test"] and small["hard"] == large["hard"]


def test_splits_are_disjoint_and_sized():
    splits = generate_splits(train_size=3000, test_size=500, hard_size=200, validation_size=100)
    expressions = {name: [p.expression for p in problems] for name, problems in splits.items()}
    sizes = {name: len(e) for name, e in expressions.items()}
    assert sizes == {"train": 3000, "test": 500, "hard": 200, "validation": 100}
    for name, e in expressions.items():
        assert len(set(e)) == len(e), f"{name} has duplicates"
    names = list(expressions)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not set(expressions[a]) & set(expressions[b]), f"{a} and {b} overlap"


def test_hard_problems_are_subtractions_with_a_borrow():
    splits = generate_splits(train_size=500)
    for p in splits["hard"]:
        a, b = (int(x) for x in p.expression.split("-"))
        assert max(a, b) % 10 < min(a, b) % 10
    assert is_hard(Problem("52-27", 25)) and is_hard(Problem("29-58", -29))
    assert (
        not is_hard(Problem("57-23", 34))
        and not is_hard(Problem("23-58", -35))
        and not is_hard(Problem("57+68", 125))
    )
    # the test split is uniform: it holds hard and easy problems
    assert 0 < sum(map(is_hard, splits["test"])) < len(splits["test"])


def test_reference_solutions_verify_and_the_answer_is_arithmetic():
    splits = generate_splits(train_size=200)
    for p in splits["test"] + splits["hard"]:
        assert p.answer == eval(p.expression)  # noqa: S307 - our own generated integer expressions
        assert is_correct(p.solution, str(p.answer))
        assert p.prompt == PROMPT_TEMPLATE.format(expression=p.expression) and "\\boxed{}" in p.prompt
        assert len(p.solution) <= 12


@pytest.mark.parametrize(
    "completion",
    ["\\boxed{68.0}", "The answer is 68", "\\boxed{\\frac{136}{2}}", "so \\boxed{ 68 }", "\\boxed{68}\n"],
)
def test_equivalent_forms_are_correct_by_math_verify(completion):
    assert is_correct(completion, "68")


@pytest.mark.parametrize("completion", ["\\boxed{86}", "\\boxed{-68}", "", "no number here", "\\boxed{6}8"])
def test_wrong_or_missing_answers_are_not_correct(completion):
    assert not is_correct(completion, "68")


def test_dataset_columns_feed_the_rule_reward():
    problems = generate_splits(train_size=50)["train"][:4]
    ds = to_dataset(problems, with_solution=True)
    assert ds.column_names == ["prompt", "answer", "completion"]
    rewards = math_verify_reward(ds["completion"], ds["answer"])
    assert rewards == [1.0] * 4
    assert math_verify_reward(["\\boxed{0}"], ["5"]) == [-1.0]


@pytest.mark.parametrize(
    "kwargs", [{"train_size": 0}, {"test_size": -1}, {"hard_size": True}, {"train_size": 9000}]
)
def test_bad_sizes_are_one_clear_error(kwargs):
    with pytest.raises(ValueError):
        generate_splits(**kwargs)
