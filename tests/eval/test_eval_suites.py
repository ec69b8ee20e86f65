"""The suite loops with a stand-in generator: scoring, seed aggregation, resume after a kill."""

import pytest

from lco.eval.generation import Completion, DecodingConfig
from lco.eval.results import ResultStore
from lco.eval.suites import evaluate_math, plan_runs

PROBLEMS = [
    {"id": "half", "problem": "one half?", "answer": "0.5"},
    {"id": "five", "problem": "2 + 3?", "answer": "5"},
]
# what the stand-in policy answers, per seed (None: greedy) and problem, two samples each
ANSWERS = {
    0: [["\\boxed{\\frac{1}{2}}", "\\boxed{2}"], ["\\boxed{5}", "\\boxed{5}"]],
    1: [["\\boxed{3}", "\\boxed{0.4}"], ["so 5", "\\boxed{6}"]],
    2: [["1/2", "\\boxed{1/2}"], ["\\boxed{4}", "\\boxed{7}"]],
    None: [["\\boxed{0.5}"], ["\\boxed{4}"]],
}


class StandInGenerator:
    def __init__(self, tokenizer, fail_on_seed=None):
        self.tokenizer, self.fail_on_seed, self.calls = tokenizer, fail_on_seed, []

    def generate(self, prompt_ids, decoding, seed, desc=""):
        key = None if decoding.greedy else seed
        self.calls.append(key)
        if key is not None and key == self.fail_on_seed:
            raise KeyboardInterrupt  # the evaluation is killed while this seed runs
        assert len(prompt_ids) == len(PROBLEMS)
        return [[Completion(t, 3, True) for t in texts] for texts in ANSWERS[key]]


def test_math_metrics_per_seed_their_mean_and_std_and_pooled_pass_at_k(tmp_path, tokenizer):
    store = ResultStore(tmp_path, {"suite": "math"})
    gen = StandInGenerator(tokenizer)
    runs = plan_runs(3, "both")
    summary = evaluate_math(
        lambda: gen, store, {"toy": PROBLEMS}, DecodingConfig(num_samples=2), runs, [1, 2, 4]
    )

    entry = summary["toy"]
    # seed 0: half 1/2 correct, five 2/2 → pass@1 = (0.5 + 1)/2; pass@2 = (1 + 1)/2
    assert entry["runs"]["seed_0"]["pass@1"] == pytest.approx(75.0)
    assert entry["runs"]["seed_0"]["pass@2"] == pytest.approx(100.0)
    assert "pass@4" not in entry["runs"]["seed_0"]  # k > samples per seed
    # seed 1: half 0/2; five 1/2 ("so 5" has no box: its final number 5 counts)
    assert entry["runs"]["seed_1"]["pass@1"] == pytest.approx(25.0)
    # seed 2: half 2/2, five 0/2
    assert entry["runs"]["seed_2"]["pass@1"] == pytest.approx(50.0)
    agg = entry["seeds"]["pass@1"]
    assert agg["mean"] == pytest.approx(50.0) and agg["std"] == pytest.approx(25.0) and agg["n"] == 3
    # pooled over 3 seeds × 2 samples = 6 per problem: half 3/6 correct, five 3/6 correct
    assert entry["pooled"]["samples_per_problem"] == 6
    assert entry["pooled"]["pass@4"] == pytest.approx(100.0 * (1 - 0 / 15))  # C(3,4) = 0
    assert entry["pooled"]["pass@2"] == pytest.approx(100.0 * (1 - 3 / 15))
    assert entry["runs"]["greedy"]["pass@1"] == pytest.approx(50.0)
    assert agg["values"] == pytest.approx([75.0, 25.0, 50.0])  # the greedy run is not a seed
    assert gen.calls == [0, 1, 2, None]
    record = store.load("math", "toy", "seed_0")
    assert record["problems"][0]["extracted"] == ["\\frac{1}{2}", "2"] and record["problems"][0][
        "correct"
    ] == [True, False]


def test_a_killed_evaluation_resumes_without_redoing_finished_seeds(tmp_path, tokenizer):
    runs, decoding = plan_runs(3, "sample"), DecodingConfig(num_samples=2)
    killed = StandInGenerator(tokenizer, fail_on_seed=1)
    with pytest.raises(KeyboardInterrupt):
        evaluate_math(
            lambda: killed, ResultStore(tmp_path, {"suite": "math"}), {"toy": PROBLEMS}, decoding, runs, [1]
        )
    assert (tmp_path / "math" / "toy" / "seed_0.json").exists()
    assert not (tmp_path / "math" / "toy" / "seed_1.json").exists()

    resumed = StandInGenerator(tokenizer)
    summary = evaluate_math(
        lambda: resumed, ResultStore(tmp_path, {"suite": "math"}), {"toy": PROBLEMS}, decoding, runs, [1]
    )
    assert resumed.calls == [1, 2]  # seed 0 was not generated again
    assert summary["toy"]["seeds"]["pass@1"]["n"] == 3

    def must_not_load():
        raise AssertionError("a finished evaluation must not load the models")

    evaluate_math(
        must_not_load, ResultStore(tmp_path, {"suite": "math"}), {"toy": PROBLEMS}, decoding, runs, [1]
    )


@pytest.mark.parametrize(("seeds", "decoding"), [(0, "sample"), (-1, "both"), (2, "beam")])
def test_plan_runs_rejects_bad_arguments(seeds, decoding):
    with pytest.raises(ValueError, match="--seeds|--decoding"):
        plan_runs(seeds, decoding)
