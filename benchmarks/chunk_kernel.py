"""Per-chunk LCO kernel, eager against ``torch.compile``: compile time and steady state apart.

Times ``LCO_LOSSES[loss].value_and_grad(z, z*)`` on one ``[chunk, V]`` block (whole vocabulary,
fp32) — the elementwise part of a fused chunk, without its matmuls — through the eager kernel
and through :class:`lco.objectives.compiled.CompiledKernel`. ``compile_s`` is the wall time of the
first compiled call (the compile plus one run) and ``recompile_s`` of the first call at a shorter
chunk (the last chunk of a step, after which the token axis is dynamic); ``eager_s`` /
``compiled_s`` are medians over ``--repeats`` calls after those. Prints one JSON record per loss.

    python benchmarks/chunk_kernel.py --chunk 256 --vocab 32000 --repeats 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def _median_time(fn, z, z_star, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        target = z_star.clone()  # value_and_grad writes into z*
        t0 = time.perf_counter()
        fn(z, target)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(loss: str, chunk: int, vocab: int, repeats: int, device: str = "cpu") -> dict:
    import torch

    from lco.objectives import LCO_LOSSES
    from lco.objectives.compiled import CompiledKernel

    g = torch.Generator().manual_seed(0)
    z = torch.randn(chunk, vocab, generator=g).to(device)
    z_star = (z + 0.3 * torch.randn(chunk, vocab, generator=g).to(device)).contiguous()
    eager = LCO_LOSSES[loss].value_and_grad
    compiled = CompiledKernel(LCO_LOSSES[loss])
    t0 = time.perf_counter()
    value, grad = compiled(z, z_star.clone())
    compile_s = time.perf_counter() - t0
    short = max(chunk // 3, 1)
    t0 = time.perf_counter()
    compiled(z[:short].contiguous(), z_star[:short].clone())
    recompile_s = time.perf_counter() - t0
    ref_value, ref_grad = eager(z, z_star.clone())
    record = {
        "loss": loss,
        "chunk": chunk,
        "vocab": vocab,
        "device": device,
        "threads": torch.get_num_threads(),
        "compile_failure": compiled.failure,
        "compile_s": round(compile_s, 3),
        "recompile_s": round(recompile_s, 3),
        "max_value_diff": float((value - ref_value).abs().max()),
        "max_grad_diff": float((grad - ref_grad).abs().max()),
        "eager_s": _median_time(eager, z, z_star, repeats),
        "compiled_s": _median_time(compiled, z, z_star, repeats),
    }
    record["speedup"] = round(record["eager_s"] / record["compiled_s"], 3)
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", default="lco_mse,lco_lch,lco_kld")
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.chunk <= 0 or args.vocab <= 0 or args.repeats <= 0:
        parser.error("--chunk, --vocab and --repeats must be positive")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    for loss in args.losses.split(","):
        print(json.dumps(measure(loss, args.chunk, args.vocab, args.repeats, args.device)), flush=True)


if __name__ == "__main__":
    main()
