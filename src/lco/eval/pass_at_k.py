"""The unbiased pass@k estimator (Chen et al., 2021, "Evaluating Large Language Models Trained on Code").

With n samples for a problem of which c are correct, the probability that at least one of k samples
drawn without replacement from those n is correct is

    pass@k = 1 − C(n − c, k) / C(n, k)

The binomial coefficients overflow floats for realistic n, so we use the equivalent product

    C(n − c, k) / C(n, k) = ∏_{i = n − c + 1}^{n} (1 − k / i)

which only multiplies numbers in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples, ``c`` of them correct."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if n <= 0:
        raise ValueError(f"n (samples per problem) must be positive, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c (correct samples) must be in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}] (pass@k needs at least k samples per problem), got {k}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def mean_pass_at_k(num_correct: Sequence[int], n: int, k: int) -> float:
    """pass@k averaged over problems; ``num_correct[j]`` is c for problem j, each with ``n`` samples."""
    if len(num_correct) == 0:
        raise ValueError("mean_pass_at_k needs at least one problem")
    return sum(pass_at_k(n, int(c), k) for c in num_correct) / len(num_correct)
