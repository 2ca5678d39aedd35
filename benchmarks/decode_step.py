"""The native decode step over a long context, by KV cache type, and what the signals cost.

In one process, for each KV cache type (fp32, fp16, int8): decode tok/s right after a
short prompt and after a long one (default 1,000 tokens of held-out text), as
the median of interleaved repeats, and their ratio (the goal: >= 90 %). Then
the per-token signals (log-prob, top-2 margin, entropy over the whole
vocabulary) as a share of one token's time, native pass and torch ops, and a
whole generation through `generate_tokens` (signals included) against the bare
steps. Timings on a shared machine are noisy: read the ratios.

    python benchmarks/decode_step.py --context 1000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from engine.generate import GREEDY, decode_one_token, generate_tokens, pick, pick_reference, prefill
from engine.model import KVCache
from engine.runtime import LocalModel

TEXT = Path(__file__).resolve().parent / "data" / "sotu-1995.txt"


def decode_rate(model: LocalModel, cache: KVCache, start: int, tokens: int) -> float:
    """tok/s of `tokens` bare decode steps from position `start`. The cache is set there directly:
    a short run overwrites a few positions of the long prefill, which changes no timing."""
    cache.pos = start
    token = 42
    t0 = time.perf_counter()
    for _ in range(tokens):
        logits = decode_one_token(model.model, cache, token)
        token = int(logits.argmax())
    return tokens / (time.perf_counter() - t0)


def per_call(fn, calls: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--context", type=int, default=1000, help="tokens before the long-context decode")
    parser.add_argument("--tokens", type=int, default=32, help="decode steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kv-caches", nargs="+", default=["fp32", "fp16", "int8"], choices=["fp32", "fp16", "int8"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = LocalModel.load(args.model, precision="device", max_context=args.context + args.tokens + 64)
    ids = model.tokenizer.encode(TEXT.read_text())[: args.context]
    short = ids[:16]
    caches = {}
    for kv in args.kv_caches:
        twin = LocalModel(**{**model.__dict__, "kv_cache": kv})
        cache = twin.new_cache(args.context + args.tokens + 1)
        prefill(model.model, cache, ids)
        caches[kv] = cache
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):  # interleaved, so a noisy moment hits every cell alike
        for kv, cache in caches.items():
            for label, start in (("short", len(short)), ("long", args.context)):
                rates.setdefault((kv, label), []).append(decode_rate(model, cache, start, args.tokens))
    med = {key: statistics.median(v) for key, v in rates.items()}

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    print(f"{args.model} on {cpu}, {args.threads} threads; median of {args.repeats} x {args.tokens} steps")
    print(f"{'KV cache':<10}{'short tok/s':>13}{f'after {args.context}':>14}{'ratio':>8}")
    for kv in caches:
        s, lg = med[(kv, "short")], med[(kv, "long")]
        print(f"{kv:<10}{s:>13.1f}{lg:>14.1f}{lg / s:>8.1%}")

    kv = next(iter(caches))
    cache = caches[kv]
    cache.truncate(len(short))
    logits = decode_one_token(model.model, cache, 42)
    step = 1 / med[(kv, "short")]
    native = per_call(lambda: pick(logits, GREEDY, None), 300)
    torch_ops = per_call(lambda: pick_reference(logits, GREEDY, None), 30)
    print(f"signals over {logits.numel()} logits: native {native * 1e6:.0f} us ({native / step:.1%} of a token), "
          f"torch ops {torch_ops * 1e6:.0f} us ({torch_ops / step:.1%})")

    def generation() -> float:
        """tok/s from the first token (the prefill's) to the last: decode steps plus signals."""
        tokens = generate_tokens(model.model, model.new_cache(len(short) + args.tokens + 1), short,
                                 max_new_tokens=args.tokens + 1)
        next(tokens)
        t0 = time.perf_counter()
        n = sum(1 for _ in tokens)
        return n / (time.perf_counter() - t0)

    def bare() -> float:
        cache = model.new_cache(len(short) + args.tokens + 1)
        prefill(model.model, cache, short)
        return decode_rate(model, cache, len(short), args.tokens)

    gen, raw = [], []
    for _ in range(args.repeats):
        gen.append(generation())
        raw.append(bare())
    g, r = statistics.median(gen), statistics.median(raw)
    print(f"generate_tokens (signals included) {g:.1f} tok/s vs bare steps {r:.1f}: {g / r:.1%}")
    print(json.dumps({
        "benchmark": "decode_step", "model": args.model, "cpu": cpu, "threads": args.threads,
        "context": args.context, "tok_s": {f"{kv}/{label}": round(v, 1) for (kv, label), v in med.items()},
        "long_over_short": {kv: round(med[(kv, "long")] / med[(kv, "short")], 3) for kv in caches},
        "signals_share": {"native": round(native / step, 4), "torch": round(torch_ops / step, 4)},
        "generation_over_bare": round(g / r, 3),
    }))


if __name__ == "__main__":
    main()
