"""Cloud tier throughput and latency: tokens/s and time to first token at 1, 4
and 8 concurrent streams, over gRPC on loopback, against the real model.

The server runs as `tandem serve-cloud` in its own process (as users run it);
this process only tokenizes and drives client threads. Each level sends
`streams * rounds` requests with distinct prompts (no session ids, so no prefix
reuse), greedy, a fixed number of new tokens. Prints a fixed-width table and
one final JSON line. With few requests per level, p99 is close to the maximum.

    python benchmarks/cloud.py                                  # 1, 4, 8 streams, 32 new tokens
    python benchmarks/cloud.py --levels 1,2,4 --rounds 3 --new-tokens 64
    python benchmarks/cloud.py --engine both                    # + the gateway on llama-server (`make engines`)

With `--engine llama-server` (or `both`) a llama-server with as many slots as the
highest level serves the same GGUF, `serve-cloud --engine llama-server` is the
gateway in front of it, and every level also runs straight against the engine's
HTTP /completion with the same token IDs and parameters: the gateway's overhead
is its TTFT and tok/s against those (goal: within 5%).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    # Run as `python benchmarks/cloud.py`, this file's folder comes first on the path
    # and its name would shadow the `cloud` package it measures.
    sys.path.pop(0)
KJV = Path(os.environ.get("TANDEM_KJV", REPO.parent / "shared" / "data" / "kjv.txt"))
TIMEOUT_S = 600.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def prompts(model, n: int, prompt_tokens: int) -> list[list[int]]:
    """`n` distinct chat prompts of about `prompt_tokens` tokens, from the King James Bible."""
    if not KJV.is_file():
        raise SystemExit(f"need {KJV} (the shared evaluation text)")
    text = KJV.read_text()
    out = []
    for i in range(n):
        words = text[100_000 + i * 5_000 :].split()[: int(prompt_tokens * 0.7)]
        out.append(model.encode_prompt("Continue this passage in your own words:\n" + " ".join(words)))
    return out


def start_server(args, engine_url: str | None = None) -> tuple[subprocess.Popen, int]:
    cmd = [
        sys.executable, "-m", "tandem", "serve-cloud", "--model", args.model, "--port", "0",
        "--max-context", "2048", "--max-concurrency", str(max(args.levels)),
        "--max-queue", str(max(args.levels) * args.rounds), "--session-cache-mb", "0", "--grace", "1",
    ]
    if engine_url:
        cmd += ["--engine", "llama-server", "--engine-url", engine_url]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    port: list[int] = []

    def read() -> None:
        for line in proc.stderr:
            match = re.search(r"serving .* on [\d.]+:(\d+)", line)
            if match and not port:
                port.append(int(match.group(1)))
        # keep draining so the server never blocks on a full pipe

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 300
    while not port:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("serve-cloud did not start")
        time.sleep(0.1)
    return proc, port[0]


def one_request(client, ids: list[int], new_tokens: int) -> dict:
    from cloud.client import generate_request

    started = time.perf_counter()
    first = None
    tokens = 0
    result = None
    for response in client.stream(generate_request(ids, max_new_tokens=new_tokens), timeout=TIMEOUT_S):
        if response.HasField("chunk"):
            first = first or time.perf_counter()
            tokens += len(response.chunk.token_ids)
        else:
            result = response.result
    end = time.perf_counter()
    return {
        "ttft_ms": (first - started) * 1000, "tokens": tokens, "seconds": end - started,
        "decode_tps": (tokens - 1) / (end - first) if tokens > 1 and end > first else 0.0,
        "server_queue_ms": result.timings.queue_ms, "server_prefill_ms": result.timings.prefill_ms,
    }


def direct_request(http, body: dict) -> dict:
    """One streamed /completion straight to llama-server, timed like `one_request`."""
    started = time.perf_counter()
    first = None
    tokens = 0
    with http.stream("POST", "/completion", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = json.loads(line[6:])
                if data.get("tokens"):
                    first = first or time.perf_counter()
                    tokens += len(data["tokens"])
    end = time.perf_counter()
    return {
        "ttft_ms": (first - started) * 1000, "tokens": tokens, "seconds": end - started,
        "decode_tps": (tokens - 1) / (end - first) if tokens > 1 and end > first else 0.0,
        "server_queue_ms": 0.0, "server_prefill_ms": 0.0,
    }


def run_level(request, all_prompts: list[list[int]], streams: int, rounds: int) -> dict:
    """`streams` threads, each sending `rounds` requests through `request(ids)`."""
    batch = all_prompts[: streams * rounds]
    started = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        runs = list(pool.map(request, batch))
    wall = time.perf_counter() - started
    ttft = [r["ttft_ms"] for r in runs]
    tokens = sum(r["tokens"] for r in runs)
    return {
        "streams": streams, "requests": len(runs), "tokens": tokens, "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "per_stream_decode_tps": statistics.mean(r["decode_tps"] for r in runs),
        "ttft_p50_ms": percentile(ttft, 50), "ttft_p99_ms": percentile(ttft, 99),
        "queue_p50_ms": percentile([r["server_queue_ms"] for r in runs], 50),
        "prefill_p50_ms": percentile([r["server_prefill_ms"] for r in runs], 50),
    }


def gateway_levels(args, all_prompts: list[list[int]]) -> list[dict]:
    from cloud.client import CloudClient

    proc, port = start_server(args)
    try:
        with CloudClient(f"127.0.0.1:{port}") as client:
            one_request(client, all_prompts[-1], 4)  # warm-up: first-call costs are not the server's speed
            return [run_level(lambda ids: one_request(client, ids, args.new_tokens), all_prompts, n, args.rounds)
                    for n in args.levels]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def engine_levels(args, all_prompts: list[list[int]]) -> tuple[list[dict], list[dict]]:
    """Each level straight against llama-server, then through the gateway in front of it (alternating,
    so both see the same machine load): (direct, gateway)."""
    import httpx

    from cloud.backends.llama_server import LlamaServerBackend
    from cloud.backends.tokenizer_check import load_served_tokenizer
    from cloud.client import CloudClient, generate_request
    from cloud.config import ServerConfig
    from cloud.contract import plan_generation
    from cloud.engines import LlamaServerProcess
    from engine.registry import resolve

    with LlamaServerProcess(resolve(args.model), slots=max(args.levels), context=2048,
                            threads=args.threads) as engine:
        backend = LlamaServerBackend(engine.url, load_served_tokenizer(args.model))

        def body_of(ids: list[int], n: int) -> dict:  # exactly what the gateway sends for this request
            plan = plan_generation(generate_request(ids, max_new_tokens=n), vocab_size=backend.facts.vocab_size,
                                   max_context=2048, config=ServerConfig())
            return backend.request_body(plan)

        proc, port = start_server(args, engine.url)
        direct, gateway = [], []
        try:
            with CloudClient(f"127.0.0.1:{port}") as client, httpx.Client(
                    base_url=engine.url, timeout=TIMEOUT_S, limits=httpx.Limits(max_connections=max(args.levels))
            ) as http:
                direct_request(http, body_of(all_prompts[-1], 4))
                one_request(client, all_prompts[-1], 4)
                for n in args.levels:
                    direct.append(run_level(lambda ids: direct_request(http, body_of(ids, args.new_tokens)),
                                            all_prompts, n, args.rounds))
                    gateway.append(run_level(lambda ids: one_request(client, ids, args.new_tokens), all_prompts, n,
                                             args.rounds))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            backend.close()
    return direct, gateway


def print_table(title: str, results: list[dict]) -> None:
    print(title)
    print(f"{'streams':>7}{'requests':>9}{'tokens':>8}{'wall s':>8}{'tok/s':>8}{'tok/s/stream':>13}"
          f"{'TTFT p50 ms':>12}{'TTFT p99 ms':>12}{'queue p50 ms':>13}")
    for r in results:
        print(f"{r['streams']:>7}{r['requests']:>9}{r['tokens']:>8}{r['wall_s']:>8.1f}{r['tokens_per_s']:>8.1f}"
              f"{r['per_stream_decode_tps']:>13.1f}{r['ttft_p50_ms']:>12.0f}{r['ttft_p99_ms']:>12.0f}"
              f"{r['queue_p50_ms']:>13.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--engine", choices=("torch", "llama-server", "both"), default="torch",
                        help="the gateway's backend (llama-server: built by `make engines`)")
    parser.add_argument("--levels", default="1,4,8", help="concurrent streams, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="requests per stream at each level")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama-server's threads")
    args = parser.parse_args(argv)
    args.levels = [int(x) for x in args.levels.split(",")]

    from engine.runtime import LocalModel

    model = LocalModel.load(args.model, max_context=2048)
    all_prompts = prompts(model, max(args.levels) * args.rounds + 1, args.prompt_tokens)
    runs: dict[str, list[dict]] = {}
    if args.engine in ("torch", "both"):
        runs["gateway on the built-in torch engine"] = gateway_levels(args, all_prompts)
    if args.engine in ("llama-server", "both"):
        direct, gateway = engine_levels(args, all_prompts)
        runs["llama-server directly (HTTP /completion)"] = direct
        runs["gateway on llama-server"] = gateway

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    mean_prompt = statistics.mean(len(p) for p in all_prompts)
    print(f"cloud server: {args.model} over gRPC on loopback ({machine}); prompt ~{mean_prompt:.0f} tokens, "
          f"{args.new_tokens} new tokens, greedy, {args.rounds} requests per stream")
    for title, results in runs.items():
        print_table(title, results)
    overhead = {}
    direct, gateway = runs.get("llama-server directly (HTTP /completion)"), runs.get("gateway on llama-server")
    if direct and gateway:
        print("gateway overhead against llama-server directly (positive: the gateway is slower)")
        for d, g in zip(direct, gateway):
            overhead[d["streams"]] = {
                "ttft_p50_pct": round(100 * (g["ttft_p50_ms"] / d["ttft_p50_ms"] - 1), 1),
                "tokens_per_s_pct": round(100 * (1 - g["tokens_per_s"] / d["tokens_per_s"]), 1),
            }
            print(f"  {d['streams']} streams: TTFT p50 {overhead[d['streams']]['ttft_p50_pct']:+.1f}%, "
                  f"aggregate tok/s {overhead[d['streams']]['tokens_per_s_pct']:+.1f}%")
    print(json.dumps({
        "benchmark": "cloud", "model": args.model, "machine": machine, "new_tokens": args.new_tokens,
        "prompt_tokens_mean": round(mean_prompt, 1), "rounds": args.rounds, "overhead": overhead,
        "runs": {title: [{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()} for r in results]
                 for title, results in runs.items()},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
