import itertools
import math

import pytest

from lco.eval.pass_at_k import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize("n", [1, 2, 5, 10, 16, 40])
def test_pass_at_k_equals_the_binomial_closed_form(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            expected = 1.0 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)


def test_pass_at_k_equals_enumerating_every_k_subset():
    samples = [True, False, False, True, False, False]  # n = 6, c = 2
    for k in range(1, 7):
        subsets = list(itertools.combinations(samples, k))
        assert pass_at_k(6, 2, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_pass_at_1_is_the_fraction_correct_and_edges_are_exact():
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)
    assert pass_at_k(8, 0, 4) == 0.0
    assert pass_at_k(8, 5, 4) == 1.0  # n − c < k: every 4-subset holds a correct sample


def test_pass_at_k_is_stable_where_the_binomials_overflow_floats():
    value = pass_at_k(2000, 3, 1000)
    assert value == pytest.approx(1.0 - math.comb(1997, 1000) / math.comb(2000, 1000), rel=1e-12)
    assert 0.0 <= value <= 1.0


def test_mean_pass_at_k_averages_over_problems():
    assert mean_pass_at_k([0, 2, 4], n=4, k=2) == pytest.approx((0.0 + (1 - 1 / 6) + 1.0) / 3)


@pytest.mark.parametrize(
    ("n", "c", "k", "word"), [(4, 1, 5, "k"), (4, 5, 1, "c"), (0, 0, 1, "n"), (4, 1, 0, "k")]
)
def test_pass_at_k_rejects_impossible_arguments(n, c, k, word):
    with pytest.raises(ValueError, match=word):
        pass_at_k(n, c, k)
