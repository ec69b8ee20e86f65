import pytest

from lco.eval.answers import answers_match, extract_answer, is_correct, math_reward


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("so the answer is \\boxed{42}.", "42"),
        ("first \\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # the last box counts
        ("nested \\boxed{\\frac{\\sqrt{3}}{2}} done", "\\frac{\\sqrt{3}}{2}"),
        ("\\fbox{7}", "7"),
        ("\\boxed 9", "9"),
        ("no box: 3 apples then 1,000 pears", "1,000"),  # the final number
        ("it is -2.5", "-2.5"),
        ("ratio 3/4", "3/4"),
        ("cut off \\boxed{\\frac{1}{2", "2"),  # an unclosed box (truncated): the last number instead
    ],
)
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


def test_extract_answer_none_without_box_or_number():
    assert extract_answer("I do not know.") is None


@pytest.mark.parametrize(
    ("predicted", "reference"),
    [
        ("\\frac{1}{2}", "0.5"),
        ("0.5", "\\frac{1}{2}"),
        ("\\dfrac12", "\\frac{1}{2}"),
        ("1/2", "0.5"),
        ("1,000", "1000"),
        ("27", "27.0"),
        ("x^2+1", "1+x^2"),
        ("\\frac{\\sqrt2}{2}", "\\sqrt{2}/2"),
    ],
)
def test_math_verify_equivalences(predicted, reference):
    assert answers_match(predicted, reference)


@pytest.mark.parametrize(("predicted", "reference"), [("\\frac{1}{3}", "0.5"), ("3", "2"), ("x+1", "x-1")])
def test_math_verify_rejects_different_answers(predicted, reference):
    assert not answers_match(predicted, reference)


def test_is_correct_and_rule_reward_use_the_final_answer():
    completion = "Half of one is 0.4... no: \\boxed{\\frac{1}{2}}"
    assert is_correct(completion, "0.5")
    assert math_reward(completion, "0.5") == 1.0
    assert math_reward(completion, "0.4") == -1.0
    assert math_reward("no answer at all", "0.5") == -1.0


def test_the_rule_reward_works_off_the_main_thread():
    # math-verify's own timeout needs SIGALRM (main thread only); a trainer may score in a worker thread
    import threading

    out = []
    worker = threading.Thread(target=lambda: out.append(math_reward("\\boxed{\\frac12}", "0.5")))
    worker.start()
    worker.join()
    assert out == [1.0]
