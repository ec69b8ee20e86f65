import pytest
import torch

from lco.eval.reward_models import SequenceScorer, parse_named_paths, rm_metrics

PROMPTS = ["What is 2 + 3?", "Say hi", "1/2"]
COMPLETIONS = ["5", "Hi! How are you doing today?", "The answer is \\boxed{0.5}"]


def _direct_scores(scorer):
    scores = []
    with torch.no_grad():
        for p, c in zip(PROMPTS, COMPLETIONS, strict=True):
            logits = scorer.model(**scorer.tokenizer(p, c, return_tensors="pt")).logits[0].float()
            scores.append(float(logits[0]) if scorer.num_labels == 1 else float(torch.softmax(logits, -1)[1]))
    return scores


@pytest.mark.parametrize("name", ["rm_relevance", "rm_factuality"])
def test_scores_equal_unpadded_forward_passes_whatever_the_batch(models, name):
    scorer = SequenceScorer(name, models[name], torch.device("cpu"), batch_size=3)
    assert scorer.input_format == "pair"  # the tokenizer has no chat template
    expected = _direct_scores(scorer)
    assert scorer.score(PROMPTS, COMPLETIONS) == pytest.approx(expected, abs=1e-5)
    scorer.batch_size = 1
    assert scorer.score(PROMPTS, COMPLETIONS) == pytest.approx(expected, abs=1e-5)
    if name == "rm_factuality":  # two labels: the score is P(label 1)
        assert all(0.0 < s < 1.0 for s in expected)


def test_a_classifier_with_three_labels_is_refused(models):
    with pytest.raises(ValueError, match="has 3 output labels; a reward model must have 1"):
        SequenceScorer("x", models["rm_three_labels"], torch.device("cpu"))


def test_a_missing_reward_model_is_one_clear_error(tmp_path):
    with pytest.raises(
        ValueError, match=r"--score-model rel=.*could not be loaded as a sequence-classification"
    ):
        SequenceScorer("rel", str(tmp_path / "nowhere"), torch.device("cpu"))


def test_rm_metrics_report_each_model_and_their_average():
    metrics = rm_metrics({"relevance": [0.2, 0.4], "factuality": [1.0, 0.0]})
    assert metrics == pytest.approx({"relevance": 0.3, "factuality": 0.5, "average": 0.4})


def test_named_paths():
    assert parse_named_paths(["rel=/m/a", "/models/fact/"], "--score-model") == [
        ("rel", "/m/a"),
        ("fact", "/models/fact/"),
    ]
    with pytest.raises(ValueError, match="distinct"):
        parse_named_paths(["a=x", "a=y"], "--score-model")
