"""KV hand-off on the real SmolLM2: codec size, fidelity and speed, and hand-off time
against a cloud re-prefill on loopback and over a shaped link.

1. Codecs (fp16 = the peer): bytes against fp16, encode / decode / round-trip MB/s
   of fp16-equivalent input on one thread, and top-1 agreement over the next 256
   tokens of each text in data/texts/eval (speeches 1790-1999, scripture, licence
   texts, Python's reference; the q4 codec was tuned on data/texts/tune only): the
   model's greedy pick at each position when continuing from the decoded cache
   against continuing from the exact cache (teacher-forced on the text), on a
   2,048-token context where the text allows (else all but its last 256 tokens).
   The hand-off is made as the SDK makes it: q4 sends all but the last
   `recompute_tokens` positions and the receiver prefills those from the token
   IDs (the `recomp` column); the size ratio is against fp16 of the positions
   sent, the speed is on the whole cache. Mean and worst text per codec. The `q4 edge->cloud` row is the
   cross-precision case: the 4-bit device model's cache, q4-encoded, continued by
   the full-precision model, against that model continuing from its own exact
   cache.
2. Hand-off (re-prefill = the peer): wall time until the cloud has chosen its
   next token, either by Generate with the token IDs (the cloud prefills them) or
   by encoding the edge's cache, UploadKV and ResumeFromKV. The server is `tandem
   serve-cloud` in its own process: on 127.0.0.1, and inside a network namespace
   behind a veth pair shaped to 50 Mbit/s each way with 40 ms RTT (needs root, ip
   and tc; skipped otherwise). The rate is `tc` on both veth ends: netem where the
   kernel has it, else tbf. Without netem the delay is added by a loopback relay
   in this process that holds every chunk 20 ms in each direction.

Prints fixed-width tables, the break-even context length per link, and one JSON line.

    python benchmarks/kv_handoff.py                      # 512, 2048, 8000 tokens
    python benchmarks/kv_handoff.py --lengths 512,2048 --no-shaped
    python benchmarks/kv_handoff.py --texts tune --no-handoff   # the tuning texts only
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # this folder would shadow the packages it measures

import torch  # noqa: E402

from cloud.client import CloudClient  # noqa: E402
from engine.generate import prefill  # noqa: E402
from engine.kv import CodecOptions, decode_frames, encode_cache, layout_of  # noqa: E402
from engine.kv.profiles import SMOLLM2_135M_KEY8  # noqa: E402
from engine.runtime import LocalModel  # noqa: E402

TEXTS = REPO / "data" / "texts"
CONTINUATION = 256
NETNS, VETH_HOST, VETH_NS = "tkvbench", "tkvb0", "tkvb1"
HOST_IP, NS_IP = "10.77.0.1", "10.77.0.2"
CODECS = {
    "fp16": CodecOptions("fp16"),
    "int8": CodecOptions("int8"),
    "q4": CodecOptions("q4", key8=SMOLLM2_135M_KEY8),  # what CodecOptions.for_model gives SmolLM2
    "q4 no profile": CodecOptions("q4"),  # no head's keys at 8 bit
    "q4 no recompute": CodecOptions("q4", key8=SMOLLM2_135M_KEY8, recompute_tokens=0),  # every position sent
}
TIMEOUT_S = 900.0


def text_ids(model: LocalModel, which: str) -> list[tuple[str, list[int]]]:
    """(name, token IDs) of each text in data/texts/<which>."""
    paths = sorted((TEXTS / which).glob("*.txt"))
    if not paths:
        raise SystemExit(f"no texts in {TEXTS / which}")
    return [(p.stem, model.tokenizer.encode(p.read_text(encoding="utf-8"))) for p in paths]


def long_ids(model: LocalModel, n: int) -> list[int]:
    """n token IDs of the report texts, one after another."""
    ids: list[int] = []
    for _, more in text_ids(model, "eval"):
        ids += more
    while len(ids) < n:
        ids += ids
    return ids[:n]


@torch.inference_mode()
def prefilled(model: LocalModel, ids: list[int], room: int = 0):
    cache = model.new_cache(len(ids) + room)
    prefill(model.model, cache, ids)
    return cache


def copy_cache(model: LocalModel, cache, room: int):
    return cache.copy_into(model.new_cache(cache.pos + room))


@torch.inference_mode()
def top1(model: LocalModel, cache, continuation: list[int]) -> torch.Tensor:
    return model.model(torch.tensor([continuation]), cache)[0].argmax(-1)


def received_top1(model: LocalModel, sender: LocalModel, cache, prompt: list[int], continuation: list[int],
                  options: CodecOptions) -> tuple[torch.Tensor, int]:
    """What the receiver picks on the continuation after a hand-off made as the SDK makes it: the
    positions `options` sends go through the codec, the receiver prefills the rest of the prompt
    from its token IDs. Also the bytes sent."""
    sent = options.sent_tokens(len(prompt))
    frames = list(encode_cache(cache, sender.fingerprint, options, n_tokens=sent))
    received = decode_frames(frames, layout_of(cache), model.fingerprint,
                             lambda n: model.new_cache(len(prompt) + len(continuation)), max_tokens=model.max_context)
    rest = prompt[sent:]
    picks = top1(model, received.cache, rest + continuation)[len(rest):]
    return picks, sum(map(len, frames))


def codec_table(full: LocalModel, device: LocalModel | None, texts: list[tuple[str, list[int]]],
                context: int, codecs: list[str], agree: list[str]) -> tuple[list[dict], list[dict]]:
    """Per codec: size, speed, mean and worst agreement (for the codecs in `agree`); and per
    text: each codec's agreement."""
    names = [*codecs, *(["q4 edge->cloud"] if device is not None else [])]
    measured = [n for n in names if n in agree or n == "q4 edge->cloud"]
    rows = {name: {"codec": name, "agree": [], "bytes": 0, "fp16_bytes": 0, "enc": [], "dec": [], "recomputed": 0}
            for name in names}
    per_text = []
    for text, ids in texts:
        n = min(context, len(ids) - CONTINUATION)
        prompt, continuation = ids[:n], ids[n:n + CONTINUATION]
        exact = prefilled(full, prompt, CONTINUATION)
        reference = top1(full, copy_cache(full, exact, CONTINUATION), continuation)
        per_position = exact.k.shape[0] * exact.k.shape[2] * exact.k.shape[4] * 2 * 2  # fp16 keys and values
        line = {"text": text, "context": n}
        for name in codecs:
            options = CODECS[name]
            torch.set_num_threads(1)
            enc, dec = [], []
            for _ in range(2):
                t0 = time.perf_counter()
                frames = list(encode_cache(exact, full.fingerprint, options))
                enc.append(time.perf_counter() - t0)
                target = full.new_cache(exact.pos + CONTINUATION)  # outside the timing: a re-prefill needs it too
                t0 = time.perf_counter()
                decode_frames(frames, layout_of(exact), full.fingerprint, lambda n: target, max_tokens=full.max_context)
                dec.append(time.perf_counter() - t0)
            torch.set_num_threads(os.cpu_count() or 1)
            row = rows[name]
            row["enc"].append(exact.pos * per_position / min(enc))
            row["dec"].append(exact.pos * per_position / min(dec))
            picks, nbytes = received_top1(full, full, exact, prompt, continuation, options)
            row["bytes"] += nbytes
            row["fp16_bytes"] += options.sent_tokens(n) * per_position
            row["recomputed"] = n - options.sent_tokens(n)
            if name in agree:
                line[name] = float((picks == reference).float().mean())
                row["agree"].append(line[name])
        if device is not None:
            edge = prefilled(device, prompt, 0)
            options = CodecOptions.for_model("q4", device.fingerprint)
            picks, nbytes = received_top1(full, device, edge, prompt, continuation, options)
            row = rows["q4 edge->cloud"]
            row["bytes"] += nbytes
            row["fp16_bytes"] += options.sent_tokens(n) * per_position
            row["recomputed"] = n - options.sent_tokens(n)
            line["q4 edge->cloud"] = float((picks == reference).float().mean())
            row["agree"].append(line["q4 edge->cloud"])
        per_text.append(line)
        print(f"  {text:<28}{n:>6} tokens  " + "  ".join(f"{k} {line[k] * 100:.1f}" for k in measured),
              file=sys.stderr)
    out = []
    for row in rows.values():
        worst = min(range(len(row["agree"])), key=lambda i: row["agree"][i]) if row["agree"] else None
        out.append({
            "codec": row["codec"], "bytes": row["bytes"] // len(texts), "recomputed_tokens": row["recomputed"],
            "ratio_vs_fp16": row["fp16_bytes"] / row["bytes"],
            "top1_agreement": sum(row["agree"]) / len(row["agree"]) if row["agree"] else None,
            "worst_top1_agreement": row["agree"][worst] if row["agree"] else None,
            "worst_text": texts[worst][0] if row["agree"] else None,
            "encode_mb_s": sum(row["enc"]) / len(row["enc"]) / 1e6 if row["enc"] else None,
            "decode_mb_s": sum(row["dec"]) / len(row["dec"]) / 1e6 if row["dec"] else None,
        })
        if row["enc"]:
            e, d = out[-1]["encode_mb_s"], out[-1]["decode_mb_s"]
            out[-1]["round_trip_mb_s"] = 1 / (1 / e + 1 / d)
    return out, per_text


# --- the server, on loopback or behind a shaped veth --------------------------------------------


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def shaped_namespace(mbit: int, one_way_ms: int):
    """A namespace reachable at NS_IP over a veth pair with netem on both ends."""
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    try:
        sh("ip", "netns", "add", NETNS)
        sh("ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS)
        sh("ip", "link", "set", VETH_NS, "netns", NETNS)
        sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", VETH_HOST)
        sh("ip", "link", "set", VETH_HOST, "up")
        ns = ("ip", "netns", "exec", NETNS)
        sh(*ns, "ip", "addr", "add", f"{NS_IP}/24", "dev", VETH_NS)
        sh(*ns, "ip", "link", "set", VETH_NS, "up")
        sh(*ns, "ip", "link", "set", "lo", "up")
        netem = ("root", "netem", "delay", f"{one_way_ms}ms", "rate", f"{mbit}mbit", "limit", "100000")
        tbf = ("root", "tbf", "rate", f"{mbit}mbit", "burst", "64kb", "latency", "200ms")
        try:
            sh("tc", "qdisc", "add", "dev", VETH_HOST, *netem)
            sh(*ns, "tc", "qdisc", "add", "dev", VETH_NS, *netem)
            delay_ms = 0
        except subprocess.CalledProcessError:  # no sch_netem in this kernel: tbf + a delaying relay
            subprocess.run(["tc", "qdisc", "del", "dev", VETH_HOST, "root"], capture_output=True)
            sh("tc", "qdisc", "add", "dev", VETH_HOST, *tbf)
            sh(*ns, "tc", "qdisc", "add", "dev", VETH_NS, *tbf)
            delay_ms = one_way_ms
        yield ns, delay_ms
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
        subprocess.run(["ip", "link", "del", VETH_HOST], capture_output=True)


@contextlib.contextmanager
def cloud_server(prefix: tuple[str, ...], host: str, max_context: int):
    cmd = [*prefix, sys.executable, "-m", "tandem", "serve-cloud", "--host", host, "--port", "0",
           "--max-context", str(max_context), "--grace", "0"]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        port = None
        for line in proc.stderr:
            if match := re.search(r"serving .* on [\d.]+:(\d+)", line):
                port = int(match.group(1))
                break
        if port is None:
            raise SystemExit(f"serve-cloud did not start: {' '.join(cmd)}")
        yield f"{host}:{port}"
    finally:
        proc.kill()
        proc.wait(timeout=30)


class DelayRelay:
    """Loopback TCP relay to `upstream` that holds each chunk `delay_ms` in each direction."""

    def __init__(self, upstream: tuple[str, int], delay_ms: float) -> None:
        self.upstream, self.delay = upstream, delay_ms / 1000
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for a, b in ((client, server), (server, client)):
                queue: collections.deque = collections.deque()
                ready = threading.Condition()
                threading.Thread(target=self._read, args=(a, queue, ready), daemon=True).start()
                threading.Thread(target=self._write, args=(b, queue, ready), daemon=True).start()

    def _read(self, src: socket.socket, queue: collections.deque, ready: threading.Condition) -> None:
        while True:
            try:
                data = src.recv(262144)
            except OSError:
                data = b""
            with ready:
                queue.append((time.monotonic() + self.delay, data))
                ready.notify()
            if not data:
                return

    def _write(self, dst: socket.socket, queue: collections.deque, ready: threading.Condition) -> None:
        while True:
            with ready:
                while not queue:
                    ready.wait()
                due, data = queue.popleft()
            time.sleep(max(0.0, due - time.monotonic()))
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            try:
                dst.sendall(data)
            except OSError:
                return


def handoff_times(address: str, full: LocalModel, caches: dict[int, tuple], codecs: list[str]) -> list[dict]:
    rows = []
    with CloudClient(address, max_message_bytes=8 * 1024 * 1024) as client:
        client.generate([1, 2, 3], max_new_tokens=1, timeout=TIMEOUT_S)  # warm up the connection and server
        for n, (ids, cache) in caches.items():
            t0 = time.perf_counter()
            by_ids = client.generate(ids, max_new_tokens=1, timeout=TIMEOUT_S)
            row = {"tokens": n, "reprefill_ms": (time.perf_counter() - t0) * 1000, "kv": {}}
            for codec in codecs:
                t0 = time.perf_counter()
                sent = CODECS[codec].sent_tokens(n)
                up = client.upload_kv(ids[:sent], encode_cache(cache, full.fingerprint, CODECS[codec], n_tokens=sent),
                                      codec=codec, reserve_tokens=n - sent + 1, timeout=TIMEOUT_S)
                by_kv = client.resume(up.kv_handle, ids, max_new_tokens=1, timeout=TIMEOUT_S)
                ms = (time.perf_counter() - t0) * 1000
                assert by_kv.result.usage.cached_prompt_tokens == min(sent, n - 1)
                row["kv"][codec] = {"ms": ms, "bytes": up.bytes, "same_token": by_kv.token_ids == by_ids.token_ids}
            rows.append(row)
    return rows


def break_even(rows: list[dict], codec: str) -> str:
    """Where KV and re-prefill cross, interpolated linearly between measured lengths."""
    points = [(r["tokens"], r["reprefill_ms"] - r["kv"][codec]["ms"]) for r in rows if codec in r["kv"]]
    if all(d > 0 for _, d in points):
        return f"KV faster at every length measured (from {points[0][0]} tokens)"
    if all(d <= 0 for _, d in points):
        return f"re-prefill faster at every length measured (up to {points[-1][0]} tokens)"
    for (n0, d0), (n1, d1) in zip(points, points[1:]):
        if (d0 <= 0) != (d1 <= 0):
            return f"~{n0 + (n1 - n0) * (-d0) / (d1 - d0):.0f} tokens (KV faster {'above' if d1 > 0 else 'below'})"
    return "no single crossing"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="512,2048,8000", help="context lengths for the hand-off timing")
    p.add_argument("--context", type=int, default=2048, help="context for the codec table")
    p.add_argument("--texts", choices=("eval", "tune"), default="eval",
                   help="data/texts/eval reports; data/texts/tune is what the q4 codec was tuned on")
    p.add_argument("--codecs", default=",".join(CODECS), help=f"rows of the codec table, of: {', '.join(CODECS)}")
    p.add_argument("--agree", default=None, help="codec rows whose top-1 agreement is measured (default: all)")
    p.add_argument("--no-cross", action="store_true", help="no cross-precision row (skips the device model)")
    p.add_argument("--no-handoff", action="store_true", help="only the codec table")
    p.add_argument("--no-table", action="store_true", help="only the hand-off timing")
    p.add_argument("--no-shaped", action="store_true", help="skip the netem-shaped link")
    p.add_argument("--mbit", type=int, default=50)
    p.add_argument("--rtt-ms", type=int, default=40)
    args = p.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    max_context = 8192
    torch.set_num_threads(os.cpu_count() or 1)
    table_codecs = args.codecs.split(",")
    if unknown := [c for c in table_codecs if c not in CODECS]:
        raise SystemExit(f"unknown codec rows {unknown}; choose among {', '.join(CODECS)}")
    full = LocalModel.load("smollm2-135m", precision="full", max_context=max_context)
    device = None
    try:
        if not args.no_cross:
            device = LocalModel.load("smollm2-135m", precision="device", max_context=max_context)
    except Exception as exc:  # the device engine is optional here: report and go on
        print(f"device model unavailable ({type(exc).__name__}: {exc}); no cross-precision row", file=sys.stderr)

    codecs: list[dict] = []
    per_text: list[dict] = []
    if not args.no_table:
        texts = text_ids(full, args.texts)
        agree = args.agree.split(",") if args.agree else table_codecs
        codecs, per_text = codec_table(full, device, texts, args.context, table_codecs, agree)
        print(f"\nKV codecs: SmolLM2-135M, {len(texts)} texts of data/texts/{args.texts}, {args.context}-token context "
              f"where the text allows, next {CONTINUATION} tokens; MB/s of fp16-equivalent input, 1 thread")
        print(f"{'codec':<16}{'bytes':>12}{'vs fp16':>9}{'recomp':>7}{'mean agree':>12}{'worst':>8}  {'worst text':<26}"
              f"{'enc MB/s':>9}{'dec MB/s':>9}{'rt MB/s':>9}")
        for r in codecs:
            speed = (f"{r['encode_mb_s']:>9.0f}{r['decode_mb_s']:>9.0f}{r['round_trip_mb_s']:>9.0f}"
                     if r["encode_mb_s"] else f"{'-':>9}{'-':>9}{'-':>9}")
            quality = (f"{r['top1_agreement'] * 100:>11.2f}%{r['worst_top1_agreement'] * 100:>7.2f}%  "
                       f"{r['worst_text']:<26}" if r["top1_agreement"] is not None else f"{'-':>12}{'-':>8}  {'':<26}")
            print(f"{r['codec']:<16}{r['bytes']:>12}{r['ratio_vs_fp16']:>8.2f}x{r['recomputed_tokens']:>7}{quality}{speed}")
    if args.no_handoff:
        print(json.dumps({"benchmark": "kv_handoff", "machine": platform.machine(), "cpus": os.cpu_count(),
                          "texts": args.texts, "codecs": codecs, "per_text": per_text}))
        return 0

    caches = {}
    for n in lengths:
        ids = long_ids(full, n)
        caches[n] = (ids, prefilled(full, ids))
    links = [("loopback", (), "127.0.0.1", ["fp16", "int8", "q4"])]
    if not args.no_shaped:
        links.append((f"{args.mbit} Mbit/s, {args.rtt_ms} ms RTT", None, NS_IP, ["int8", "q4"]))
    handoff = {}
    for name, prefix, host, link_codecs in links:
        try:
            if prefix is None:
                with shaped_namespace(args.mbit, args.rtt_ms // 2) as (ns, delay_ms), \
                        cloud_server(ns, host, max_context) as addr:
                    if delay_ms:
                        host_, port_ = addr.rsplit(":", 1)
                        relay = DelayRelay((host_, int(port_)), delay_ms)
                        addr = f"127.0.0.1:{relay.port}"
                        name += " (tbf + 20 ms relay each way)"
                    handoff[name] = handoff_times(addr, full, caches, link_codecs)
            else:
                with cloud_server(prefix, host, max_context) as addr:
                    handoff[name] = handoff_times(addr, full, caches, link_codecs)
        except (subprocess.CalledProcessError, FileNotFoundError, PermissionError) as exc:
            print(f"\n{name}: skipped ({exc}); the shaped link needs root, ip and tc", file=sys.stderr)
            continue
        print(f"\nHand-off until the cloud's next token, {name} (ratio = re-prefill time / KV time)")
        header = f"{'tokens':>7}{'re-prefill ms':>15}" + "".join(f"{c + ' ms':>11}{c + ' MB':>9}{'ratio':>7}"
                                                                   for c in link_codecs)
        print(header)
        for r in handoff[name]:
            cells = "".join(f"{r['kv'][c]['ms']:>11.0f}{r['kv'][c]['bytes'] / 1e6:>9.1f}"
                            f"{r['reprefill_ms'] / r['kv'][c]['ms']:>6.2f}x" for c in link_codecs)
            print(f"{r['tokens']:>7}{r['reprefill_ms']:>15.0f}{cells}")
        for c in link_codecs:
            print(f"  break-even {c}: {break_even(handoff[name], c)}")
    print(json.dumps({"benchmark": "kv_handoff", "machine": platform.machine(), "cpus": os.cpu_count(),
                      "texts": args.texts, "codecs": codecs, "per_text": per_text, "handoff": handoff}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
