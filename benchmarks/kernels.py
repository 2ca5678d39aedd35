"""Which matrix-vector kernel reads weights fastest on this CPU? (one decode step = M=1)

For Llama-3.2-1B's and SmolLM2's layer shapes, times y = x W^T for one token with
each candidate kernel and prints the weight bytes it reads per second, next to
the machine's plain read bandwidth measured in the same run (a sum over 512 MiB).
Candidates: torch fp32/bf16 matmul, fbgemm's dynamic int8 linear, torch's int8
and int4 packed matmuls, and Tandem's native kernels (i8, q8_0, q4_0, q4_1; the 4-bit ones repacked as at load).

    python benchmarks/kernels.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Callable

import torch

SHAPES = {  # name: (out_features N, in_features K)
    "1b.wqkv": (3072, 2048),
    "1b.w13": (16384, 2048),
    "1b.w2": (2048, 8192),
    "1b.output": (128256, 2048),
    "smollm2.w13": (3072, 576),
    "smollm2.output": (49152, 576),
}


def best_time(fn: Callable[[], object], budget_s: float = 0.6, repeats: int = 5) -> float:
    """Best over `repeats` rounds of the mean of as many calls as fit in budget_s / repeats."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    calls = max(1, int(budget_s / repeats / once))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def read_bandwidth() -> float:
    """GB/s of a sum over 512 MiB (far beyond the caches)."""
    x = torch.ones(128 << 20)
    return x.nbytes / best_time(lambda: x.sum()) / 1e9


COLD_BYTES = 256 << 20  # rotate over copies of a weight until they span this, far beyond L3


def rotating(make: Callable[[], Callable[[], object]], nbytes: int) -> Callable[[], object]:
    """Calls over enough copies of one weight that each call reads it from memory, not cache."""
    calls = [make() for _ in range(max(1, COLD_BYTES // nbytes))]
    state = {"i": 0}

    def call() -> object:
        state["i"] = (state["i"] + 1) % len(calls)
        return calls[state["i"]]()

    return call


def candidates(n: int, k: int) -> dict[str, tuple[Callable[[], object], int]]:
    """name -> (call over cold copies, weight bytes one call reads)."""
    from engine import kernels
    from engine.quant_linear import FORMATS, REPACKED, quantize

    w = torch.randn(n, k) * 0.02
    x, xb = torch.randn(1, k), torch.randn(1, k).bfloat16()
    scales = (w.abs().amax(1) / 127).float()
    w8 = (w / scales[:, None]).round().to(torch.int8)
    w4 = ((w / (scales[:, None] * 127 / 7)).round().clamp(-8, 7) + 8).to(torch.int32)
    sz = torch.stack([torch.full((k // 32, n), 0.01), torch.zeros(k // 32, n)], dim=-1).bfloat16()
    F = torch.nn.functional

    def fp32():
        c = w.clone()
        return lambda: F.linear(x, c)

    def bf16():
        c = w.bfloat16()
        return lambda: F.linear(xb, c)

    def fbgemm():
        qw = torch.quantize_per_channel(w, scales.double(), torch.zeros(n, dtype=torch.long), 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(qw, None)
        return lambda: torch.ops.quantized.linear_dynamic(x, packed, True)

    def int8pack():
        c = w8.clone()
        return lambda: torch._weight_int8pack_mm(x, c, scales)

    def int4pack():
        c = torch.ops.aten._convert_weight_to_int4pack_for_cpu(w4, 1)
        return lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(xb, c, 32, sz)

    out = {
        "torch fp32": (fp32, n * k * 4),
        "torch bf16": (bf16, n * k * 2),
        "fbgemm dyn int8": (fbgemm, n * k + 4 * n),
        "torch int8pack": (int8pack, n * k + 4 * n),
        "torch int4pack g32 (bf16 x)": (int4pack, n * k // 2 + sz.nbytes),
    }
    if kernels.available():
        for fmt in ("i8", "q8_0", "q4_1", "q4_0"):
            q = quantize(w, fmt)

            def native(q=q, code=FORMATS[fmt]):
                data = q.data.clone()
                run_code = torch.ops.tandem.repack(data, code) if q.fmt in REPACKED else code
                return lambda: torch.ops.tandem.qlinear(x, data, q.scales, run_code, k)

            out[f"tandem {fmt}"] = (native, q.nbytes)
    return {name: (rotating(make, nbytes), nbytes) for name, (make, nbytes) in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="torch.quantize_per")

    bandwidth = read_bandwidth()
    print(f"{args.threads} threads; read bandwidth (sum over 512 MiB): {bandwidth:.1f} GB/s")
    rows = {}
    for shape in args.shapes.split(","):
        n, k = SHAPES[shape]
        for name, (fn, nbytes) in candidates(n, k).items():
            rows[(shape, name)] = nbytes / best_time(fn) / 1e9
            del fn
    names = sorted({name for _, name in rows}, key=lambda s: list(dict.fromkeys(n for _, n in rows)).index(s))
    shapes = args.shapes.split(",")
    print(f"weight GB/s at M=1 (one decode token){'':<4}" + "".join(f"{s:>16}" for s in shapes))
    for name in names:
        print(f"{name:<40}" + "".join(f"{rows.get((s, name), float('nan')):>16.1f}" for s in shapes))
    print(json.dumps({"benchmark": "kernels", "threads": args.threads, "read_gbps": bandwidth,
                      "weight_gbps": {f"{s}/{n}": v for (s, n), v in rows.items()}}))


if __name__ == "__main__":
    main()
