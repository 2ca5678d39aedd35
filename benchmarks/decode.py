"""Prefill and decode speed of Tandem's engine against its peers, same weights, same threads.

Each contender runs in its own subprocess (so peak RSS is its own), on the same
prompt (a slice of the King James Bible from ../shared/data) and the same
thread count. Prints a fixed-width table with ratios against the peers and one
final JSON line.

    python benchmarks/decode.py                       # tandem vs transformers
    python benchmarks/decode.py --contenders tandem-fp32,transformers,llama.cpp
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KJV = REPO.parent / "shared" / "data" / "kjv.txt"


def prompt_text() -> str:
    if not KJV.is_file():
        raise SystemExit(f"need {KJV} (the shared evaluation text)")
    return KJV.read_text()[200_000:260_000]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run_tandem(args, variant: str) -> dict:
    import torch

    from engine.generate import decode_one_token, prefill
    from engine.runtime import LocalModel

    torch.set_num_threads(args.threads)
    model = LocalModel.load(args.model, max_context=args.prompt_tokens + args.new_tokens + 8)
    ids = model.tokenizer.encode(prompt_text())[: args.prompt_tokens]

    def do_prefill():
        with torch.inference_mode():
            prefill(model.model, model.new_cache(len(ids) + 1), ids)

    def do_decode():
        cache = model.new_cache(args.new_tokens + 8)
        with torch.inference_mode():
            logits = prefill(model.model, cache, ids[:4])
            for _ in range(args.new_tokens):
                logits = decode_one_token(model.model, cache, int(logits.argmax()))

    do_prefill(), do_decode()  # warm-up
    t_prefill = best_of(do_prefill, args.repeats)
    t_decode = best_of(do_decode, args.repeats)
    return {"prefill_tps": len(ids) / t_prefill, "decode_tps": args.new_tokens / t_decode}


def run_transformers(args) -> dict:
    import torch
    from transformers import LlamaForCausalLM

    from engine.registry import resolve
    from engine.runtime import LocalModel

    torch.set_num_threads(args.threads)
    path = resolve(args.model)
    tok = LocalModel.load(path, max_context=64).tokenizer
    model = LlamaForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    ids = torch.tensor([tok.encode(prompt_text())[: args.prompt_tokens]])

    def do_prefill():
        with torch.inference_mode():
            model(ids, use_cache=True, logits_to_keep=1)

    def do_generate():
        with torch.inference_mode():
            model.generate(ids[:, :4], max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                           do_sample=False, pad_token_id=0)

    do_prefill(), do_generate()
    t_prefill = best_of(do_prefill, args.repeats)
    t_decode = best_of(do_generate, args.repeats)
    return {"prefill_tps": ids.shape[1] / t_prefill, "decode_tps": args.new_tokens / t_decode}


def run_llama_cpp(args) -> dict:
    from llama_cpp import Llama

    from engine.registry import resolve

    llm = Llama(model_path=str(resolve(args.model)), n_ctx=args.prompt_tokens + args.new_tokens + 16,
                n_threads=args.threads, n_threads_batch=args.threads, n_batch=512, verbose=False)
    ids = llm.tokenize(prompt_text().encode(), add_bos=False)[: args.prompt_tokens]

    def do_prefill():
        llm.reset()
        llm.eval(ids)

    def do_decode():
        llm.reset()
        llm.eval(ids[:4])
        for _ in range(args.new_tokens):
            llm.eval([int(llm.scores[llm.n_tokens - 1].argmax())])

    do_prefill(), do_decode()
    return {"prefill_tps": len(ids) / best_of(do_prefill, args.repeats),
            "decode_tps": args.new_tokens / best_of(do_decode, args.repeats)}


WORKERS = {
    "tandem-fp32": lambda a: run_tandem(a, "fp32"),
    "transformers": run_transformers,
    "llama.cpp": run_llama_cpp,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=1000)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contenders", default="tandem-fp32,transformers")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        result = WORKERS[args.worker](args)
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    results = {}
    for name in args.contenders.split(","):
        cmd = [sys.executable, __file__, "--worker", name, *sys.argv[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            print(f"{name}: failed ({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode})")
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])

    peers = {k: v for k, v in results.items() if not k.startswith("tandem")}
    best_prefill = max((v["prefill_tps"] for v in peers.values()), default=None)
    best_decode = max((v["decode_tps"] for v in peers.values()), default=None)
    print(f"model {args.model}, {args.threads} threads, prompt {args.prompt_tokens} tokens, "
          f"decode {args.new_tokens} tokens, best of {args.repeats}")
    print(f"{'contender':<16}{'prefill tok/s':>14}{'decode tok/s':>14}{'peak RSS MB':>13}"
          f"{'prefill x best peer':>21}{'decode x best peer':>20}")
    for name, r in results.items():
        rp = f"{r['prefill_tps'] / best_prefill:.2f}" if best_prefill else "-"
        rd = f"{r['decode_tps'] / best_decode:.2f}" if best_decode else "-"
        print(f"{name:<16}{r['prefill_tps']:>14.1f}{r['decode_tps']:>14.1f}{r['peak_rss_mb']:>13.0f}{rp:>21}{rd:>20}")
    print(json.dumps({"benchmark": "decode", "model": args.model, "threads": args.threads,
                      "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "results": results}))


if __name__ == "__main__":
    main()
