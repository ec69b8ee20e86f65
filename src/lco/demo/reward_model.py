"""Stage 2 — the DPO reward model φ_DPO (§5, "Training Details"; Zhong et al., 2024).

1. Sample completions of train prompts from the warmed-up policy π_0 (and, if asked, from φ_ref).
2. Label them with the verifier (math-verify): per prompt, a correct completion is *chosen* and an
   incorrect one *rejected* — the paper's pairs are labelled the same way, by correctness. The
   reference solution may count as one more correct completion.
3. Train φ_DPO from φ_ref (the more trained warm-up checkpoint) with TRL's ``DPOTrainer``, with the
   loss types of :class:`~lco.demo.settings.RewardModelSettings` (by default DPO + NLL on the chosen).
4. The gate (:func:`measure_gate`): is φ_DPO a reward model of the paper's kind — greedy test pass@1
   φ_DPO > φ_ref and π* > π_0, the ordering of Table 1 — before any RL run uses it.

Output (on disk): ``pairs.jsonl``, ``phi_dpo/`` (a causal LM like any other), ``rm.json`` (pair
counts, held-out preference accuracy, training log); the gate's stage writes ``gate.json``. φ_ref
itself is the reference warm-up's model.

The dense advantage of LCO is then A(s_t, a) = log φ_DPO(a|s_t) − log φ_ref(a|s_t) (eq. 13);
:class:`lco.demo.runtime.DPOSequenceReward` sums it over a completion for the methods that want one
scalar reward.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from ..eval.answers import is_correct
from ..tasks.arithmetic import generate_splits
from .runtime import greedy_pass_at_one, on_accelerator, progress_callback
from .settings import RewardModelSettings, TaskSettings

HELD_OUT_FRACTION = 0.1  # of the pairs, to measure φ_DPO's preference accuracy


PAIR_SOURCES = ("policy", "reference")  # whose samples are labelled: π_0's, φ_ref's


def sample_completions(
    model_path: str, problems, settings: RewardModelSettings, seed: int = 0
) -> list[list[str]]:
    """``settings.samples_per_prompt`` completions of each problem's prompt, sampled from a checkpoint."""
    from ..eval.generation import DecodingConfig, TransformersGenerator, encode_prompts
    from ..eval.policies import load_policy

    policy = load_policy("checkpoint", model_path, device="auto", dtype="float32")
    generator = TransformersGenerator(policy, batch_size=256)
    decoding = DecodingConfig(
        temperature=settings.sample_temperature,
        top_p=1.0,
        max_new_tokens=16,
        num_samples=settings.samples_per_prompt,
    )
    prompt_ids = encode_prompts(policy.tokenizer, [p.prompt for p in problems], chat_template="off")
    samples = generator.generate(prompt_ids, decoding, seed=seed, desc="sampling pairs")
    return [[c.text for c in completions] for completions in samples]


def label_pairs(
    problems, samples: list[list[str]], max_pairs: int, reference_chosen: bool, rng: random.Random
) -> list[dict]:
    """Verifier-labelled ``{"prompt", "chosen", "rejected"}`` pairs: per problem, up to ``max_pairs``
    (correct, incorrect) combinations of its distinct completions. With ``reference_chosen`` the
    reference solution counts as one more correct completion, so that a prompt whose samples are all
    wrong — the prompts the policy most needs to learn — still yields pairs."""
    pairs = []
    for problem, texts in zip(problems, samples, strict=True):
        distinct = list(dict.fromkeys([*texts, problem.solution] if reference_chosen else texts))
        good = [t for t in distinct if is_correct(t, str(problem.answer))]
        bad = [t for t in distinct if t not in good]
        combos = [(g, b) for g in good for b in bad]
        rng.shuffle(combos)
        for chosen, rejected in combos[:max_pairs]:
            pairs.append({"prompt": problem.prompt, "chosen": chosen, "rejected": rejected})
    return pairs


def sample_preference_pairs(
    model_paths: dict[str, str], task: TaskSettings, settings: RewardModelSettings, seed: int = 0
) -> tuple[list[dict], dict]:
    """(pairs, stats): verifier-labelled pairs from the samples of the models in
    ``settings.pair_sources`` (``model_paths`` maps a source name to its checkpoint)."""
    for source in settings.pair_sources:
        if source not in PAIR_SOURCES:
            raise ValueError(f"pair_sources must name {' or '.join(PAIR_SOURCES)}, got {source!r}")
    problems = generate_splits(**vars(task))["train"][: settings.pair_prompts]
    samples: list[list[str]] = [[] for _ in problems]
    stats: dict = {"prompts": len(problems), "sample_accuracy_by_source": {}}
    for source in settings.pair_sources:
        drawn = sample_completions(model_paths[source], problems, settings, seed)
        correct = sum(
            is_correct(t, str(p.answer)) for p, texts in zip(problems, drawn, strict=True) for t in texts
        )
        stats["sample_accuracy_by_source"][source] = correct / max(sum(len(t) for t in drawn), 1)
        for row, texts in zip(samples, drawn, strict=True):
            row.extend(texts)
    stats["samples"] = sum(len(t) for t in samples)
    # the report's "sample accuracy of the warm-up policy": π_0's when it was sampled
    by_source = stats["sample_accuracy_by_source"]
    stats["sample_accuracy"] = by_source.get("policy", next(iter(by_source.values())))
    pairs = label_pairs(
        problems, samples, settings.max_pairs_per_prompt, settings.reference_chosen, random.Random(seed)
    )
    stats["pairs"] = len(pairs)
    return pairs, stats


def train_reward_model(
    out_dir: Path,
    policy_path: str,
    reference_path: str,
    task: TaskSettings,
    settings: RewardModelSettings,
    progress=None,
) -> Path:
    """Sample and label pairs, then train φ_DPO from φ_ref with ``DPOTrainer``; writes the stage's files."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    out_dir = Path(out_dir)
    pairs, stats = sample_preference_pairs(
        {"policy": policy_path, "reference": reference_path}, task, settings
    )
    if len(pairs) < 2:  # one to train on, one held out
        raise RuntimeError(
            f"only {len(pairs)} preference pairs: the warmed-up policy's samples are almost all correct or "
            "all wrong, so the verifier cannot form chosen/rejected pairs; change the warm-up length"
        )
    with open(out_dir / "pairs.jsonl", "w") as f:
        for pair in pairs:
            f.write(json.dumps(pair) + "\n")
    held_out = max(1, int(len(pairs) * HELD_OUT_FRACTION))
    train, evaluation = Dataset.from_list(pairs[held_out:]), Dataset.from_list(pairs[:held_out])

    model = AutoModelForCausalLM.from_pretrained(reference_path)
    tokenizer = AutoTokenizer.from_pretrained(reference_path)
    args = DPOConfig(
        output_dir=str(out_dir / "trainer"),
        beta=settings.beta,
        loss_type=list(settings.loss_type),
        loss_weights=list(settings.loss_weights) if settings.loss_weights else None,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        max_length=64,
        logging_steps=5,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
        use_cpu=not on_accelerator(),
        bf16=False,
        gradient_checkpointing=False,
    )
    callbacks = [progress_callback(progress)] if progress is not None else []
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.train()
    after = trainer.evaluate()
    trainer.save_model(str(out_dir / "phi_dpo"))
    tokenizer.save_pretrained(out_dir / "phi_dpo")
    shutil.rmtree(out_dir / "trainer", ignore_errors=True)
    stats["dense_advantage"] = dense_advantage_check(str(out_dir / "phi_dpo"), reference_path, task)
    stats.update(
        held_out_pairs=held_out,
        held_out_accuracy=after.get("eval_rewards/accuracies"),
        held_out_margin=after.get("eval_rewards/margins"),
        log_history=trainer.state.log_history,
    )
    (out_dir / "rm.json").write_text(json.dumps(stats, indent=1))
    return out_dir / "phi_dpo"


def dense_advantage_check(dpo_path: str, ref_path: str, task: TaskSettings, problems: int = 100) -> dict:
    """Does the dense advantage A(s_t, ·) = log φ_DPO − log φ_ref (eq. 13) point at the right token?

    Along the reference solutions (``\\boxed{answer}`` + end of sequence) of validation problems: how
    often argmax_a A(s_t, a) is the correct next token, and A of the correct token (after the
    per-step mean normalisation the trainer applies). Iterating π ← π·exp(A/β), as LCO does with
    π_old = the current policy, drives the policy towards argmax_a A wherever A stays the same.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..advantages import dpo_advantages, normalize_advantages

    tokenizer = AutoTokenizer.from_pretrained(ref_path)
    dpo = AutoModelForCausalLM.from_pretrained(dpo_path).eval()
    ref = AutoModelForCausalLM.from_pretrained(ref_path).eval()
    hits, correct_adv, max_adv, positions = 0, 0.0, 0.0, 0
    for problem in generate_splits(**vars(task))["validation"][:problems]:
        start = len(tokenizer(problem.prompt)["input_ids"])
        ids = tokenizer(problem.prompt + problem.solution)["input_ids"] + [tokenizer.eos_token_id]
        x = torch.tensor([ids])
        with torch.no_grad():
            adv = normalize_advantages(
                dpo_advantages(dpo(input_ids=x).logits[0], ref(input_ids=x).logits[0]), "mean"
            )
        for t in range(start - 1, len(ids) - 1):  # the positions that predict the completion's tokens
            target = ids[t + 1]
            hits += int(adv[t].argmax() == target)
            correct_adv += float(adv[t, target])
            max_adv += float(adv[t].max())
            positions += 1
    return {
        "problems": problems,
        "positions": positions,
        "argmax_is_correct_token": hits / positions,
        "mean_advantage_of_correct_token": correct_adv / positions,
        "mean_max_advantage": max_adv / positions,
    }


GATE_MODELS = ("warmup", "phi_ref", "phi_dpo", "pistar")


def reward_model_gate(warmup: float, phi_ref: float, phi_dpo: float, pistar: float) -> dict:
    """Is φ_DPO a reward model of the paper's kind? Table 1 orders φ_DPO > π* > SFT: DPO improves
    on its reference, and π* (eq. 6 with the eq. 13 advantage) improves on the policy it tilts.

    Takes the greedy test pass@1 of π_0 (``warmup``), φ_ref, φ_DPO and π*(β) around π_0; ``met`` is
    φ_DPO > φ_ref and π* > π_0. When it is not met, the dense advantage log φ_DPO − log φ_ref does
    not point towards better answers, and the LCO rows that use it test LCO on a failed reward model.
    """
    values = {"warmup": warmup, "phi_ref": phi_ref, "phi_dpo": phi_dpo, "pistar": pistar}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a pass@1 in [0, 1], got {value!r}")
    return {**{k: float(v) for k, v in values.items()}, "met": phi_dpo > phi_ref and pistar > warmup}


def measure_gate(
    out_dir: Path,
    policy_path: str,
    reference_path: str,
    dpo_path: str,
    task: TaskSettings,
    problems: int,
    beta: float,
    progress=None,
) -> Path:
    """Greedy pass@1 of π_0, φ_ref, φ_DPO and π*(β) around π_0 on the first ``problems`` test
    problems, and the gate's verdict (:func:`reward_model_gate`); writes ``gate.json``."""
    policies = {
        "warmup": {"kind": "checkpoint", "model": policy_path},
        "phi_ref": {"kind": "checkpoint", "model": reference_path},
        "phi_dpo": {"kind": "checkpoint", "model": dpo_path},
        "pistar": {
            "kind": "pistar",
            "model": policy_path,
            "reward_model": dpo_path,
            "ref_model": reference_path,
            "beta": beta,
        },
    }
    accuracy = {}
    for name in GATE_MODELS:
        accuracy[name] = greedy_pass_at_one(policies[name], task, problems)
        if progress is not None:
            progress(1)
    gate = {**reward_model_gate(**accuracy), "test_problems": problems, "pistar_beta": beta}
    (Path(out_dir) / "gate.json").write_text(json.dumps(gate, indent=1))
    return Path(out_dir) / "gate.json"


def dpo_steps(settings: RewardModelSettings, expected_pairs: int) -> int:
    """Roughly how many optimizer steps DPO will take (for the progress bar only)."""
    train_pairs = expected_pairs - max(1, int(expected_pairs * HELD_OUT_FRACTION))
    return max(1, -(-train_pairs // settings.batch_size) * settings.epochs)
