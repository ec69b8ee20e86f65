import importlib.machinery
import importlib.util
import sys
import types

import pytest

from lco.eval import mc


def test_without_lm_eval_the_error_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a)
    )
    with pytest.raises(
        ValueError, match=r"--suite mc delegates to lm-eval-harness.*pip install 'lco\[eval\]'"
    ):
        mc.require_lm_eval()


def test_delegates_to_simple_evaluate_with_the_seed_and_flattens_metrics(monkeypatch):
    calls = []

    def simple_evaluate(model, model_args, tasks, num_fewshot, batch_size, device, limit, random_seed=0,
                        numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0):  # fmt: skip
        calls.append(locals())
        return {
            "results": {
                "mmlu": {"acc,none": 0.61, "acc_stderr,none": 0.01, "alias": "mmlu"},
                "arc_easy": {"acc,none": 0.7, "acc_norm,none": 0.72, "exact_match,strict-match": 0.5},
            }
        }

    fake = types.ModuleType("lm_eval")
    fake.__spec__ = importlib.machinery.ModuleSpec("lm_eval", None)
    fake.simple_evaluate = simple_evaluate
    monkeypatch.setitem(sys.modules, "lm_eval", fake)
    metrics = mc.run_lm_eval("/ckpt", ["mmlu", "arc_easy"], seed=3, num_fewshot=5, dtype="bfloat16")
    assert metrics == {
        "mmlu/acc": 0.61,
        "arc_easy/acc": 0.7,
        "arc_easy/acc_norm": 0.72,
        "arc_easy/exact_match[strict-match]": 0.5,
    }
    call = calls[0]
    assert call["model"] == "hf" and call["model_args"] == "pretrained=/ckpt,dtype=bfloat16"
    assert call["tasks"] == ["mmlu", "arc_easy"] and call["num_fewshot"] == 5
    assert call["random_seed"] == call["fewshot_random_seed"] == 3
