"""Fused LCO against fused cross-entropy on the same hidden states: the time ratio, interleaved.

One forward + backward of ``lco.fused_lco_loss`` (LCO-KLD / LCH / MSE, the trainer's default
inputs: on-policy, ``old_logits=None``, sparse outcome advantages of eq. 11, mean-normalised) and
of ``lco.fused_sft_loss`` (CE) w.r.t. ``hidden`` and ``weight``, at the library's default chunk
size. All losses run in one process on the same inputs, after one warm-up step each, in rounds
whose order alternates (CE, KLD, LCH, MSE, then reversed, ...), so that a shared machine's
drifting load falls on every loss alike; the ratios are of the medians. ``cpu_s`` is the
process CPU time of a step (all threads), which other processes' load disturbs less than wall
time. Prints one JSON record per loss, then one with the ratios. ``--compile``: LCO with
``compile=True`` (compiled during the warm-up, so the rounds are the steady state); ``--stats``: LCO
with ``return_stats=True``, as the trainer calls it (the per-token entropy, KL and gradient stats).

    OMP_NUM_THREADS=2 python benchmarks/fused_vs_ce.py --tokens 2048 --vocab 32000 --hidden 1024 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

LOSSES = ("ce", "lco_kld", "lco_lch", "lco_mse")
BETA = 1.0


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def measure(
    n: int,
    v: int,
    h: int,
    repeats: int,
    chunk_size: int | None = None,
    compile: bool = False,
    stats: bool = False,
) -> list[dict]:
    import torch

    import lco

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, h, generator=g).requires_grad_()
    weight = (torch.randn(v, h, generator=g) / h**0.5).requires_grad_()
    actions = torch.randint(0, v, (n,), generator=g)
    advantages = lco.SparseAdvantages(torch.randn(n, generator=g), actions)

    def step(loss: str) -> tuple[float, float]:
        hidden.grad = weight.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        if loss == "ce":
            value = lco.fused_sft_loss(hidden, weight, actions, chunk_size=chunk_size)
        else:
            value = lco.fused_lco_loss(
                hidden,
                weight,
                loss=loss,
                beta=BETA,
                advantages=advantages,
                actions=actions,
                chunk_size=chunk_size,
                compile=compile,
                return_stats=stats,
            )
            if stats:
                value = value[0]
        value.backward()
        return time.perf_counter() - t0, time.process_time() - c0

    for loss in LOSSES:  # warm-up: first-call allocations and dispatch
        step(loss)
    wall: dict[str, list[float]] = {loss: [] for loss in LOSSES}
    cpu: dict[str, list[float]] = {loss: [] for loss in LOSSES}
    for r in range(repeats):
        for loss in LOSSES if r % 2 == 0 else reversed(LOSSES):
            w, c = step(loss)
            wall[loss].append(w)
            cpu[loss].append(c)
    chunk = chunk_size or lco.objectives.chunked.default_chunk_size(v, n, h)
    common = {
        "n": n,
        "v": v,
        "h": h,
        "chunk": chunk,
        "threads": torch.get_num_threads(),
        "compile": compile,
        "stats": stats,
    }
    records = [
        {
            **common,
            "loss": loss,
            "wall_s": round(statistics.median(wall[loss]), 6),
            "cpu_s": round(statistics.median(cpu[loss]), 6),
            "wall_samples": [round(t, 6) for t in wall[loss]],
        }
        for loss in LOSSES
    ]
    ce = records[0]
    ratios = {
        **common,
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "ce_time_ratio": {r["loss"]: round(r["wall_s"] / ce["wall_s"], 3) for r in records[1:]},
        "ce_cpu_ratio": {r["loss"]: round(r["cpu_s"] / ce["cpu_s"], 3) for r in records[1:]},
    }
    return records + [ratios]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=_positive, default=2048, help="N")
    parser.add_argument("--vocab", type=_positive, default=32000, help="V")
    parser.add_argument("--hidden", type=_positive, default=1024, help="H")
    parser.add_argument("--repeats", type=_positive, default=5, help="timed rounds (after one warm-up)")
    parser.add_argument("--chunk-size", type=_positive, default=None, help="default: the library's")
    parser.add_argument("--compile", action="store_true", help="LCO with compile=True")
    parser.add_argument(
        "--stats", action="store_true", help="LCO with return_stats=True (the trainer's call)"
    )
    args = parser.parse_args(argv)
    records = measure(
        args.tokens, args.vocab, args.hidden, args.repeats, args.chunk_size, args.compile, args.stats
    )
    for record in records:
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
