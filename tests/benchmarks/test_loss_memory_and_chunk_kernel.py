"""benchmarks/loss_memory.py's size selection, benchmarks/chunk_kernel.py and benchmarks/fused_vs_ce.py on the CPU (no timing asserted)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def loss_memory():
    return _load("loss_memory")


@pytest.fixture(scope="module")
def chunk_kernel():
    return _load("chunk_kernel")


def test_sizes_parse_and_select_the_groups(loss_memory):
    sizes = loss_memory._parse_sizes("2048x32000,8192X152064")
    assert sizes == [(2048, 32000), (8192, 152064)]
    groups = list(loss_memory._groups(False, ["ce:sparse"], sizes))
    assert [(n, v, h) for n, v, h, _ in groups] == [(2048, 32000, 1024), (8192, 152064, 1024)]
    assert all(cases == [("ce", "sparse")] for *_, cases in groups)
    assert [(n, v) for n, v, _, _ in loss_memory._groups(False)] == list(loss_memory.SIZES)


@pytest.mark.parametrize("bad", ["", "2048", "2048x0", "ax3", "2048x32000,"])
def test_bad_sizes_are_an_argparse_error(loss_memory, bad):
    with pytest.raises(argparse.ArgumentTypeError, match="NxV"):
        loss_memory._parse_sizes(bad)


def test_chunk_kernel_rejects_non_positive_sizes(chunk_kernel, capsys):
    with pytest.raises(SystemExit):
        chunk_kernel.main(["--chunk", "0"])
    assert "must be positive" in capsys.readouterr().err


def test_chunk_kernel_measures_the_eager_and_compiled_kernels_alike(chunk_kernel, monkeypatch):
    """With compiling stubbed to the eager kernel (the real compile is tested in
    tests/objectives), the record's fields are there and the two kernels agree."""
    import torch

    from lco.objectives import compiled

    monkeypatch.setattr(compiled, "_COMPILED", {})
    monkeypatch.setattr(compiled.torch, "compile", lambda fn, **kw: fn)
    record = chunk_kernel.measure("lco_kld", 8, 50, 2)
    assert record["compile_failure"] is None
    assert record["max_value_diff"] == 0.0 and record["max_grad_diff"] == 0.0
    assert record["eager_s"] > 0 and record["compiled_s"] > 0 and record["threads"] == torch.get_num_threads()


@pytest.fixture(scope="module")
def fused_vs_ce():
    return _load("fused_vs_ce")


def test_fused_vs_ce_ratios_are_of_the_medians_of_interleaved_rounds(fused_vs_ce):
    *records, ratios = fused_vs_ce.measure(40, 50, 8, repeats=3, chunk_size=16)
    assert [r["loss"] for r in records] == list(fused_vs_ce.LOSSES)
    ce = records[0]
    for r in records:
        assert len(r["wall_samples"]) == 3 and r["wall_s"] == sorted(r["wall_samples"])[1]
        assert r["chunk"] == 16 and r["n"] == 40
    for r in records[1:]:
        assert ratios["ce_time_ratio"][r["loss"]] == pytest.approx(r["wall_s"] / ce["wall_s"], rel=2e-3)
        assert ratios["ce_cpu_ratio"][r["loss"]] == pytest.approx(r["cpu_s"] / ce["cpu_s"], rel=2e-3)


def test_fused_vs_ce_rejects_non_positive_sizes(fused_vs_ce, capsys):
    with pytest.raises(SystemExit):
        fused_vs_ce.main(["--tokens", "0"])
    assert "must be positive" in capsys.readouterr().err
