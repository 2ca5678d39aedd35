"""Prefill and decode speed of Tandem's engine per tier, against its peers, same threads.

Three parts, printed with ratios, and one final JSON line:

1. SmolLM2-135M (the embedded model): Tandem at fp32 (the cloud tier), the int8
   recipe, and the device tier (the GGUF's Q4_1 blocks kept quantized), against
   Hugging Face transformers (fp32, the same GGUF) and llama.cpp through
   llama-cpp-python (the same GGUF, `make bench` installs it). Each contender
   runs in its own subprocess, so peak RSS is its own; the prompt is a slice of
   the King James Bible from ../shared/data. Decode is timed twice, after a
   4-token prompt and after the whole prompt (where the KV cache is read too),
   greedy, prefill not timed, each contender stepping one token at a time.
2. A model with Llama-3.2-1B's exact shapes (random weights, q4 recipe, written
   once by the same code as `tandem quantize` and loaded by memory map): decode
   tok/s against the memory-bandwidth bound (quantized weight bytes one token
   reads / read bandwidth measured in this run), peak RSS against the
   checkpoint size, and the checkpoint against the bf16 size.
3. Two device-tier sessions decoding at once on two Python threads, against
   the same two one after the other.
4. The calibrated judge's cost: device-tier decode tok/s of a stream watched
   by the default policy's calibrated judge (hidden states on, probes applied)
   against the same stream watched by a hand-set rule, interleaved runs.

    python benchmarks/decode.py                         # all parts, peers that are installed
    python benchmarks/decode.py --part smollm2 --contenders tandem-q4_1,llama.cpp
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kernels import read_bandwidth

REPO = Path(__file__).resolve().parents[1]
KJV = REPO.parent / "shared" / "data" / "kjv.txt"
LLAMA_1B = dict(vocab_size=128256, dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn_dim=8192,
                norm_eps=1e-5, rope_theta=500000.0, max_seq_len=131072, tie_embeddings=True)
SMOLLM2_CONTENDERS = ["tandem-fp32", "tandem-int8", "tandem-q4_1", "transformers", "llama.cpp"]
PRECISION = {"tandem-fp32": "full", "tandem-int8": "int8", "tandem-q4_1": "device", "tandem-1b-q4": "device"}


def prompt_text() -> str:
    if not KJV.is_file():
        raise SystemExit(f"need {KJV} (the shared evaluation text)")
    return KJV.read_text()[200_000:260_000]


def status_mb(field: str, fallback: float = 0.0) -> float:
    """A memory line of /proc/self/status in MiB: VmRSS (now) or VmHWM (peak; ru_maxrss
    would carry the parent's peak across exec on Linux, so it is only the fallback)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return fallback


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def decode_rates(args, start, step) -> dict:
    """Decode tok/s (best of `repeats`, prefill not timed) after a 4-token prompt and
    after the whole prompt: `start(n)` prefills the first n prompt tokens and returns
    the state `step` advances by one greedy token."""
    rates = {}
    for key, n in (("decode_tps", 4), ("decode_long_tps", args.prompt_tokens)):
        times = []
        for _ in range(args.repeats):
            state = start(n)
            t0 = time.perf_counter()
            for _ in range(args.new_tokens):
                state = step(state)
            times.append(time.perf_counter() - t0)
            del state  # one KV cache alive at a time, so peak RSS is one session's
        rates[key] = args.new_tokens / min(times)
    return rates


def run_tandem(args, name: str) -> dict:
    import torch

    from engine.generate import decode_one_token, prefill
    from engine.quant_linear import quantized_bytes
    from engine.runtime import LocalModel

    torch.set_num_threads(args.threads)
    runtime_mb = status_mb("VmRSS")  # the interpreter, torch and the engine's modules, before any model
    model = LocalModel.load(args.model, precision=PRECISION[name],
                            max_context=args.prompt_tokens + args.new_tokens + 8)
    ids = model.tokenizer.encode(prompt_text())[: args.prompt_tokens]

    def do_prefill():
        with torch.inference_mode():
            prefill(model.model, model.new_cache(len(ids) + 1), ids)

    @torch.inference_mode()
    def start(n):
        cache = model.new_cache(n + args.new_tokens + 1)
        return cache, prefill(model.model, cache, ids[:n])

    @torch.inference_mode()
    def step(state):
        cache, logits = state
        return cache, decode_one_token(model.model, cache, int(logits.argmax()))

    do_prefill(), step(start(4))  # warm-up
    return {"prefill_tps": len(ids) / best_of(do_prefill, args.repeats), **decode_rates(args, start, step),
            "weight_bytes_read_per_token": decode_bytes(model.model), "model_bytes": quantized_bytes(model.model),
            "runtime_rss_mb": runtime_mb}


def decode_bytes(model) -> int:
    """Weight bytes one decode step reads: every matrix but the embedding (one row of it)."""
    from engine.quant_linear import quantized_bytes

    embedding = model.tok_embeddings
    row = embedding.weight.nbytes // embedding.weight.shape[0]
    tied = model.output.weight.data_ptr() == embedding.weight.data_ptr()
    norms = sum(p.nbytes for n, p in model.named_parameters() if n.endswith("norm.weight"))
    return quantized_bytes(model) - (0 if tied else embedding.weight.nbytes) + row - norms


def run_transformers(args, name: str) -> dict:
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

    @torch.inference_mode()
    def start(n):
        out = model(ids[:, :n], use_cache=True, logits_to_keep=1)
        return out.past_key_values, out.logits[0, -1]

    @torch.inference_mode()
    def step(state):
        past, logits = state
        out = model(logits.argmax().view(1, 1), past_key_values=past, use_cache=True)
        return out.past_key_values, out.logits[0, -1]

    do_prefill(), step(start(4))
    return {"prefill_tps": ids.shape[1] / best_of(do_prefill, args.repeats), **decode_rates(args, start, step)}


def run_llama_cpp(args, name: str) -> dict:
    import numpy as np
    from llama_cpp import Llama

    from engine.registry import resolve

    llm = Llama(model_path=str(resolve(args.model)), n_ctx=args.prompt_tokens + args.new_tokens + 16,
                n_threads=args.threads, n_threads_batch=args.threads, n_batch=512, verbose=False)
    ids = llm.tokenize(prompt_text().encode(), add_bos=False)[: args.prompt_tokens]

    def do_prefill():
        llm.reset()
        llm.eval(ids)

    def last_token():  # llama-cpp-python keeps only n_batch rows of scores, so read the context's logits
        return int(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).argmax())

    def start(n):
        llm.reset()
        llm.eval(ids[:n])

    def step(state):
        llm.eval([last_token()])

    do_prefill(), start(4), step(None)
    return {"prefill_tps": len(ids) / best_of(do_prefill, args.repeats), **decode_rates(args, start, step)}


def write_llama_1b_shapes(folder: Path) -> Path:
    """A q4 checkpoint with Llama-3.2-1B's shapes and random weights (speed only), once."""
    import torch

    from engine.config import ModelConfig, RopeScaling
    from engine.quantize import quantize_weights, save_quantized
    from engine.tokenizer import load_tokenizer
    from engine.registry import resolve

    if (folder / "model.safetensors").is_file():
        return folder
    config = ModelConfig(**LLAMA_1B, rope_scaling=RopeScaling(factor=32.0))
    gen = torch.Generator().manual_seed(0)
    q, kv = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim

    def randn(*shape):
        return torch.randn(*shape, generator=gen) * 0.02

    weights = {"tok_embeddings.weight": randn(config.vocab_size, config.dim), "norm.weight": torch.ones(config.dim)}
    for i in range(config.n_layers):
        layer = {
            "attention.wqkv.weight": randn(q + 2 * kv, config.dim), "attention.wo.weight": randn(config.dim, q),
            "feed_forward.w13.weight": randn(2 * config.ffn_dim, config.dim),
            "feed_forward.w2.weight": randn(config.dim, config.ffn_dim),
            "attention_norm.weight": torch.ones(config.dim), "ffn_norm.weight": torch.ones(config.dim),
        }
        weights.update(quantize_weights({f"layers.{i}.{k}": v for k, v in layer.items()}, "q4"))
    weights.update(quantize_weights({"tok_embeddings.weight": weights["tok_embeddings.weight"]}, "q4"))
    return save_quantized(folder, config, weights, load_tokenizer(resolve("llama3-tokenizer")), "q4")


WORKERS = {"tandem-fp32": run_tandem, "tandem-int8": run_tandem, "tandem-q4_1": run_tandem,
           "tandem-1b-q4": run_tandem, "transformers": run_transformers, "llama.cpp": run_llama_cpp}


def run_workers(names: list[str], argv: list[str]) -> dict[str, dict]:
    results = {}
    for name in names:
        proc = subprocess.run([sys.executable, __file__, *argv, "--worker", name], capture_output=True, text=True,
                              cwd=REPO)
        if proc.returncode != 0:
            last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode
            print(f"{name}: not measured ({last})")
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


def part_smollm2(args) -> dict:
    argv = ["--model", args.model, "--threads", str(args.threads), "--prompt-tokens", str(args.prompt_tokens),
            "--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats)]
    results = run_workers(args.contenders.split(","), argv)
    peers = {k: v for k, v in results.items() if not k.startswith("tandem")}
    best_prefill = max((v["prefill_tps"] for v in peers.values()), default=None)
    best_decode = max((v["decode_tps"] for v in peers.values()), default=None)
    best_long = max((v["decode_long_tps"] for v in peers.values()), default=None)
    print(f"\n{args.model}, {args.threads} threads, prompt {args.prompt_tokens} tokens, "
          f"decode {args.new_tokens} tokens, best of {args.repeats}")
    print(f"(decode: after a 4-token prompt; decode@{args.prompt_tokens}: after the whole prompt)")
    print(f"{'contender':<16}{'prefill tok/s':>14}{'decode tok/s':>14}{f'decode@{args.prompt_tokens}':>14}"
          f"{'peak RSS MB':>13}{'prefill x best peer':>21}{'decode x best peer':>20}{'decode@ x best':>16}")
    for name, r in results.items():
        rp = f"{r['prefill_tps'] / best_prefill:.2f}" if best_prefill else "-"
        rd = f"{r['decode_tps'] / best_decode:.2f}" if best_decode else "-"
        rl = f"{r['decode_long_tps'] / best_long:.2f}" if best_long else "-"
        print(f"{name:<16}{r['prefill_tps']:>14.1f}{r['decode_tps']:>14.1f}{r['decode_long_tps']:>14.1f}"
              f"{r['peak_rss_mb']:>13.0f}{rp:>21}{rd:>20}{rl:>16}")
    return results


def part_llama_1b(args) -> dict:
    folder = Path(args.cache) / "llama-3.2-1b-shapes-q4"
    print(f"\nLlama-3.2-1B shapes, random weights, q4 recipe ({folder}) ...", flush=True)
    write_llama_1b_shapes(folder)
    argv = ["--model", str(folder), "--threads", str(args.threads), "--prompt-tokens", str(args.prompt_tokens),
            "--new-tokens", str(args.new_tokens // 2), "--repeats", str(args.repeats)]
    r = run_workers(["tandem-1b-q4"], argv).get("tandem-1b-q4")
    if r is None:
        return {}
    import torch

    torch.set_num_threads(args.threads)
    bandwidth = read_bandwidth()
    checkpoint = (folder / "model.safetensors").stat().st_size
    c = LLAMA_1B
    params = c["vocab_size"] * c["dim"] + c["n_layers"] * (
        c["dim"] * (c["dim"] + 2 * c["dim"] * c["n_kv_heads"] // c["n_heads"]) + c["dim"] * c["dim"]
        + 3 * c["dim"] * c["ffn_dim"] + 2 * c["dim"]) + c["dim"]
    bound = bandwidth * 1e9 / r["weight_bytes_read_per_token"]
    r.update(read_gbps=bandwidth, bound_tps=bound, checkpoint_bytes=checkpoint, bf16_bytes=2 * params)
    print(f"read bandwidth (sum over 512 MiB, {args.threads} threads): {bandwidth:.1f} GB/s; "
          f"weights read per token: {r['weight_bytes_read_per_token'] / 2**20:.0f} MiB")
    print(f"decode {r['decode_tps']:.1f} tok/s = {r['decode_tps'] / bound:.0%} of the bandwidth bound "
          f"({bound:.1f} tok/s); prefill {r['prefill_tps']:.1f} tok/s")
    print(f"checkpoint {checkpoint / 2**20:.0f} MiB = {checkpoint / (2 * params):.0%} of bf16 "
          f"({2 * params / 2**20:.0f} MiB); peak RSS {r['peak_rss_mb']:.0f} MB = "
          f"{r['peak_rss_mb'] * 2**20 / checkpoint:.2f}x the checkpoint; {r['runtime_rss_mb']:.0f} MB of it is the "
          f"runtime before the model loads (torch), the rest {(r['peak_rss_mb'] - r['runtime_rss_mb']) * 2**20 / checkpoint:.2f}x")
    return r


def part_sessions(args) -> dict:
    """Two sessions decoding at once on two Python threads against the same two one
    after the other (device tier, this process): concurrent steps take turns."""
    import threading

    import torch

    from engine.runtime import LocalModel

    torch.set_num_threads(args.threads)
    model = LocalModel.load(args.model, precision="device", max_context=512)
    ids = model.encode_prompt("Tell me about the rivers of Europe.")

    def session():
        for _ in model.stream(ids, max_new_tokens=args.new_tokens // 2):
            pass

    session()
    t0 = time.perf_counter()
    session(), session()
    serial = time.perf_counter() - t0
    threads = [threading.Thread(target=session) for _ in range(2)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    concurrent = time.perf_counter() - t0
    print(f"\ntwo device-tier sessions of {args.new_tokens // 2} tokens: one after the other {serial * 1000:.0f} ms, "
          f"at once on two threads {concurrent * 1000:.0f} ms ({concurrent / serial:.2f}x)")
    return {"serial_s": serial, "concurrent_s": concurrent}


def part_judge(args) -> dict:
    """Decode tok/s with the calibrated judge on (hidden states streamed, probe and judge
    applied by the router) and off (a hand-set rule), alternating runs in this process."""
    import torch

    from engine.runtime import LocalModel

    # Run as a script, this folder comes first on sys.path and its router.py would shadow the package.
    sys.path.insert(0, str(REPO))
    from router import StreamMonitor, load_policy
    from router.policy import ConfidenceRule, EscalationAction, Signal

    torch.set_num_threads(args.threads)
    model = LocalModel.load(args.model, precision="device", max_context=512)
    calibrated = load_policy(REPO / "policies" / "default.yaml").confidence
    if calibrated is None or calibrated.calibration is None:
        raise SystemExit("policies/default.yaml has no calibrated confidence rule")
    calibrated.calibration.judge.check_model(model.fingerprint.to_dict(), model.tokenizer.fingerprint)
    hand_set = ConfidenceRule(Signal.QUANTILE_PROB, 0.2, 16, 8, EscalationAction.ESCALATE_CONTINUE)
    ids = model.encode_prompt("Tell me about the rivers of Europe.")

    def run(rule) -> tuple[float, float]:
        """(tok/s of the whole stream, seconds spent in the monitor)."""
        monitor = StreamMonitor(rule, may_escalate=False)  # watch every token, never stop the stream
        t0 = time.perf_counter()
        n, in_monitor = 0, 0.0
        for event in model.stream(ids, max_new_tokens=args.new_tokens, hidden_tokens=monitor.hidden_tokens):
            t = event.token
            m0 = time.perf_counter()
            monitor.observe(t.logprob, t.entropy, t.margin, t.hidden, final=event.finish_reason is not None)
            in_monitor += time.perf_counter() - m0
            n += 1
        return n / (time.perf_counter() - t0), in_monitor

    run(hand_set), run(calibrated)  # warm-up
    on, off, judge_s = [], [], []
    for _ in range(max(3, args.repeats)):
        off.append(run(hand_set)[0])
        rate, seconds = run(calibrated)
        on.append(rate)
        judge_s.append(seconds)
    best_on, best_off = max(on), max(off)
    share = min(judge_s) * best_on / args.new_tokens
    print(f"\njudge cost, device tier, {args.new_tokens} tokens with prefill: hand-set rule {best_off:.1f} tok/s, "
          f"calibrated judge {best_on:.1f} tok/s ({(1 - best_on / best_off) * 100:+.1f}%; best of {len(on)} "
          f"alternating runs); the judge itself took {share * 100:.2f}% of the stream's time")
    return {"judge_off_tps": best_off, "judge_on_tps": best_on, "cost": 1 - best_on / best_off,
            "judge_share_of_stream_time": share}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "smollm2", "llama-1b", "sessions", "judge"], default="all")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=1000)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contenders", default=",".join(SMOLLM2_CONTENDERS))
    parser.add_argument("--cache", default=os.environ.get("TANDEM_BENCH_CACHE", tempfile.gettempdir()),
                        help="where the 1B-shaped checkpoint is written once (about 0.9 GB)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        result = WORKERS[args.worker](args, args.worker)
        result["peak_rss_mb"] = status_mb("VmHWM", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(result))
        return
    out = {"benchmark": "decode", "threads": args.threads, "prompt_tokens": args.prompt_tokens}
    if args.part in ("all", "smollm2"):
        out["smollm2"] = part_smollm2(args)
    if args.part in ("all", "llama-1b"):
        out["llama_1b_shapes"] = part_llama_1b(args)
    if args.part in ("all", "sessions"):
        out["sessions"] = part_sessions(args)
    if args.part in ("all", "judge"):
        out["judge"] = part_judge(args)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
