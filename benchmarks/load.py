"""Bounded load on the cloud tier: is anything lost or hung, and does the server's memory stay flat?

The server runs as `tandem serve-cloud` in its own process (as users run it)
on loopback; this process drives client threads and reads the server's RSS
from /proc. Phases, each bounded in count and time:

1. warm-up: a few requests of every kind (Generate, session turns, cancels,
   KV upload + resume, PrefillKV, Info), at full concurrency; the RSS after
   it is the baseline;
2. `--streams` concurrent Generate streams;
3. a burst of `--burst` Generate requests at once (past the queue the server
   refuses with UNAVAILABLE + retry-after-ms: an answer, not a loss);
4. `--mixed` mixed requests from `--workers` threads: Generate with and
   without session ids, streams cancelled after their first token, KV uploads
   resumed, PrefillKV streams read to the end, Info.

Every request must end with a definite outcome before its deadline: OK, a
refusal with a retry hint, or (for the cancels) CANCELLED. "lost" counts
anything else, "hung" requests still unfinished when the phase's time bound
ends. Prints a fixed-width table and one JSON line.

    python benchmarks/load.py                         # 32 streams, burst of 200, 1,000 mixed
    python benchmarks/load.py --mixed 200 --burst 50  # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # run as a script, this folder would shadow the `cloud` package

import grpc  # noqa: E402

from cloud.client import CloudClient, generate_request  # noqa: E402
from cloud.contract import fingerprint_message  # noqa: E402
from engine.generate import generate_tokens  # noqa: E402
from engine.kv import CodecOptions, encode_cache  # noqa: E402
from engine.runtime import LocalModel  # noqa: E402

TIMEOUT_S = 120.0
EXPECTED = {"OK", "UNAVAILABLE", "CANCELLED"}


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_server(args) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "tandem", "serve-cloud", "--model", args.model, "--port", "0",
           "--max-context", "2048", "--max-concurrency", str(args.concurrency), "--max-queue", str(args.streams),
           "--grace", "0"]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stderr:
        if "serving" in line and " on " in line:
            port = int(line.rsplit(":", 1)[1].split()[0])
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, port
    raise SystemExit(f"serve-cloud exited with {proc.wait()}")


class Load:
    """The request kinds, each returning its outcome (a status code name)."""

    def __init__(self, model: LocalModel, port: int, new_tokens: int) -> None:
        self.model = model
        self.client = CloudClient(f"127.0.0.1:{port}")
        self.new_tokens = new_tokens
        words = "sea ship wind rain stone river light bread field city".split()
        self.prompts = [model.encode_prompt(f"Write about the {a} and the {b}.") for a in words for b in words[:4]]
        self.kv_prompt = model.encode_prompt("Describe a quiet harbour at dawn in two sentences.")
        cache = model.new_cache(len(self.kv_prompt) + 8)
        self.kv_next = [t.id for t in generate_tokens(model.model, cache, self.kv_prompt, max_new_tokens=1)]
        self.kv_frames = list(encode_cache(cache, model.fingerprint, CodecOptions("q4")))
        self.kv_tokens = self.kv_prompt  # the cache holds the prompt (the generated token is not fed yet)
        self.receiver = fingerprint_message(model.fingerprint)

    def generate(self, rng: random.Random, session: bool = False) -> str:
        options = {"session_id": f"s{rng.randrange(16)}"} if session else {}
        self.client.generate(rng.choice(self.prompts), max_new_tokens=self.new_tokens, timeout=TIMEOUT_S,
                             **options)
        return "OK"

    def cancel(self, rng: random.Random) -> str:
        call = self.client.stream(generate_request(rng.choice(self.prompts), max_new_tokens=64), timeout=TIMEOUT_S)
        next(call)
        call.cancel()
        return "CANCELLED"

    def upload_resume(self, rng: random.Random) -> str:
        result = self.client.upload_kv(self.kv_tokens, self.kv_frames, codec="q4", timeout=TIMEOUT_S)
        self.client.resume(result.kv_handle, self.kv_prompt + self.kv_next, max_new_tokens=self.new_tokens,
                           timeout=TIMEOUT_S)
        return "OK"

    def prefill(self, rng: random.Random) -> str:
        list(self.client.prefill_kv(rng.choice(self.prompts), codec="q4", receiver=self.receiver,
                                    timeout=TIMEOUT_S))
        return "OK"

    def info(self, rng: random.Random) -> str:
        self.client.info(timeout=TIMEOUT_S)
        return "OK"

    MIX = (("generate", 40), ("session", 20), ("cancel", 15), ("upload_resume", 10), ("prefill", 5), ("info", 10))

    def run(self, kind: str, seed: int) -> tuple[str, str, float]:
        rng = random.Random(seed)
        started = time.monotonic()
        try:
            outcome = self.generate(rng, session=True) if kind == "session" else getattr(self, kind)(rng)
        except grpc.RpcError as exc:
            outcome = exc.code().name
            if outcome == "UNAVAILABLE" and not any(k == "retry-after-ms" for k, _ in exc.trailing_metadata() or ()):
                outcome = "UNAVAILABLE_WITHOUT_HINT"
        return kind, outcome, time.monotonic() - started


def phase(load: Load, name: str, kinds: list[str], workers: int, bound_s: float, pid: int) -> dict:
    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(load.run, kind, i) for i, kind in enumerate(kinds)]
        done, pending = wait(futures, timeout=bound_s)
        for f in pending:
            f.cancel()
    outcomes = Counter(f.result()[1] for f in done)
    latencies = sorted(f.result()[2] for f in done)
    return {
        "phase": name, "requests": len(kinds), "seconds": round(time.monotonic() - started, 1),
        "ok": outcomes["OK"], "refused_with_hint": outcomes["UNAVAILABLE"], "cancelled": outcomes["CANCELLED"],
        "lost": sum(n for k, n in outcomes.items() if k not in EXPECTED), "hung": len(pending),
        "p50_s": round(latencies[len(latencies) // 2], 2) if latencies else None,
        "max_s": round(latencies[-1], 2) if latencies else None,
        "rss_mib": round(rss_mib(pid), 1), "other": {k: n for k, n in outcomes.items() if k not in EXPECTED},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--concurrency", type=int, default=4, help="the server's --max-concurrency")
    p.add_argument("--streams", type=int, default=32)
    p.add_argument("--burst", type=int, default=200)
    p.add_argument("--mixed", type=int, default=1000)
    p.add_argument("--workers", type=int, default=16, help="client threads in the mixed phase")
    p.add_argument("--new-tokens", type=int, default=4)
    p.add_argument("--phase-seconds", type=float, default=600.0, help="time bound of each phase")
    args = p.parse_args()

    model = LocalModel.load(args.model, max_context=2048, precision="full")
    proc, port = start_server(args)
    try:
        load = Load(model, port, args.new_tokens)
        kinds = [k for k, _ in Load.MIX]
        rng = random.Random(0)
        mixed = rng.choices(kinds, weights=[w for _, w in Load.MIX], k=args.mixed)
        # Warm-up touches every kind at full concurrency, so every pool thread (and its malloc arena)
        # exists before the baseline is read: growth after it is what the load leaves behind.
        warm = kinds * 4 + ["generate"] * args.streams + mixed[: args.workers * 4]
        rows = [phase(load, "warm-up", warm, args.streams, args.phase_seconds, proc.pid)]
        baseline = rows[0]["rss_mib"]
        rows.append(phase(load, f"{args.streams} streams", ["generate"] * args.streams, args.streams,
                          args.phase_seconds, proc.pid))
        rows.append(phase(load, f"burst {args.burst}", ["generate"] * args.burst, args.burst, args.phase_seconds,
                          proc.pid))
        rows.append(phase(load, f"mixed {args.mixed}", mixed, args.workers, args.phase_seconds, proc.pid))
        load.client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    print(f"{'phase':<14}{'requests':>9}{'ok':>6}{'refused':>8}{'cancel':>7}{'lost':>6}{'hung':>6}"
          f"{'p50 s':>7}{'max s':>7}{'secs':>7}{'RSS MiB':>9}{'vs warm':>8}")
    for r in rows:
        print(f"{r['phase']:<14}{r['requests']:>9}{r['ok']:>6}{r['refused_with_hint']:>8}{r['cancelled']:>7}"
              f"{r['lost']:>6}{r['hung']:>6}{r['p50_s']:>7}{r['max_s']:>7}{r['seconds']:>7}{r['rss_mib']:>9}"
              f"{(r['rss_mib'] / baseline - 1) * 100:>+7.1f}%")
    growth = max(r["rss_mib"] for r in rows[1:]) / baseline - 1
    verdict = {"lost": sum(r["lost"] for r in rows), "hung": sum(r["hung"] for r in rows),
               "rss_growth_after_warmup": round(growth, 3), "flat_within_10pct": growth <= 0.10}
    print(json.dumps({"benchmark": "cloud_load", "cpu": platform.processor() or platform.machine(),
                      "cores": os.cpu_count(), "rows": rows, **verdict}))


if __name__ == "__main__":
    main()
