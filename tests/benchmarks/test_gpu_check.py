"""benchmarks/gpu_check.py on the CPU: arguments, skip decisions, import probes, JSON, the CPU smoke run.

The CUDA figures themselves (memory, time, vLLM) need a GPU; everything that decides what runs and
how it is reported does not, and is held here.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_script(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )


# --- arguments ----------------------------------------------------------------------------------


def test_defaults_are_the_issue_sizes(gc):
    args = gc.parse_args([])
    assert args.checks == ("a", "b", "c", "d", "e", "f")
    assert (args.n, args.vocab, args.hidden) == (16384, 152064, 2048)
    assert (args.dtype, args.device, args.steps, args.out) == ("bf16", "cuda", 5, None)


def test_checks_are_a_canonical_subset(gc):
    assert gc.parse_args(["--checks", "c,a,a"]).checks == ("a", "c")
    assert gc.parse_args(["--checks", " b "]).checks == ("b",)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (
            ["--checks", "a,x"],
            "argument --checks: expected a comma-separated subset of a,b,c,d,e,f, got 'a,x'",
        ),
        (["--checks", ","], "argument --checks"),
        (["--n", "0"], "argument --n: expected a positive integer, got '0'"),
        (["--vocab", "many"], "argument --vocab: expected a positive integer, got 'many'"),
        (["--hidden", "-3"], "argument --hidden: expected a positive integer"),
        (["--steps", "0"], "argument --steps"),
        (["--warmup", "-1"], "argument --warmup: expected an integer >= 0"),
        (["--dtype", "int8"], "argument --dtype: invalid choice"),
        (["--device", "tpu"], "argument --device: invalid choice"),
        (["--device", "cpu", "--dtype", "fp16"], "argument --dtype: fp16 needs --device cuda"),
    ],
)
def test_bad_arguments_give_one_error_line(gc, capsys, argv, fragment):
    with pytest.raises(SystemExit) as exit_info:
        gc.parse_args(argv)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and fragment in errors[0]


def test_warmup_zero_is_allowed(gc):
    assert gc.parse_args(["--warmup", "0"]).warmup == 0


# --- skip decisions -----------------------------------------------------------------------------


def test_without_cuda_every_check_is_skipped(gc):
    to_run, skipped, with_liger = gc.plan(("a", "b", "c"), "cuda", False, None, None)
    assert to_run == [] and with_liger is False
    assert skipped == [{"check": c, "reason": "no CUDA device"} for c in ("a", "b", "c")]


def test_cpu_device_runs_only_check_a_without_liger(gc):
    to_run, skipped, with_liger = gc.plan(("a", "b", "c"), "cpu", False, None, None)
    assert to_run == ["a"] and with_liger is False
    assert [s["check"] for s in skipped] == ["b", "c", "a.liger"]
    assert all("CUDA" in s["reason"] for s in skipped)


def test_missing_imports_skip_only_what_needs_them(gc):
    to_run, skipped, with_liger = gc.plan(("a", "b", "c"), "cuda", True, "no liger", "no vllm")
    assert to_run == ["a", "b"] and with_liger is False
    assert {"check": "c", "reason": "no vllm"} in skipped
    assert {"check": "a.liger", "reason": "no liger"} in skipped


def test_everything_runs_when_cuda_and_imports_are_there(gc):
    assert gc.plan(("a", "b", "c"), "cuda", True, None, None) == (["a", "b", "c"], [], True)
    # Probe answers do not matter for checks that were not asked for.
    assert gc.plan(("b",), "cuda", True, "no liger", "no vllm") == (["b"], [], False)


# --- import probes ------------------------------------------------------------------------------


def test_probes_report_missing_modules(gc, monkeypatch):
    # A None entry in sys.modules makes `import` raise ModuleNotFoundError, whatever is installed.
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", None)
    monkeypatch.setitem(sys.modules, "vllm", None)
    cls, reason = gc.probe_liger()
    assert cls is None and reason.startswith("liger_kernel not importable: ModuleNotFoundError")
    assert gc.probe_vllm().startswith("vllm not importable: ModuleNotFoundError")


def test_probes_find_importable_modules(gc, monkeypatch):
    class FakeLoss:
        pass

    liger = types.ModuleType("liger_kernel")
    liger_transformers = types.ModuleType("liger_kernel.transformers")
    liger_transformers.LigerFusedLinearCrossEntropyLoss = FakeLoss
    liger.transformers = liger_transformers
    monkeypatch.setitem(sys.modules, "liger_kernel", liger)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", liger_transformers)
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    assert gc.probe_liger() == (FakeLoss, None)
    assert gc.probe_vllm() is None


# --- JSON and main ------------------------------------------------------------------------------


def test_main_without_cuda_prints_one_json_with_every_check_skipped(gc, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "sub" / "report.json"
    assert gc.main(["--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["results"] == {} and printed["errors"] == []
    assert printed["skipped"] == [{"check": c, "reason": "no CUDA device"} for c in "abcdef"]
    assert printed["config"]["n"] == 16384 and printed["config"]["dtype"] == "bf16"
    assert printed["environment"]["torch"] == torch.__version__


def test_oom_is_recorded_as_a_figure(gc, monkeypatch):
    import lco

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.27 GiB")

    monkeypatch.setattr(gc, "loss_step", out_of_memory)
    inp = gc._loss_inputs(torch, 4, 8, 2, torch.float32, "cpu")
    record = gc.measure_loss(torch, lco, "lco_kld", "naive", inp, "cpu", warmup=1, repeats=2)
    assert record == {"oom": True, "error": "CUDA out of memory. Tried to allocate 9.27 GiB", "steps_done": 0}


def test_cpu_smoke_run_of_check_a(gc, tmp_path):
    out = tmp_path / "a.json"
    argv = ["--device", "cpu", "--checks", "a", "--n", "64", "--vocab", "512", "--hidden", "32"]
    done = _run_script(*argv, "--dtype", "fp32", "--repeats", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report == json.loads(out.read_text())
    assert report["skipped"] == [
        {"check": "a.liger", "reason": "Liger-Kernel's Triton kernels need a CUDA device"}
    ]
    a = report["results"]["a"]
    assert (a["n"], a["vocab"], a["hidden"], a["dtype"]) == (64, 512, 32, "fp32")
    assert set(a["losses"]) == {"lco_kld", "lco_lch", "lco_mse", "ce"}
    for loss, row in a["losses"].items():
        fused, naive = row["fused"], row["naive"]
        for record in (fused, naive):
            assert record["oom"] is False and record["peak_mib"] is None  # no allocator counters on CPU
            assert len(record["times_s"]) == 2 and record["time_s"] > 0
        # The fused chunked loss and the naive one on full logits are the same quantity.
        assert fused["loss"] == pytest.approx(naive["loss"], rel=1e-5), loss
        assert row["time_ratio"] == pytest.approx(fused["time_s"] / naive["time_s"])
        assert row["loss_rel_diff"] < 1e-5
    # An independent value: the mean cross-entropy of the script's inputs (seed 0), by torch.
    inp = gc._loss_inputs(torch, 64, 512, 32, torch.float32, "cpu")
    expected = torch.nn.functional.cross_entropy(
        inp["hidden"].detach() @ inp["weight"].detach().T, inp["actions"]
    )
    assert a["losses"]["ce"]["fused"]["loss"] == pytest.approx(float(expected), rel=1e-5)
    # With sparse advantages only at the sampled token, LCO-MSE has a closed form (eqs. 7, 8, 11):
    # z* − z = A/β with A mean-centred over V, so ℓ_t = (1/V)·Σ_a (A_a/β)² = a_t²(V − 1)/(V² β²).
    a_t = inp["token_advantages"]
    v = 512
    mse = float((a_t**2).mean()) * (v - 1) / v**2 / gc.BETA**2
    assert a["losses"]["lco_mse"]["naive"]["loss"] == pytest.approx(mse, rel=1e-5)


def test_cpu_smoke_run_in_bf16_default_dtype(tmp_path):
    # The documented smoke command, bf16 as on the GPU: naive logits are rounded to bf16 before the
    # fp32 loss, the fused path computes them in fp32, so the values agree to bf16 precision only.
    done = _run_script("--device", "cpu", "--n", "64", "--vocab", "512", "--hidden", "32", "--repeats", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert [s["check"] for s in report["skipped"]] == ["b", "c", "d", "e", "f", "a.liger"]
    for loss, row in report["results"]["a"]["losses"].items():
        assert math.isfinite(row["fused"]["loss"])
        assert row["fused"]["loss"] == pytest.approx(row["naive"]["loss"], rel=5e-3), loss


@pytest.mark.slow
def test_trainer_steps_run_on_cpu_with_a_tiny_config(gc, tmp_path):
    # Check b's code path (models saved and loaded back, lco_kld + dpo_dense, step timing) at toy size;
    # the Qwen2-0.5B size and the CUDA memory figures are for the GPU machine.
    args = gc.parse_args(["--device", "cpu", "--dtype", "fp32", "--steps", "2", "--completion-length", "4"])
    policy = dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        vocab_size=300,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    reward = dict(policy, hidden_size=16, num_key_value_heads=2, tie_word_embeddings=False)
    record = gc.trainer_steps(args, use_vllm=False, policy=policy, reward=reward)
    assert record["use_vllm"] is False and record["steps"] == 2
    assert len(record["step_times_s"]) == 2 and record["median_step_s"] == record["step_times_s"][1]
    # Tied head: embeddings counted once. Qwen2 layer: q/k/v with bias, o, 3 MLP matrices, 2 norms.
    h, kv, inter, v = 32, 16, 64, 300
    layer = (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * inter + 2 * h
    assert record["policy_parameters"] == v * h + layer + h


def test_models_must_share_the_vocabulary(gc, tmp_path):
    with pytest.raises(ValueError, match="vocabulary"):
        gc.build_models(str(tmp_path), {"vocab_size": 300}, {"vocab_size": 200})


def test_policy_config_is_qwen2_0_5b_sized(gc):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    # Built on the meta device: shapes only, no memory. Qwen2-0.5B has 494,032,768 parameters
    # (tied embeddings), as its model card's "0.49B" says.
    with torch.device("meta"):
        model = Qwen2ForCausalLM(Qwen2Config(**gc.QWEN2_0_5B))
    assert sum(p.numel() for p in model.parameters()) == 494_032_768
    assert gc.REWARD_MODEL["vocab_size"] == gc.QWEN2_0_5B["vocab_size"]


def test_a_failing_worker_is_recorded_not_raised(gc):
    # The child rejects its arguments (fp16 on the CPU); the parent keeps the exit status and stderr.
    record = gc.run_worker_subprocess("b", ["--device", "cpu", "--dtype", "fp16"])
    assert record["error"] == "exit status 2"
    assert "fp16 needs --device cuda" in record["stderr_tail"]


def test_liger_column_is_wired_with_liger_argument_order(gc, monkeypatch):
    # A stand-in with Liger's call signature, loss(lin_weight, _input, target), computing plain CE;
    # swapped arguments would fail on the shapes. Run at toy size on the CPU through check a itself.
    class FakeLigerCE(torch.nn.Module):
        def forward(self, lin_weight, _input, target, bias=None):
            return torch.nn.functional.cross_entropy(_input @ lin_weight.T, target)

    liger = types.ModuleType("liger_kernel")
    liger_transformers = types.ModuleType("liger_kernel.transformers")
    liger_transformers.LigerFusedLinearCrossEntropyLoss = FakeLigerCE
    monkeypatch.setitem(sys.modules, "liger_kernel", liger)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", liger_transformers)
    args = gc.parse_args(
        ["--device", "cpu", "--dtype", "fp32", "--n", "16", "--vocab", "40", "--hidden", "8"]
    )
    losses = gc.check_losses(args, with_liger=True)["losses"]
    ce = losses["ce"]
    assert set(ce) >= {"fused", "liger", "naive"}
    assert ce["liger"]["loss"] == pytest.approx(ce["naive"]["loss"], rel=1e-6)
    for loss in ("lco_kld", "lco_lch", "lco_mse", "ce"):
        row = losses[loss]
        assert row["liger_time_ratio"] == pytest.approx(row["fused"]["time_s"] / ce["liger"]["time_s"])
        assert "liger" not in row or loss == "ce"
    assert "ce_time_ratio" not in ce and "ce_time_ratio" in losses["lco_kld"]


# --- checks d, e, f: LoRA, ZeRO-3, FSDP ------------------------------------------------------------


def test_plan_skips_lora_and_zero3_with_the_import_reason(gc):
    to_run, skipped, _ = gc.plan(
        tuple("bcdef"), "cuda", True, None, None, "peft missing", "deepspeed missing"
    )
    assert to_run == ["b", "c", "f"]
    assert skipped == [
        {"check": "d", "reason": "peft missing"},
        {"check": "e", "reason": "deepspeed missing"},
    ]


def test_each_sharded_check_runs_both_anchor_settings_in_its_own_process(gc):
    assert [name for name, _ in gc.CASES["e"]] == ["e_m0", "e_m1"]
    assert [s["anchor"] for _, s in gc.CASES["e"] + gc.CASES["f"]] == [0, 1, 0, 1]
    assert {s["shard"] for _, s in gc.CASES["e"]} == {"zero3"} and {s["shard"] for _, s in gc.CASES["f"]} == {
        "fsdp"
    }


def test_a_spent_budget_skips_the_remaining_trainer_checks(gc, monkeypatch, capsys):
    # CUDA "available", every worker instant; a budget of 1 s leaves < 30 s for each: all recorded as skipped
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gc, "probe_module", lambda name: None)
    monkeypatch.setattr(gc, "probe_vllm", lambda: None)
    monkeypatch.setattr(gc, "environment_info", lambda torch, device: {})
    monkeypatch.setattr(gc, "run_worker_subprocess", lambda *a, **k: pytest.fail("no worker may start"))
    assert gc.main(["--checks", "b,e", "--budget-s", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["check"] for s in report["skipped"]] == ["b", "e_m0", "e_m1"]
    assert all("time budget of 1 s" in s["reason"] for s in report["skipped"])


def test_a_hung_worker_is_killed_and_recorded(gc, monkeypatch, tmp_path):
    hang = tmp_path / "hang.py"
    hang.write_text("import time\ntime.sleep(30)\n")
    monkeypatch.setattr(gc.os.path, "abspath", lambda p: str(hang))  # the worker command runs this instead
    record = gc.run_worker_subprocess("b", [], timeout_s=1)
    assert record["error"] == "timed out after 1 s"


@pytest.mark.slow
def test_lora_trainer_steps_on_cpu_with_a_tiny_config(gc):
    pytest.importorskip("peft")
    args = gc.parse_args(["--device", "cpu", "--dtype", "fp32", "--steps", "2", "--completion-length", "4"])
    policy = dict(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
        vocab_size=300, max_position_embeddings=128, tie_word_embeddings=True,
    )  # fmt: skip
    reward = dict(policy, hidden_size=16, num_key_value_heads=2, tie_word_embeddings=False)
    record = gc.trainer_steps(args, use_vllm=False, policy=policy, reward=reward, peft=True)
    assert record["peft"] is True and record["steps"] == 2
    assert record["anchor"] == "adapters_disabled" and record["anchor_update_steps"] == 0
    # LoRA r = 16 on 7 projections of one layer: A [16, in] and B [out, 16] per projection
    h, kv, inter = 32, 16, 64
    shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, inter), (h, inter), (inter, h)]  # (in, out)
    assert record["trainable_parameters"] == sum(16 * (i + o) for i, o in shapes)
