"""Prefill and decode speed and memory of Tandem's device tier against llama.cpp itself, same files, same threads.

1. Speed and memory, per model (SmolLM2-135M; a model with Llama-3.2-1B's shapes and random weights) and
   per file (bench_files.py makes them once: Q4_0 and Q4_1 GGUFs, and Tandem's own `tandem quantize`
   checkpoint). The contender is llama.cpp's `llama-bench` (`make engines` builds it) on both GGUFs, with
   flash attention on (`-fa on`: what llama.cpp's default, auto, picks on a CPU) and its own repetitions
   (one warm-up, then --repeats); Tandem runs the same files and its checkpoint, each in a fresh process,
   timed through `LocalModel.stream` (the generation path every request takes: per-token log-prob,
   entropy and top-2 signals, detokenization; stop tokens cleared so every run decodes the same count),
   with the same warm-up and repetitions; --rounds N runs it all N times, every other round in reverse
   order, and pools the samples (this VM's speed drifts within minutes). Measured: prefill of --prompt-tokens; decode after a 1-token
   prompt; decode after --prompt-tokens (where the KV cache is read too); mean, standard deviation, min
   and max of each; ratios against llama.cpp on Q4_0, its fastest format here. The read bandwidth is
   measured in the same run and gives each file's decode bound (weight bytes one token reads); the
   "bytes cap" is the decode@N/short share a step would reach if it took only its reads (weights, then
   weights plus the KV cache's rows) at one bandwidth. Memory:
   Tandem's RSS by phase (runtime floor: Python, torch, the kernels and the tokenizer; weights; KV cache;
   prefill transients; decode), next to llama-bench's peak RSS on the same file and context.
2. Two device-tier sessions decoding at once on two Python threads, against the same two one
   after the other.
3. The calibrated judge's cost: device-tier decode tok/s of a stream watched by the default policy's
   calibrated judge (hidden states on, probes applied) against a hand-set rule, interleaved runs.

    python benchmarks/decode.py                    # everything (~15 min on 2 cores)
    python benchmarks/decode.py --quick            # part 1, shorter prompt, fewer tokens and repetitions
    python benchmarks/decode.py --part speed --models smollm2 --isa avx2   # AVX2 kernels vs AVX2 llama.cpp
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the engine, when run as a script (this folder comes first)
KJV = REPO.parent / "shared" / "data" / "kjv.txt"
FORMATS = ["Q4_0", "Q4_1", "tandem q4"]  # llama.cpp runs the GGUFs only
BASELINE = "Q4_0"  # llama.cpp's fastest format here: the one it repacks for its matrix kernels


def prompt_text() -> str:
    """Prose to prefill: the King James Bible from ../shared/data, else the slice shipped in data/texts."""
    if KJV.is_file():
        return KJV.read_text()[200_000:260_000]
    return (REPO / "data" / "texts" / "kjv-genesis.txt").read_text()


def stats(samples: list[float]) -> dict:
    return {"mean": statistics.fmean(samples), "stdev": statistics.stdev(samples) if len(samples) > 1 else 0.0,
            "min": min(samples), "max": max(samples), "samples": samples}


# ---- llama.cpp ---------------------------------------------------------------------------


# Runs argv[1:] as a child of this small interpreter and reports the child's peak RSS. Not os.wait4 from the
# benchmark itself: Linux carries a process's peak RSS across exec, so a child spawned straight from the big
# parent (torch, the 512 MiB bandwidth buffer) would report the parent's peak, not its own.
PEAK_RSS = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(f"peak_rss_kb {usage.ru_maxrss}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(cmd: list[str]) -> tuple[str, float]:
    """Run `cmd`; its stdout and its own peak RSS in MiB."""
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, *cmd], capture_output=True, text=True)
    *log, last = proc.stderr.strip().splitlines() or [""]
    if proc.returncode != 0 or not last.startswith("peak_rss_kb "):
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout, int(last.split()[1]) / 1024


def llama_bench(binary: Path, model: Path, args) -> dict:
    """llama-bench's prefill, decode and decode after --prompt-tokens, each with its samples; peak RSS of
    the run with the longest context (prompt + new tokens), as Tandem's peak is taken."""
    base = [str(binary), "-m", str(model), "-t", str(args.threads), "-fa", "on", "-r", str(args.repeats),
            "-o", "json"]
    results, peak = {}, 0.0
    for extra in (["-p", str(args.prompt_tokens), "-n", str(args.new_tokens), "-d", "0"],
                  ["-p", "0", "-n", str(args.new_tokens), "-d", str(args.prompt_tokens)]):
        out, rss = run_measured(base + extra)
        peak = max(peak, rss)
        for test in json.loads(out):
            key = "prefill" if test["n_prompt"] else ("decode_long" if test["n_depth"] else "decode")
            results[key] = stats(test["samples_ts"])
    return {**results, "peak_rss_mb": peak, "flash_attn": "on"}


# ---- Tandem ------------------------------------------------------------------------------


def memory() -> dict[str, float]:
    """This process's memory in MiB from /proc/self/status: VmRSS (now), VmHWM (peak since the last
    reset_peak), RssAnon (heap, copies) and RssFile (mapped files: weights by memory map, libraries)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


def reset_peak() -> None:
    """Start VmHWM again from the current RSS (Linux: write 5 to clear_refs), so each phase has its peak."""
    Path("/proc/self/clear_refs").write_text("5")


def run_tandem(args) -> dict:
    """One file in this (fresh) process: the memory phases on the first long run, then the timed runs."""
    import torch

    from engine import kernels
    from engine.checkpoint import read_checkpoint  # noqa: F401 (the loaders' imports belong to the floor)
    from engine.gguf_file import GGUFFile
    from engine.gguf_loader import is_gguf_file
    from engine.packed_kv import GROUP
    from engine.runtime import LocalModel
    from engine.tokenizer import load_gguf_tokenizer, load_tokenizer

    torch.set_num_threads(args.threads)
    path = Path(args.worker)
    kernels.available()  # the native library is part of the runtime, loaded before the floor is read
    bare = memory()
    tok = load_gguf_tokenizer(GGUFFile(path).metadata, str(path)) if is_gguf_file(path) else load_tokenizer(path)
    ids = (tok.encode(prompt_text()) * 4)[: args.prompt_tokens]
    floor = memory()  # Python, torch, the kernels and the tokenizer: what any model costs first
    del tok
    gc.collect()

    n_ctx = args.prompt_tokens + args.new_tokens
    model = LocalModel.load(path, precision="device", max_context=n_ctx, kv_cache=args.kv_cache)
    model.tokenizer.stop_ids = []  # every run decodes --new-tokens tokens, as llama-bench does
    loaded = memory()
    cache = model.new_cache(n_ctx)
    # its tensors' bytes: zeroed pages may only become resident as prefill writes them
    kv_mb = cache.nbytes / 2**20
    # what a step reads per cached position: the 4-bit groups where the cache keeps them, else the rows
    kv_read = cache.packed.nbytes / (cache.packed.max_groups * GROUP) if cache.packed else cache.nbytes / n_ctx

    def timed(prompt: list[int], cache=None) -> tuple[float, float]:
        """(prefill tok/s, decode tok/s) of one stream: the first token's wait, then the rest's pace."""
        t0 = time.perf_counter()
        stream = model.stream(prompt, max_new_tokens=args.new_tokens, cache=cache)
        next(stream)
        t1 = time.perf_counter()
        if cache is not None:  # the memory pass: what prefill left, then decode's own peak
            phases["prefilled"], phases["prefill_peak"] = memory(), memory()["VmHWM"]
            reset_peak()
        for _ in stream:
            pass
        t2 = time.perf_counter()
        return len(prompt) / (t1 - t0), (args.new_tokens - 1) / (t2 - t1)

    phases: dict = {}
    reset_peak()
    timed(ids, cache)  # also the long runs' warm-up
    decoded = memory()
    del cache
    timed(ids[:1])  # the short runs' warm-up
    long = [timed(ids) for _ in range(args.repeats)]
    short = [timed(ids[:1])[1] for _ in range(args.repeats)]

    pre = phases["prefilled"]
    mem = {
        "bare_runtime": bare["VmRSS"],  # Python + torch + the engine's modules + the kernels
        "floor": floor["VmRSS"],  # ... + the tokenizer
        # what the model holds: its own copies (anon) and the file pages the first prefill touched
        "weights": (loaded["RssAnon"] - floor["RssAnon"]) + (pre["RssFile"] - floor["RssFile"]),
        "kv_cache": kv_mb,
        "prefill_transient": phases["prefill_peak"] - pre["VmRSS"],
        "after_prefill": pre["VmRSS"],
        "decode_growth": decoded["VmRSS"] - pre["VmRSS"],
        "decode_transient": decoded["VmHWM"] - decoded["VmRSS"],
        "peak": max(phases["prefill_peak"], decoded["VmHWM"]),
    }
    mem["above_floor"] = mem["peak"] - mem["floor"]
    return {"prefill": stats([p for p, _ in long]), "decode": stats(short), "decode_long": stats([d for _, d in long]),
            "memory_mb": mem, "weight_bytes_read_per_token": decode_bytes(model.model),
            "kv_bytes_per_position": kv_read,
            "kernels": kernels.isa() if kernels.available() else "torch fallback"}


def decode_bytes(model) -> int:
    """Weight bytes one decode step reads: every matrix but the embedding (one row of it)."""
    from engine.quant_linear import quantized_bytes

    embedding = model.tok_embeddings
    row = embedding.weight.nbytes // embedding.weight.shape[0]
    tied = model.output.weight.data_ptr() == embedding.weight.data_ptr()
    norms = sum(p.nbytes for n, p in model.named_parameters() if n.endswith("norm.weight"))
    return quantized_bytes(model) - (0 if tied else embedding.weight.nbytes) + row - norms


def tandem_worker(path: Path, argv: list[str], isa: str) -> dict:
    env = {**os.environ, "TANDEM_KERNEL_ISA": isa, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, __file__, *argv, "--worker", str(path)], capture_output=True, text=True,
                          cwd=REPO, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip()[-1500:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- part 1 ------------------------------------------------------------------------------


def pool(first: dict, later: dict) -> dict:
    """One engine and file over rounds: the speed samples pooled; memory from the first round."""
    return {**first, **{key: stats(first[key]["samples"] + later[key]["samples"])
                        for key in ("prefill", "decode", "decode_long")}}


def cell(s: dict) -> str:
    return f"{s['mean']:.1f} ±{s['stdev']:.1f} [{s['min']:.1f}-{s['max']:.1f}]"


def part_speed(args) -> dict:
    """Both engines on each model's files; tables of speed, ratios, bandwidth bound and memory."""
    import torch

    import bench_files
    from cloud.engines import BUILD_HINT, llama_cpp_binary
    from kernels import read_bandwidth

    variant = "avx2" if args.isa == "avx2" else "native"
    binary = llama_cpp_binary("llama-bench", variant=variant)
    if binary is None:
        hint = "run `make engines-avx2`" if variant == "avx2" else BUILD_HINT
        print(f"llama-bench ({variant}) is not built: {hint}; Tandem alone below")
    torch.set_num_threads(args.threads)
    root = bench_files.cache_dir()
    argv = ["--threads", str(args.threads), "--kv-cache", args.kv_cache, "--prompt-tokens", str(args.prompt_tokens),
            "--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats)]
    out = {"read_gbps": read_bandwidth(), "llama_bench": str(binary) if binary else None, "models": {}}
    for model in args.models.split(","):
        print(f"\n{model}: making or finding its files in {root} ...", flush=True)
        files = {"smollm2": bench_files.smollm2_files, "llama-1b": bench_files.llama_1b_files}[model](root)
        bandwidth = read_bandwidth()  # per model, right before its runs
        rows: dict[str, dict] = {}
        for round_ in range(args.rounds):
            # odd rounds run the files and engines in reverse, so that drift within a run
            # weighs on both engines alike
            runs = [(f"{engine} {fmt}", fmt) for fmt in FORMATS for engine in ("llama.cpp", "Tandem")
                    if engine == "Tandem" or (binary is not None and fmt != "tandem q4")]
            for name, fmt in runs[::-1] if round_ % 2 else runs:
                result = (llama_bench(binary, files[fmt], args) if name.startswith("llama.cpp")
                          else tandem_worker(files[fmt], argv, args.isa))
                rows[name] = pool(rows[name], result) if name in rows else result
        ratios = report(model, rows, bandwidth, args)
        out["models"][model] = {"files": {k: str(v) for k, v in files.items()}, "read_gbps": bandwidth,
                                "rows": rows, "ratios": ratios}
    return out


def report(model: str, rows: dict[str, dict], bandwidth: float, args) -> dict:
    """Print the speed table, the ratios against llama.cpp on Q4_0 and the memory table; return the ratios."""
    n = args.prompt_tokens
    print(f"\n{model}: {args.threads} threads, prefill {n} tokens, decode {args.new_tokens} tokens after a 1-token "
          f"prompt and after {n}, mean ±stdev [min-max] of {args.repeats} runs after a warm-up in each of "
          f"{args.rounds} round(s); llama-bench -fa on; "
          f"Tandem kernels: {next(r['kernels'] for k, r in rows.items() if k.startswith('Tandem'))}; "
          f"read bandwidth {bandwidth:.1f} GB/s")
    # bytes cap: what decode@n/short would be if a step took only its reads (weights, plus the KV
    # cache's rows at the positions decoded after n) at one bandwidth
    print(f"{'engine, file':<20}{'prefill tok/s':>30}{'decode tok/s':>30}{f'decode@{n} tok/s':>30}"
          f"{f'@{n}/short':>10}{'bytes cap':>10}{'% of bound':>11}{'peak MiB':>10}")
    for name, r in rows.items():
        fmt = name.split(" ", 1)[1]
        weights = rows[f"Tandem {fmt}"]["weight_bytes_read_per_token"]
        kv = rows[f"Tandem {fmt}"]["kv_bytes_per_position"] * (n + args.new_tokens / 2)
        bound = bandwidth * 1e9 / weights
        peak = r["peak_rss_mb"] if "peak_rss_mb" in r else r["memory_mb"]["peak"]
        print(f"{name:<20}{cell(r['prefill']):>30}{cell(r['decode']):>30}{cell(r['decode_long']):>30}"
              f"{r['decode_long']['mean'] / r['decode']['mean']:>10.2f}{weights / (weights + kv):>10.2f}"
              f"{r['decode']['mean'] / bound:>11.0%}{peak:>10.0f}")
    ratios: dict[str, dict] = {}
    peer = rows.get(f"llama.cpp {BASELINE}")
    if peer:
        print(f"Tandem against llama.cpp on {BASELINE} (ratio of means; min/max: the slowest Tandem run over the "
              f"fastest llama.cpp run, and the other way round):")
        for name, r in rows.items():
            if not name.startswith("Tandem"):
                continue
            ratios[name] = {k: {"mean": r[k]["mean"] / peer[k]["mean"], "low": r[k]["min"] / peer[k]["max"],
                                "high": r[k]["max"] / peer[k]["min"]} for k in ("prefill", "decode", "decode_long")}
            print(f"  {name:<18}" + "   ".join(
                f"{label} {v['mean']:.2f}x ({v['low']:.2f}-{v['high']:.2f})"
                for label, v in zip(("prefill", "decode", f"decode@{n}"), ratios[name].values())))
    print(f"memory (MiB; Tandem by phase, each in a fresh process, context {n + args.new_tokens}):")
    print(f"{'engine, file':<20}{'floor':>7}{'weights':>9}{'KV cache':>10}{'prefill+':>10}{'decode+':>9}"
          f"{'peak':>7}{'above floor':>13}{'llama.cpp peak':>16}")
    for name, r in rows.items():
        if not name.startswith("Tandem"):
            continue
        m = r["memory_mb"]
        theirs = rows.get(name.replace("Tandem", "llama.cpp"), {}).get("peak_rss_mb")
        print(f"{name:<20}{m['floor']:>7.0f}{m['weights']:>9.0f}{m['kv_cache']:>10.0f}{m['prefill_transient']:>10.0f}"
              f"{m['decode_growth'] + m['decode_transient']:>9.0f}{m['peak']:>7.0f}{m['above_floor']:>13.0f}"
              f"{f'{theirs:.0f}' if theirs else '-':>16}")
    return ratios


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
    parser.add_argument("--part", choices=["all", "speed", "sessions", "judge"], default="all")
    parser.add_argument("--models", default="smollm2,llama-1b", help="comma-separated: smollm2, llama-1b")
    parser.add_argument("--model", default="smollm2-135m", help="the model of the sessions and judge parts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=1000)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every engine and file this many times, in alternating order, pooling the samples")
    parser.add_argument("--isa", choices=["native", "avx2"], default="native",
                        help="avx2: Tandem's kernels with TANDEM_KERNEL_ISA=avx2 against `make engines-avx2`'s llama-bench")
    parser.add_argument("--kv-cache", default="auto", help="Tandem's KV cache (engine/recipes.py KV_CACHES)")
    parser.add_argument("--quick", action="store_true", help="part 1 only: 256-token prompt, 32 tokens, 2 runs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.part, args.prompt_tokens, args.new_tokens, args.repeats = "speed", 256, 32, 2

    if args.worker:
        print(json.dumps(run_tandem(args)))
        return
    out = {"benchmark": "decode", "cpu": cpu_name(), "threads": args.threads, "prompt_tokens": args.prompt_tokens,
           "new_tokens": args.new_tokens, "repeats": args.repeats, "rounds": args.rounds, "isa": args.isa}
    print(f"{out['cpu']}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if args.part in ("all", "speed"):
        out["speed"] = part_speed(args)
    if args.part in ("all", "sessions"):
        out["sessions"] = part_sessions(args)
    if args.part in ("all", "judge"):
        out["judge"] = part_judge(args)
    print(json.dumps(out))


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return os.uname().machine


if __name__ == "__main__":
    main()
