"""Peak memory and time of the naive vs the fused (chunked) LM-head losses.

For each LCO loss (eqs. 8–10) and for plain cross-entropy (SFT, eq. 1), one forward + backward of
the loss of z = h Wᵀ w.r.t. ``hidden`` and ``weight``:

- naive: ``z = hidden @ weight.T`` for all N tokens, then ``lco.lco_<loss>`` / ``lco.sft_loss`` and
  autograd — the ``[N, V]`` logits and autograd's ``[N, V]`` intermediates all exist at once;
- fused: :func:`lco.fused_lco_loss` / :func:`lco.fused_sft_loss` at their default chunk size
  (:func:`lco.objectives.fused.default_chunk_size` of V, N and H).

Both get the inputs in the form the trainer has them. ``sparse`` (the trainer's default): an
on-policy step (fused ``old_logits=None``; naive ``z.detach()``) with sparse outcome advantages
(eq. 11) given as ``[N]`` token advantages and sampled actions — the naive side materialises them
with ``lco.sparse_advantages`` inside the measured step. ``dpo_dense`` (LCO-KLD only): the dense DPO
advantage log φ_DPO − log φ_ref (eq. 13) from two extra heads' hidden states ``[N, H]`` and weights
``[V, H]`` — naive computes both ``[N, V]`` logits, fused uses :func:`lco.dpo_advantage_chunks`.
Advantages are mean-normalised over the vocabulary (§4.4) in both. ``dpo_dense_top5`` (LCO-KLD
only) is the authors' stable setting on the same inputs: π* restricted to the top-5 entries of
z_old (``support=5``) and the advantage divided by its std over those 5 (``"std"``), naive
through ``lco.normalize_advantages(..., support=ids)`` and ``lco.lco_kld(..., support=ids)``.

Method. Every (case, implementation) runs in its own subprocess, so that one run's freed-but-
retained heap cannot hide another's peak, with glibc's mmap threshold fixed at 1 MiB
(``MALLOC_MMAP_THRESHOLD_``; ``--glibc-default`` leaves it alone): every tensor above 1 MiB then
gets its own mapping that is unmapped when freed, so RSS follows the live tensors. By default
glibc raises the threshold up to 32 MiB as big blocks are freed and then serves blocks below
that from a heap it does not shrink; a fused chunk block just under 32 MiB (256 × 32000 fp32)
then leaves ~250 MB of retained heap that is the allocator's, not the algorithm's, and that a
CUDA caching allocator (same-sized blocks every chunk) would reuse. The worker warms the code path up on tiny inputs,
allocates the inputs, then resets the kernel's RSS high-water mark by writing ``5`` to
``/proc/self/clear_refs`` and reads the baseline ``VmRSS`` from ``/proc/self/status``; after the
step it reads ``VmHWM``. Peak extra memory = VmHWM − baseline: every page the step touched above
the inputs, parameter gradients included. RSS rather than a torch allocator counter because CPU
torch keeps none; ``getrusage``'s ``ru_maxrss`` cannot be reset, so it would include the warm-up
and the inputs. Each repeat is a fresh process running one full forward + backward, and the
repeats of all the cases of one (N, V) are interleaved in ABBA order (all cases, then all in
reverse, ...), so that the load of a shared machine, which drifts over minutes, falls on naive,
fused and CE alike. Time is the median wall time over the repeats (``cpu_s``: the median process
CPU time, less sensitive to other jobs stealing the cores); memory the largest peak.

Before launching a case, its peak is estimated (``EST_BLOCKS`` fp32 ``[N, V]`` blocks for naive,
about ten ``[chunk, V]`` blocks for fused, plus ``[V, H]`` and ``[N, H]`` gradients); a case whose
estimate exceeds ``MemAvailable`` minus a 2 GiB margin is recorded as skipped, with the numbers.

Output: one JSON record per case (stdout, one line each, as they finish; ``--json OUT`` gets the
list), with ``mem_ratio`` and ``time_ratio`` (fused / naive) and ``ce_time_ratio`` (fused LCO /
fused CE at the same N, V; ``plain_ce_time_ratio`` divides by the naive CE instead).

    OMP_NUM_THREADS=2 python benchmarks/loss_memory.py --json results.json
    python benchmarks/loss_memory.py --quick               # a smoke run in seconds
    python benchmarks/loss_memory.py --table results.json  # the README's markdown table
    python benchmarks/loss_memory.py --quick --only lco_kld:dpo_dense_top5   # one row
    python benchmarks/loss_memory.py --sizes 2048x32000,8192x32000 --only ce:sparse --only lco_kld:sparse
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

LOSSES = ("ce", "lco_mse", "lco_lch", "lco_kld")
SIZES = ((2048, 32000), (2048, 152064), (8192, 32000), (8192, 152064))
HIDDEN = 1024
QUICK_SIZES = ((2048, 4096),)
QUICK_HIDDEN = 64
BETA = 1.0
TOP_K = 5  # the dpo_dense_top5 row's support: the authors' logits_topk
MARGIN_BYTES = 2 * 2**30

# fp32 [N, V] blocks alive at the naive step's peak (logits, advantages, z*, the loss's
# intermediates that autograd saves, the logit gradient), a conservative guess per loss;
# replaced by the measured value once a smaller case of the same kind has run.
EST_BLOCKS = {"ce": 4, "lco_mse": 7, "lco_lch": 14, "lco_kld": 10}


# --- the worker: one (case, implementation) in its own process -----------------------------------


def _memory_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    # "5" resets VmHWM to the current RSS (Documentation/filesystems/proc.rst, clear_refs).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _inputs(torch, n, v, h, advantages, seed=0):
    g = torch.Generator().manual_seed(seed)
    inp = {
        "hidden": torch.randn(n, h, generator=g).requires_grad_(),
        "weight": (torch.randn(v, h, generator=g) / h**0.5).requires_grad_(),
        "token_advantages": torch.randn(n, generator=g),
        "actions": torch.randint(0, v, (n,), generator=g),
    }
    if advantages.startswith("dpo_dense"):
        for role in ("dpo", "ref"):
            inp[f"{role}_hidden"] = torch.randn(n, h, generator=g)
            inp[f"{role}_weight"] = torch.randn(v, h, generator=g) / h**0.5
    return inp


def _step(torch, lco, loss, advantages, impl, inp, chunk_size, compile=False):
    """One forward + backward, in the form the trainer would run it."""
    hidden, weight = inp["hidden"], inp["weight"]
    v = weight.shape[0]
    if impl == "fused":
        if loss == "ce":
            value = lco.fused_sft_loss(hidden, weight, inp["actions"], chunk_size=chunk_size)
        else:
            options = {}
            if advantages == "sparse":
                adv = lco.SparseAdvantages(inp["token_advantages"], inp["actions"])
            else:
                adv = lco.dpo_advantage_chunks(
                    inp["dpo_hidden"], inp["dpo_weight"], None, inp["ref_hidden"], inp["ref_weight"], None
                )
                if advantages == "dpo_dense_top5":
                    options = {"support": TOP_K, "normalization": "std"}
            value = lco.fused_lco_loss(
                hidden, weight, loss=loss, beta=BETA, advantages=adv, old_logits=None, chunk_size=chunk_size,
                compile=compile, **options,
            )  # fmt: skip
    else:
        z = hidden @ weight.T
        if loss == "ce":
            value = lco.sft_loss(z, inp["actions"])
        else:
            with torch.no_grad():
                if advantages == "sparse":
                    adv = lco.sparse_advantages(inp["token_advantages"], inp["actions"], v)
                else:
                    adv = lco.dpo_advantages(
                        inp["dpo_hidden"] @ inp["dpo_weight"].T, inp["ref_hidden"] @ inp["ref_weight"].T
                    )
                ids = z.topk(TOP_K, dim=-1).indices if advantages == "dpo_dense_top5" else None
                adv = lco.normalize_advantages(adv, "std" if ids is not None else "mean", support=ids)
            value = getattr(lco, loss)(z, z.detach(), adv, BETA, support=ids)
            del adv
        del z
    value.backward()


def worker(spec: dict) -> dict:
    import torch

    import lco

    torch.manual_seed(0)
    loss, adv, impl = spec["loss"], spec["advantages"], spec["impl"]
    compile = spec.get("compile", False)
    # Warm the exact code path up (kernels, thread pool, lazy imports) before the baseline. With
    # --compile, twice at the real vocabulary and two token counts: the second call makes the
    # token axis dynamic, and the real V matters (Inductor's kernel for V <= 4096 is guarded to
    # those sizes), so the measured step reuses the compiled kernel and is the steady state.
    v_real = spec["V"]
    warmups = ((64, v_real), (40, v_real)) if compile and impl == "fused" else ((64, 128),)
    for n_warm, v_warm in warmups:
        _step(
            torch, lco, loss, adv, impl, _inputs(torch, n_warm, v_warm, 16, adv), spec["chunk_size"], compile
        )
    inp = _inputs(torch, spec["N"], spec["V"], spec["H"], adv)
    base_kb = _memory_kb("VmRSS")
    _reset_peak()
    times, cpu = [], []
    for _ in range(spec["repeats"]):
        inp["hidden"].grad = inp["weight"].grad = None
        start, cpu_start = time.perf_counter(), time.process_time()
        _step(torch, lco, loss, adv, impl, inp, spec["chunk_size"], compile)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    peak_kb = _memory_kb("VmHWM")
    return {
        "peak_extra_mb": round((peak_kb - base_kb) / 1024, 1),
        "baseline_rss_mb": round(base_kb / 1024, 1),
        "time_s": round(statistics.median(times), 3),
        "times_s": [round(t, 3) for t in times],
        "cpu_s": round(statistics.median(cpu), 3),
        "threads": torch.get_num_threads(),
    }


# --- the driver --------------------------------------------------------------------------------------


def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not in /proc/meminfo")


def _estimate(loss, adv, impl, n, v, h, chunk, blocks) -> float:
    params = 2 * v * h * 4 + 2 * n * h * 4  # grad_weight (+ its fp32 accumulator), grad_hidden
    if impl == "naive":
        return blocks.get((loss, adv), EST_BLOCKS[loss]) * n * v * 4 + params
    return 10 * min(chunk, n) * v * 4 + params


def _run_worker(spec: dict, glibc_default: bool) -> dict:
    env = dict(os.environ)
    if not glibc_default:
        env["MALLOC_MMAP_THRESHOLD_"] = str(2**20)
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


CASES = (*((loss, "sparse") for loss in LOSSES), ("lco_kld", "dpo_dense"), ("lco_kld", "dpo_dense_top5"))


def _groups(quick: bool, only: list[str] | None = None, sizes: list[tuple[int, int]] | None = None):
    """One group per size: CE first (the LCO records divide by its time), then the LCO losses.

    ``only``: ``LOSS:ADVANTAGES`` names of the cases to run (all by default); ``sizes``: the
    (N, V) to run (default :data:`SIZES`, or :data:`QUICK_SIZES` with ``quick``)."""
    default_sizes, h = (QUICK_SIZES, QUICK_HIDDEN) if quick else (SIZES, HIDDEN)
    sizes = sizes or default_sizes
    cases = [c for c in CASES if only is None or f"{c[0]}:{c[1]}" in only]
    for n, v in sizes:
        yield n, v, h, cases


def _skip_reason(need: float) -> str | None:
    avail = _mem_available() - MARGIN_BYTES
    if need <= avail:
        return None
    return (
        f"estimated peak {need / 2**30:.1f} GB > {avail / 2**30:.1f} GB available "
        f"(MemAvailable minus a {MARGIN_BYTES / 2**30:.0f} GB margin)"
    )


def _summary(samples: list[dict]) -> dict:
    ok = [s for s in samples if "time_s" in s]
    if not ok:
        return {"error": samples[-1].get("error", "no sample") if samples else "no sample"}
    return {
        "peak_extra_mb": max(s["peak_extra_mb"] for s in ok),
        "baseline_rss_mb": ok[0]["baseline_rss_mb"],
        "time_s": round(statistics.median(s["time_s"] for s in ok), 3),
        "times_s": [s["time_s"] for s in ok],
        "cpu_s": round(statistics.median(s["cpu_s"] for s in ok), 3),
        "threads": ok[0]["threads"],
    }


def run(args) -> list[dict]:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from lco.objectives.fused import default_chunk_size

    biggest = max(n * v for n, v in (QUICK_SIZES if args.quick else SIZES))
    blocks: dict[tuple[str, str], float] = {}
    records = []
    for n, v, h, cases in _groups(args.quick, args.only, args.sizes):
        chunk = args.chunk_size or default_chunk_size(v, n, h)
        # The biggest size is run once: it dominates the wall time on a 2-core CPU.
        repeats = 1 if (n * v == biggest and not args.quick) else args.repeats
        recs, runs = {}, []
        for loss, adv in cases:
            rec = {"loss": loss, "advantages": adv if loss != "ce" else "targets", "N": n, "V": v, "H": h}
            rec.update({"chunk_size": chunk, "repeats": repeats, "skipped": {}})
            rec["compile"] = bool(args.compile and loss != "ce")
            for impl in ("naive", "fused"):
                need = _estimate(loss, adv, impl, n, v, h, chunk, blocks)
                rec[f"{impl}_estimate_gb"] = round(need / 2**30, 2)
                reason = _skip_reason(need)
                if reason:
                    rec["skipped"][impl], rec[impl] = reason, None
                else:
                    runs.append((loss, adv, impl, need))
            recs[(loss, adv)] = rec
        # Interleaved, one repeat per process, in ABBA order: the shared machine's load drifts
        # over minutes, and this spreads the drift over every run of the group alike.
        samples: dict[tuple, list[dict]] = {r[:3]: [] for r in runs}
        for rep in range(repeats):
            for loss, adv, impl, need in runs if rep % 2 == 0 else runs[::-1]:
                reason = _skip_reason(need)  # other engineers' jobs may have grown meanwhile
                spec = {"loss": loss, "advantages": adv, "impl": impl, "N": n, "V": v, "H": h}
                spec.update({"chunk_size": chunk, "repeats": 1, "compile": args.compile and loss != "ce"})
                result = {"error": reason} if reason else _run_worker(spec, args.glibc_default)
                samples[(loss, adv, impl)].append(result)
        for (loss, adv, impl), got in samples.items():
            recs[(loss, adv)][impl] = _summary(got)
            if impl == "naive" and "peak_extra_mb" in recs[(loss, adv)][impl]:
                peak = recs[(loss, adv)][impl]["peak_extra_mb"] * 2**20
                measured = (peak - 2 * v * h * 4) / (n * v * 4)
                blocks[(loss, adv)] = max(blocks.get((loss, adv), 0.0), 1.1 * measured)
        ce = recs.get(("ce", "sparse"))  # absent when --only leaves CE out: no ce_time_ratio then
        for rec in recs.values():
            rec.update(_ratios(rec, None if rec is ce else ce))
            records.append(rec)
            print(json.dumps(rec), flush=True)
        if args.json:
            _write(args.json, records, args)
    return records


def _ok(result) -> bool:
    return isinstance(result, dict) and "time_s" in result


def _ratios(rec: dict, ce: dict | None) -> dict:
    naive, fused = rec.get("naive"), rec.get("fused")
    out = {"mem_ratio": None, "time_ratio": None, "ce_time_ratio": None, "plain_ce_time_ratio": None}
    if _ok(naive) and _ok(fused):
        out["mem_ratio"] = round(fused["peak_extra_mb"] / max(naive["peak_extra_mb"], 1e-9), 3)
        out["time_ratio"] = round(fused["time_s"] / naive["time_s"], 3)
    if ce is not None and _ok(fused):
        if _ok(ce.get("fused")):
            out["ce_time_ratio"] = round(fused["time_s"] / ce["fused"]["time_s"], 3)
        if _ok(ce.get("naive")):
            out["plain_ce_time_ratio"] = round(fused["time_s"] / ce["naive"]["time_s"], 3)
    return out


def _write(path: str, records: list[dict], args) -> None:
    meta = {
        "benchmark": "loss_memory",
        "quick": args.quick,
        "repeats": args.repeats,
        "malloc_mmap_threshold": "glibc default (dynamic)" if args.glibc_default else "1 MiB (fixed)",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "loadavg_at_write": os.getloadavg(),
        "ce_time_ratio": "fused LCO time / fused CE (lco.fused_sft_loss) time at the same N, V",
        "plain_ce_time_ratio": "fused LCO time / naive CE (lco.sft_loss on hidden @ weight.T) time",
    }
    with open(path, "w") as f:
        json.dump({"meta": meta, "records": records}, f, indent=1)


def markdown_table(records: list[dict]) -> str:
    """The README's table: one row per case, ratios first, then the absolute numbers."""

    def cell(result, key, fmt):
        return format(result[key], fmt) if _ok(result) else "skipped"

    def ratio(x):
        return "–" if x is None else f"{x:.2f}"

    lines = [
        "| loss | advantages | N | V | mem_ratio | time_ratio | ce_time_ratio | naive peak MB | fused peak MB "
        "| naive s | fused s | chunk |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        n, f = r.get("naive"), r.get("fused")
        lines.append(
            f"| {r['loss']} | {r['advantages']} | {r['N']} | {r['V']} | {ratio(r['mem_ratio'])} "
            f"| {ratio(r['time_ratio'])} | {ratio(r['ce_time_ratio'])} "
            f"| {cell(n, 'peak_extra_mb', '.0f')} | {cell(f, 'peak_extra_mb', '.0f')} "
            f"| {cell(n, 'time_s', '.2f')} | {cell(f, 'time_s', '.2f')} | {r['chunk_size']} |"
        )
    return "\n".join(lines)


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    try:
        sizes = [tuple(int(x) for x in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(len(s) != 2 or min(s) <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"expected NxV[,NxV...] with positive N and V, got {text!r}")
    return sizes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the records (and run metadata) to this file")
    parser.add_argument("--quick", action="store_true", help="one tiny size: a smoke run in seconds")
    parser.add_argument(
        "--repeats", type=int, default=3, help="processes (timed steps) per case; the biggest size gets 1"
    )
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="fused chunk size (default: the library's)"
    )
    parser.add_argument(
        "--glibc-default", action="store_true", help="leave glibc's dynamic mmap threshold (see Method)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[f"{loss}:{adv}" for loss, adv in CASES],
        help="run only this case (repeatable), e.g. lco_kld:dpo_dense_top5",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="fused LCO with compile=True (steady state: the kernel is compiled in the warm-up)",
    )
    parser.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=None,
        help="comma-separated NxV to run instead of the default sizes, e.g. 2048x32000,8192x32000",
    )
    parser.add_argument("--table", metavar="JSON", help="print the markdown table of a results file and exit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.table:
        with open(args.table) as f:
            print(markdown_table(json.load(f)["records"]))
        return
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    records = run(args)
    print(markdown_table(records), file=sys.stderr)


if __name__ == "__main__":
    main()
