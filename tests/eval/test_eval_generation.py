import pytest
import torch

from lco.eval.generation import DecodingConfig, TransformersGenerator, build_generator, encode_prompts
from lco.eval.policies import load_policy

PROMPTS = ["What is 2 + 3?", "1/2", "Please reason step by step"]


def _greedy_by_hand(model, prompt, steps, eos):
    seq, new = list(prompt), []
    with torch.no_grad():
        for _ in range(steps):
            token = int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
            if token == eos:
                break
            seq.append(token)
            new.append(token)
    return new


def test_batched_greedy_with_left_padding_equals_unbatched_argmax(models, tokenizer):
    policy = load_policy("checkpoint", models["old"])
    prompt_ids = encode_prompts(tokenizer, PROMPTS, "off")
    out = TransformersGenerator(policy, batch_size=3).generate(
        prompt_ids, DecodingConfig(greedy=True, max_new_tokens=6), seed=0
    )
    for prompt, completions in zip(prompt_ids, out, strict=True):
        assert len(completions) == 1
        expected = _greedy_by_hand(policy.model, prompt, 6, tokenizer.eos_token_id)
        assert completions[0].text == tokenizer.decode(expected)
        assert completions[0].num_tokens == len(expected)
        assert completions[0].stopped == (len(expected) < 6)


def test_sampling_is_reproducible_from_the_seed(models, tokenizer):
    gen = TransformersGenerator(load_policy("checkpoint", models["old"]), batch_size=2)
    prompt_ids = encode_prompts(tokenizer, PROMPTS, "off")
    decoding = DecodingConfig(temperature=1.0, top_p=0.95, max_new_tokens=8, num_samples=2)
    first = gen.generate(prompt_ids, decoding, seed=7)
    assert [len(c) for c in first] == [2, 2, 2]
    assert gen.generate(prompt_ids, decoding, seed=7) == first
    assert gen.generate(prompt_ids, decoding, seed=8) != first


def test_the_checkpoint_sampling_defaults_are_not_inherited(models, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(models["old"])
    model.generation_config = GenerationConfig(
        top_k=1, repetition_penalty=5.0, eos_token_id=1, do_sample=True
    )
    model.save_pretrained(tmp_path / "with_defaults")
    tokenizer.save_pretrained(tmp_path / "with_defaults")
    gen = TransformersGenerator(load_policy("checkpoint", str(tmp_path / "with_defaults")))
    assert gen.policy.model.generation_config.top_k is None
    assert gen.policy.model.generation_config.eos_token_id == 1  # special tokens are kept
    config = gen._generation_config(DecodingConfig())
    assert (config.temperature, config.top_p, config.top_k, config.repetition_penalty) == (0.6, 0.95, 0, 1.0)


def test_chat_template_wraps_the_prompt_as_a_user_turn(models):
    policy = load_policy("checkpoint", models["chat"])
    ids = encode_prompts(policy.tokenizer, ["hi"], "auto")[0]
    assert policy.tokenizer.decode(ids) == "<|user|>hi\n<|assistant|>"
    with pytest.raises(ValueError, match="--chat-template on: the policy's tokenizer has no chat template"):
        encode_prompts(load_policy("checkpoint", models["old"]).tokenizer, ["hi"], "on")


def test_rm_policy_decodes_from_the_reward_model(models):
    policy = load_policy("rm", reward_model=models["dpo"])
    assert policy.name_or_path == models["dpo"] and policy.pistar is None


def test_a_model_that_cannot_be_loaded_is_one_clear_error(tmp_path, tokenizer):
    with pytest.raises(ValueError, match=r"--model '.*nowhere' .*could not"):
        load_policy("checkpoint", str(tmp_path / "nowhere"))
    tokenizer.save_pretrained(tmp_path / "tokenizer_only")  # a tokenizer but no weights
    with pytest.raises(ValueError, match=r"--model '.*tokenizer_only' could not be loaded as a causal LM"):
        load_policy("checkpoint", str(tmp_path / "tokenizer_only"))


def test_vllm_backend_fails_loudly_when_absent_or_for_pistar(monkeypatch):
    import lco.eval.generation as generation

    with pytest.raises(ValueError, match="--backend vllm cannot decode --policy pistar"):
        build_generator("pistar", "m", "d", "r", backend="vllm")
    monkeypatch.setattr(generation, "vllm_available", lambda: False)
    with pytest.raises(ValueError, match=r"vLLM is not installed \(pip install 'lco\[vllm\]'"):
        build_generator("checkpoint", "m", backend="vllm")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(temperature=0.0), "--temperature"),
        (dict(top_p=1.5), "--top-p"),
        (dict(max_new_tokens=0), "--max-new-tokens"),
        (dict(num_samples=0), "--samples-per-seed"),
    ],
)
def test_decoding_settings_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DecodingConfig(**kwargs)
