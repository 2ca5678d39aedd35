"""What quantization costs in quality: perplexity and top-1 agreement per device tier.

On held-out public-domain text (benchmarks/data, sources in SOURCES.md), each
quantized tier of SmolLM2-135M is scored through both of its paths, decoded
token by token (int8 activation blocks) and prefilled in one forward (mixed
int8 blocks: a second level for outlier blocks), against the full-precision twin, which here
is the GGUF's Q4_1 weights dequantized to fp32: the bf16 original is not
available offline, so what Q4_1 costs against it cannot be measured here.
Each tier runs with the KV cache it would use (on the native decode path int8
rows, whose finished groups of 64 positions the 4-bit tiers read in 4 bits on
AVX-512 VNNI builds, unless --kv-cache says otherwise), so that cache's rounding
counts too.

    python benchmarks/quality.py --tokens 256
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from engine.quality import PATHS, compare
from engine.recipes import KV_CACHES
from engine.runtime import LocalModel

DATA = Path(__file__).resolve().parent / "data"
TIERS = {"device (Q4_1 blocks)": "device", "int8 recipe": "int8", "q4 recipe": "q4"}
BOUNDS = {"device": 0.05, "q4": 0.05, "int8": 0.01}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kv-cache", default="auto", choices=KV_CACHES,
                        help="the tiers' KV cache (default auto: int8 where the native decode step runs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    reference = LocalModel.load(args.model, precision="full", max_context=args.tokens + 8)
    texts = {p.stem: reference.tokenizer.encode(p.read_text())[: args.tokens + 1] for p in sorted(DATA.glob("*.txt"))}
    print(f"{args.model}: {args.tokens} tokens per text, each tier's decode and prefill path (KV cache "
          f"{args.kv_cache}) vs the fp32 twin")
    print(f"{'tier':<22}{'path':<9}{'text':<14}{'ppl fp32':>10}{'ppl tier':>10}{'increase':>10}{'bound':>8}"
          f"{'top-1 agree':>13}")
    results = {}
    for label, precision in TIERS.items():
        model = LocalModel.load(args.model, precision=precision, max_context=args.tokens + 8, kv_cache=args.kv_cache)
        for path in PATHS:
            for name, ids in texts.items():
                q = compare(model.model, reference.model, ids, path=path, cache_dtype=model.cache_dtype,
                            packed=model.packs_cache)
                results[f"{precision}/{path}/{name}"] = q.__dict__ | {"increase": q.perplexity_increase}
                print(f"{label:<22}{path:<9}{name:<14}{q.reference_perplexity:>10.3f}{q.perplexity:>10.3f}"
                      f"{q.perplexity_increase:>+10.2%}{BOUNDS[precision]:>+8.0%}{q.top1_agreement:>13.1%}")
    print(json.dumps({"benchmark": "quality", "model": args.model, "tokens": args.tokens, "kv_cache": args.kv_cache,
                      "results": results}))


if __name__ == "__main__":
    main()
