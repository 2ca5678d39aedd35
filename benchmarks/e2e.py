"""End to end through the edge SDK: time to first token and total latency per routing
path (the scenarios of `tandem demo`), and the SDK's overhead over the raw engine on
the local path.

The cloud tier is a server on loopback in this process (the same SmolLM2 weights), so
the figures are the SDK's and the models' own cost without a network. The overhead
figure alternates raw-engine and SDK runs of the same greedy generation (same prompt,
same tokens) and compares medians; the SDK run includes tokenization, routing with
the detectors, the stream monitor on every token, redaction restoring and the audit
record. Goal: < 5 %.

The HTTP endpoint (`tandem serve-edge`, on loopback in this process) is measured the
same way against the SDK: the same local-path request through the official openai
client, streamed (server-sent events as tokens come) and whole, alternating with SDK
runs; its overhead is HTTP, JSON, the worker thread and the event loop (the async
SDK alone, timed beside them, is the thread and loop part). The client is a process
of its own, as an app calling the endpoint is: it shares the cores, not the server's
interpreter; the time is the client's, from sending the request to the last byte.
Beside the times: each mode's CPU in the server process (decode included) and in the
client process. Goal: < 5 %.

    python benchmarks/e2e.py                   # 3 runs per path, 9 overhead pairs
    python benchmarks/e2e.py --runs 5 --pairs 15 --threads 2
    python benchmarks/e2e.py --http-only       # only the HTTP endpoint's overhead
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    # Run as `python benchmarks/e2e.py`, this folder comes first on the path, and its
    # cloud.py would shadow the `cloud` package.
    sys.path.pop(0)

OVERHEAD_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def time_stream(events, is_text) -> tuple[float, float, object]:
    """(ms to first text, ms total, last event) of one stream."""
    start = time.perf_counter()
    first = None
    last = None
    for event in events:
        if first is None and is_text(event):
            first = time.perf_counter()
        last = event
    end = time.perf_counter()
    return ((first or end) - start) * 1000, (end - start) * 1000, last


def paths(local, cloud_address: str, runs: int, max_new_tokens: int, audit: Path) -> list[dict]:
    from edge.client import TandemClient
    from edge.demo import DEMO_POLICY, SCENARIOS, dead_address
    from edge.events import Text

    up = TandemClient(local, cloud=cloud_address, policy=DEMO_POLICY, audit_log=audit, deadline_s=60)
    down = TandemClient(local, cloud=dead_address(), policy=DEMO_POLICY, audit_log=audit, deadline_s=2)
    rows = []
    for scenario in SCENARIOS:
        client = down if scenario.cloud_down else up
        ttft, total = [], []
        record = None
        for _ in range(runs):
            t, tot, done = time_stream(
                client.generate(scenario.prompt, tags=scenario.tags, max_new_tokens=max_new_tokens),
                lambda e: isinstance(e, Text) and e.text,
            )
            ttft.append(t)
            total.append(tot)
            record = done.record
        rows.append({
            "path": scenario.title, "route": record.route, "answered_by": record.tier,
            "reason": record.fallback or record.escalation_reason or record.reasons[0],
            "tokens_edge": record.tokens["edge"], "tokens_cloud": record.tokens["cloud"],
            "ttft_ms": round(statistics.median(ttft), 1), "total_ms": round(statistics.median(total), 1),
            "bytes_sent": record.bytes_sent,
        })
    up.close()
    down.close()
    return rows


def overhead(local, pairs: int, max_new_tokens: int) -> dict:
    """Median total time of the raw engine vs the SDK on the same greedy generation, alternating."""
    from edge.client import TandemClient
    from edge.events import Text

    # No cloud configured: the monitor still watches every token but cannot escalate.
    client = TandemClient(local, audit_log=None)
    raw_ms, sdk_ms = [], []
    raw_tokens = sdk_tokens = 0
    for i in range(pairs + 1):
        start = time.perf_counter()
        ids = local.encode_prompt(OVERHEAD_PROMPT)
        raw = [e.token.id for e in local.stream(ids, max_new_tokens=max_new_tokens)]
        raw_time = (time.perf_counter() - start) * 1000
        _, sdk_time, done = time_stream(client.generate(OVERHEAD_PROMPT, max_new_tokens=max_new_tokens),
                                        lambda e: isinstance(e, Text))
        if i == 0:
            continue  # warm-up pair
        raw_ms.append(raw_time)
        sdk_ms.append(sdk_time)
        raw_tokens, sdk_tokens = len(raw), done.record.tokens["edge"]
    if raw_tokens != sdk_tokens:
        raise SystemExit(f"raw engine made {raw_tokens} tokens, the SDK {sdk_tokens}: not the same work")
    raw_median, sdk_median = statistics.median(raw_ms), statistics.median(sdk_ms)
    return {
        "tokens": raw_tokens, "pairs": pairs,
        "raw_engine_ms": round(raw_median, 1), "sdk_ms": round(sdk_median, 1),
        "overhead_pct": round((sdk_median / raw_median - 1) * 100, 2),
        "pairwise_median_ratio": round(statistics.median(s / r for s, r in zip(sdk_ms, raw_ms)), 4),
    }


def http_overhead(local, pairs: int, max_new_tokens: int, stream_interval_ms: float | None = None) -> dict:
    """Median total time of the SDK vs the async SDK and the same request through serve-edge (streamed and
    whole), alternating. The openai client runs in a process of its own, as an app calling the endpoint
    would: it shares the machine's cores, not the server's interpreter (in one process its parsing of
    every chunk held the GIL the server's loop and the decode thread need)."""
    import asyncio
    import subprocess
    import threading

    from edge.async_client import AsyncTandemClient
    from edge.client import TandemClient
    from edge.events import Text
    from edge.openai_server import DEFAULT_STREAM_INTERVAL_S, bound_port, build_app, uvicorn_server

    interval_s = DEFAULT_STREAM_INTERVAL_S if stream_interval_ms is None else stream_interval_ms / 1000
    sdk = TandemClient(local, audit_log=None)  # no cloud: the local path, monitor on every token
    server = uvicorn_server(build_app(AsyncTandemClient(local, audit_log=None), model_id="bench",
                                      stream_interval_s=interval_s), host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    client = subprocess.Popen([sys.executable, __file__, "--http-client", f"http://127.0.0.1:{bound_port(server)}/v1",
                               "--max-new-tokens", str(max_new_tokens)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def over_http(mode: str) -> dict:
        client.stdin.write(mode + "\n")
        client.stdin.flush()
        return json.loads(client.stdout.readline())

    loop = asyncio.new_event_loop()
    async_sdk = AsyncTandemClient(local, audit_log=None)

    async def async_complete():
        return await async_sdk.complete(OVERHEAD_PROMPT, max_new_tokens=max_new_tokens)

    def sdk_in_a_thread():
        # serve-edge and the async SDK decode in a worker thread; so does the peer, since on a loaded
        # machine the same decode has been measured 3-4x slower from the main thread than from another.
        out = []
        worker = threading.Thread(target=lambda: out.append(time_stream(
            sdk.generate(OVERHEAD_PROMPT, max_new_tokens=max_new_tokens), lambda e: isinstance(e, Text))))
        worker.start()
        worker.join()
        return out[0]

    times: dict[str, list[float]] = {"sdk": [], "async_sdk": [], "stream": [], "whole": []}
    cpu: dict[str, list[float]] = {name: [] for name in times}
    client_cpu: dict[str, list[float]] = {"stream": [], "whole": []}
    try:
        for i in range(pairs + 1):
            cpu_start = time.process_time()
            _, sdk_ms, done = sdk_in_a_thread()
            cpu_sdk = time.process_time()
            start = time.perf_counter()
            async_answer = loop.run_until_complete(async_complete())
            async_ms = (time.perf_counter() - start) * 1000
            cpu_async = time.process_time()
            stream = over_http("stream")
            cpu_stream = time.process_time()
            whole = over_http("whole")
            cpu_whole = time.process_time()
            if not (stream["text"] == whole["text"] == async_answer.text == done.text):
                raise SystemExit("the HTTP endpoint answered differently from the SDK: not the same work")
            if i == 0:
                continue  # warm-up
            for name, ms, used in (("sdk", sdk_ms, cpu_sdk - cpu_start), ("async_sdk", async_ms, cpu_async - cpu_sdk),
                                   ("stream", stream["ms"], cpu_stream - cpu_async),
                                   ("whole", whole["ms"], cpu_whole - cpu_stream)):
                times[name].append(ms)
                cpu[name].append(used * 1000)
            for name, answer in (("stream", stream), ("whole", whole)):
                client_cpu[name].append(answer["cpu_ms"])
    finally:
        client.stdin.close()
        client.wait(timeout=30)
        server.should_exit = True
        thread.join(timeout=30)
        loop.run_until_complete(async_sdk.aclose())
        loop.close()
    med = {name: statistics.median(values) for name, values in times.items()}
    return {
        "tokens": done.record.tokens["edge"], "pairs": pairs, "stream_interval_ms": interval_s * 1000,
        "sdk_ms": round(med["sdk"], 1),
        "async_sdk_ms": round(med["async_sdk"], 1),
        "async_overhead_pct": round((med["async_sdk"] / med["sdk"] - 1) * 100, 2),
        "http_stream_ms": round(med["stream"], 1), "http_whole_ms": round(med["whole"], 1),
        "stream_overhead_pct": round((med["stream"] / med["sdk"] - 1) * 100, 2),
        "whole_overhead_pct": round((med["whole"] / med["sdk"] - 1) * 100, 2),
        "pairwise_median_ratio": {name: round(statistics.median(h / s for h, s in zip(times[name], times["sdk"])), 4)
                                  for name in ("async_sdk", "stream", "whole")},
        "server_cpu_ms": {name: round(statistics.median(values), 1) for name, values in cpu.items()},
        "client_cpu_ms": {name: round(statistics.median(values), 1) for name, values in client_cpu.items()},
    }


def http_client(url: str, max_new_tokens: int) -> None:
    """The benchmark's HTTP client, in a process of its own: for each line on stdin ("stream" or "whole"),
    one request through the official openai client; a JSON line back with its time, CPU and text."""
    import openai

    api = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
    request = {"model": "bench", "messages": [{"role": "user", "content": OVERHEAD_PROMPT}],
               "max_tokens": max_new_tokens}
    for line in sys.stdin:
        cpu, start = time.process_time(), time.perf_counter()
        if line.strip() == "stream":
            chunks = list(api.chat.completions.create(**request, stream=True,
                                                      stream_options={"include_usage": True}))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            text = api.chat.completions.create(**request).choices[0].message.content
        ms = (time.perf_counter() - start) * 1000
        print(json.dumps({"ms": ms, "cpu_ms": (time.process_time() - cpu) * 1000, "text": text}), flush=True)


def print_http(cost: dict) -> None:
    print(f"local path over HTTP (serve-edge, openai client, loopback, stream interval {cost['stream_interval_ms']:g} ms), "
          f"{cost['tokens']} tokens, median of "
          f"{cost['pairs']} alternating runs: SDK {cost['sdk_ms']} ms, async SDK {cost['async_sdk_ms']} ms "
          f"({cost['async_overhead_pct']:+.2f} %), streamed {cost['http_stream_ms']} ms "
          f"({cost['stream_overhead_pct']:+.2f} %), whole {cost['http_whole_ms']} ms "
          f"({cost['whole_overhead_pct']:+.2f} %); pairwise median ratios {cost['pairwise_median_ratio']}; "
          f"server process CPU ms {cost['server_cpu_ms']}, client process CPU ms {cost['client_cpu_ms']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--runs", type=int, default=3, help="runs per path (median reported)")
    parser.add_argument("--pairs", type=int, default=9, help="raw/SDK pairs for the overhead figure")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--http-only", action="store_true", help="only the HTTP endpoint's overhead over the SDK")
    parser.add_argument("--stream-interval-ms", type=float, default=None,
                        help="serve-edge's --stream-interval-ms for the streamed runs (0: a chunk per token)")
    parser.add_argument("--http-client", metavar="URL", help=argparse.SUPPRESS)  # the benchmark's own client process
    args = parser.parse_args()
    if args.http_client:
        http_client(args.http_client, args.max_new_tokens)
        return

    import tempfile

    import torch

    from cloud.server import start_server
    from engine.runtime import LocalModel

    torch.set_num_threads(args.threads)
    local = LocalModel.load(args.model, max_context=2048)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads"
    if args.http_only:
        http = http_overhead(local, args.pairs, args.max_new_tokens * 2, args.stream_interval_ms)
        print_http(http)
        print(json.dumps({"benchmark": "e2e_http", "machine": machine, "http_overhead": http}))
        return
    server, port = start_server(LocalModel.load(args.model, max_context=2048))
    with tempfile.TemporaryDirectory() as tmp:
        rows = paths(local, f"127.0.0.1:{port}", args.runs, args.max_new_tokens, Path(tmp) / "audit.jsonl")
    server.stop(0)
    cost = overhead(local, args.pairs, args.max_new_tokens * 2)
    http = http_overhead(local, args.pairs, args.max_new_tokens * 2, args.stream_interval_ms)

    print(f"end to end through the SDK, {args.model} on both tiers, cloud on loopback ({machine})")
    cols = ["path", "route", "answered_by", "reason", "tokens_edge", "tokens_cloud", "ttft_ms", "total_ms",
            "bytes_sent"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    print(f"\nlocal path, {cost['tokens']} tokens, median of {cost['pairs']} alternating pairs: raw engine "
          f"{cost['raw_engine_ms']} ms, SDK {cost['sdk_ms']} ms -> SDK overhead {cost['overhead_pct']:+.2f} % "
          f"(pairwise median ratio {cost['pairwise_median_ratio']})")
    print_http(http)
    print(json.dumps({"benchmark": "e2e", "machine": machine, "paths": rows, "overhead": cost, "http_overhead": http}))


if __name__ == "__main__":
    main()
