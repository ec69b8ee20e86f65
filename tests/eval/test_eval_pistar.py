"""π* decoding (eq. 6): the LogitsProcessor against softmax(z_old + A/β) computed by hand."""

import pytest
import torch

from lco.eval.generation import DecodingConfig, TransformersGenerator, encode_prompts
from lco.eval.pistar import PiStarLogitsProcessor
from lco.eval.policies import load_policy


def _last_logits(model, ids):
    """Logits after the unpadded prefix ``ids``, by a full forward pass (no cache, no padding)."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def _hand_log_pistar(pistar, old_model, prefix, beta, normalize):
    z_old = _last_logits(old_model, prefix)
    adv = torch.log_softmax(_last_logits(pistar.dpo_model, prefix), -1) - torch.log_softmax(
        _last_logits(pistar.ref_model, prefix), -1
    )
    if normalize != "none":
        adv = adv - adv.mean()
    if normalize == "mean_std":
        adv = adv / (adv.std(unbiased=False) + 1e-6)
    return z_old, torch.log_softmax(z_old + adv / beta, -1)


class RecordingPiStar(PiStarLogitsProcessor):
    def __call__(self, input_ids, scores):
        out = super().__call__(input_ids, scores)
        self.calls.append((input_ids.clone(), scores.clone(), out.clone()))
        return out


@pytest.mark.parametrize(("beta", "normalize"), [(0.5, "mean"), (2.0, "mean_std")])
def test_processor_output_is_log_softmax_of_z_old_plus_advantage_over_beta(
    models, tokenizer, beta, normalize
):
    policy = load_policy(
        "pistar", models["old"], models["dpo"], models["ref"], beta=beta, normalize=normalize
    )
    pistar = RecordingPiStar(policy.pistar.dpo_model, policy.pistar.ref_model, beta, normalize)
    pistar.calls = []
    policy.pistar = pistar
    prompts = ["What is 2 + 3?", "1/2"]  # different lengths: the batch is left-padded
    prompt_ids = encode_prompts(tokenizer, prompts, "off")
    TransformersGenerator(policy, batch_size=2).generate(prompt_ids, DecodingConfig(max_new_tokens=5), seed=0)

    assert len(pistar.calls) == 5
    width = max(len(p) for p in prompt_ids)
    # the generator puts the longest prompt first
    order = sorted(range(2), key=lambda i: -len(prompt_ids[i]))
    for input_ids, scores, log_pistar in pistar.calls:
        for row, i in enumerate(order):
            prefix = input_ids[row, width - len(prompt_ids[i]) :].tolist()
            z_old, expected = _hand_log_pistar(pistar, policy.model, prefix, beta, normalize)
            torch.testing.assert_close(scores[row], z_old, atol=1e-4, rtol=1e-4)  # generate's z_old
            torch.testing.assert_close(log_pistar[row], expected, atol=1e-4, rtol=1e-4)
            # the advantage actually moves the distribution (the test would be vacuous otherwise)
            assert (expected - torch.log_softmax(z_old, -1)).abs().max() > 0.1


def test_pistar_sampling_equals_sampling_from_the_hand_computed_distribution(models, tokenizer):
    beta, temperature, steps = 1.0, 0.7, 8
    policy = load_policy("pistar", models["old"], models["dpo"], models["ref"], beta=beta)
    prompt = encode_prompts(tokenizer, ["What is 2 + 3?"], "off")[0]
    decoding = DecodingConfig(temperature=temperature, top_p=1.0, max_new_tokens=steps)
    completion = TransformersGenerator(policy).generate([prompt], decoding, seed=1234)[0][0]

    torch.manual_seed(1234)
    seq, new = list(prompt), []
    for _ in range(steps):
        _, log_pistar = _hand_log_pistar(policy.pistar, policy.model, seq, beta, "mean")
        token = int(torch.multinomial(torch.softmax(log_pistar / temperature, -1)[None], 1))
        if token == tokenizer.eos_token_id:
            break
        seq.append(token)
        new.append(token)
    assert completion.num_tokens == len(new) > 0
    assert completion.text == tokenizer.decode(new)


def test_pistar_with_a_reward_model_of_another_vocabulary_is_refused(models):
    with pytest.raises(ValueError, match="--reward-model and --model have different vocabularies"):
        load_policy("pistar", models["old"], models["other_vocab"], models["ref"], beta=1.0)


def test_pistar_with_a_different_logits_size_is_refused(models, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    padded = AutoModelForCausalLM.from_pretrained(models["ref"])
    padded.resize_token_embeddings(len(tokenizer) + 8)  # a padded embedding, same tokenizer
    padded.save_pretrained(tmp_path / "padded")
    tokenizer.save_pretrained(tmp_path / "padded")
    with pytest.raises(ValueError, match=r"--ref-model produces \d+ logits per token but --model produces"):
        load_policy("pistar", models["old"], models["dpo"], str(tmp_path / "padded"), beta=1.0)


def test_processor_must_be_told_the_prompt_mask():
    processor = PiStarLogitsProcessor(dpo_model=None, ref_model=None, beta=1.0)
    with pytest.raises(RuntimeError, match=r"begin\(attention_mask\)"):
        processor(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 10))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(model="m", reward_model="d"), "missing: --ref-model"),
        (dict(model="m", reward_model="d", ref_model="r", beta=0.0), "beta must be a positive"),
    ],
)
def test_pistar_arguments_are_checked_before_loading(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_policy("pistar", **kwargs)
