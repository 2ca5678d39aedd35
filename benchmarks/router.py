"""Decision latency of the router: `decide()` on 1 KB and 32 KB requests.

The requests are support-desk prose built from fixed templates with a seeded
generator: every few sentences carry personal data (e-mail, phone, card, IBAN,
national IDs, IP address, tokens, passwords; some in German and Dutch, some
with full-width digits or `[at]`) among the numbers that must not be tagged
(order numbers, dates, prices, versions). Each size gets its own set of
distinct texts, cycled, after a warm-up. Prints a fixed-width table (p50, p99,
mean, the thread's CPU time p50/p99, throughput, findings per request; then the median time of each detector
on 32 KB) and ends with one JSON line.

    python benchmarks/router.py
    python benchmarks/router.py --policy policies/strict-privacy.yaml --iterations 5000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and this file,
# being named router.py, would shadow the router package: drop that folder.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from router import decide, load_policy  # noqa: E402
from router.detectors import DETECTORS, ON_DIGIT_VIEW  # noqa: E402
from router.normalize import digit_view, text_view  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

GOAL_P99_1KB_US = 1000.0

PLAIN = [
    "Hi team, order {order} still shows as processing although it was paid on {date}.",
    "The invoice lists {price} but the quote from {date} said {price2}.",
    "After upgrading to version {version} the app crashes when I open the settings page.",
    "Could you explain why the delivery estimate moved from {date} to {date2}?",
    "We ordered {qty} units for the Berlin office and received only {qty2}.",
    "The dashboard shows {pct}% uptime for last month, which does not match our logs.",
    "Please summarize the attached meeting notes in three bullet points.",
    "Tracking says the parcel left the depot at {time} but nothing arrived.",
    "Is there a way to export the report as CSV instead of PDF?",
    "Our plan renews on {date}; we would like to switch to annual billing.",
]
PERSONAL = [
    "You can reach me at {email} or on {phone}.",
    "The refund should go to card {card}, not the old one.",
    "Please wire the deposit to {iban} before Friday.",
    "My SSN is {ssn} if you need it for the tax form.",
    "The login attempts came from {ip} around {time}.",
    "Our CI uses the token {token} which may have leaked.",
    "Forward the contract to {email} and copy my assistant at {email2}.",
    "Meine Steuer-ID lautet {idnr}, das Passwort für das Portal ist {password}.",
    "Mijn BSN is {bsn}; bel me op {phone}.",
    "NI number {nino}, key {vendor_key} in the deploy script.",
    "Carte ４１１１ １１１１ １１１１ １１１１, mail {email_at}.",
]
VALUES = {
    "email": ["dana.whitfield@protonmail.com", "j.smith+billing@acme-corp.com", "priya_2019@yahoo.co.in"],
    "email2": ["assistant@startup.io", "m.schulz@firma.de"],
    "phone": ["(212) 555-1234", "+44 20 7946 0958", "030 12345678", "98765 43210"],
    "card": ["4111 1111 1111 1111", "5500 0055 5555 5559", "3488 973192 81101"],
    "iban": ["DE89 3704 0044 0532 0130 00", "GB82 WEST 1234 5698 7654 32"],
    "ssn": ["146-25-2971", "536-22-1234"],
    "ip": ["203.0.113.45", "10.0.0.254", "2001:db8:85a3::8a2e:370:7334"],
    "token": ["ghp_qtPQe6aIUFzTHFAwXvPw9zfea1Dg1O4gd9KG", "AKIALDPA6HNBEGTDNBVQ"],
    "idnr": ["36 574 261 809", "36574261809"],
    "bsn": ["111222333"],
    "nino": ["JG 10 37 59 A"],
    "password": ["Sommer2024!", "Blume#77x"],
    "vendor_key": ["sk-proj-4fT9xQ2mLp7RzK1vW8yN3bC6dJ0hG5sA2eU9iO4kM7nB1cX", "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567"],
    "email_at": ["jane.doe [at] example [dot] org", "jane.doe＠example.org"],
}


def request_text(size: int, seed: int) -> str:
    """Prose of about `size` bytes; roughly one sentence in four carries personal data."""
    rng = random.Random(seed)
    sentences: list[str] = []
    while sum(len(s) + 1 for s in sentences) < size:
        template = rng.choice(PERSONAL if rng.random() < 0.25 else PLAIN)
        fields = {k: rng.choice(v) for k, v in VALUES.items()}
        fields |= {
            "order": str(rng.randint(10_000_000, 99_999_999)),
            "date": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "date2": f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/2025",
            "price": f"${rng.randint(10, 9999):,}.{rng.randint(0, 99):02d}",
            "price2": f"€{rng.randint(10, 9999)},{rng.randint(0, 99):02d}",
            "version": f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
            "qty": str(rng.randint(2, 500)),
            "qty2": str(rng.randint(1, 400)),
            "pct": f"{rng.uniform(95, 99.99):.2f}",
            "time": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
        }
        sentences.append(template.format(**fields))
    return " ".join(sentences).encode("utf-8")[:size].decode("utf-8", "ignore")


def measure(texts: list[str], policy, iterations: int, warmup: int) -> dict:
    for i in range(warmup):
        decide(texts[i % len(texts)], token_count=len(texts[i % len(texts)]) // 4, policy=policy)
    times, cpu, findings = [], [], []
    for i in range(iterations):
        text = texts[i % len(texts)]
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        decision = decide(text, token_count=len(text) // 4, policy=policy)
        cpu.append((time.thread_time_ns() - start_cpu) / 1000)
        times.append((time.perf_counter_ns() - start) / 1000)
        findings.append(sum(decision.findings.values()))
    times.sort()
    cpu.sort()
    size = len(texts[0].encode("utf-8"))
    return {
        "size_bytes": size,
        "iterations": iterations,
        "p50_us": round(times[len(times) // 2], 1),
        "p99_us": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
        "mean_us": round(statistics.fmean(times), 1),
        "cpu_p50_us": round(cpu[len(cpu) // 2], 1),  # this thread's CPU time: what a shared machine's
        "cpu_p99_us": round(cpu[min(len(cpu) - 1, int(len(cpu) * 0.99))], 1),  # preemptions leave out
        "max_us": round(times[-1], 1),
        "mb_per_s": round(size / statistics.fmean(times), 2),
        "findings_per_request": round(statistics.fmean(findings), 1),
    }


def detector_medians(text: str, repeats: int) -> dict[str, float]:
    """Each detector alone on the view it reads in `decide()` (the views' own time is `views`)."""
    views = text_view(text)
    digits = digit_view(views)
    out = {"views": round(statistics.median(_timed(lambda: digit_view(text_view(text))) for _ in range(repeats)), 1)}
    for name, find in DETECTORS.items():
        source = digits.text if name in ON_DIGIT_VIEW else views.text
        samples = []
        for _ in range(repeats):
            start = time.perf_counter_ns()
            list(find(source))
            samples.append((time.perf_counter_ns() - start) / 1000)
        out[name] = round(statistics.median(samples), 1)
    return out


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo; elsewhere what `platform` knows), and its core count."""
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name or platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"


def _timed(run) -> float:
    start = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - start) / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=str(REPO / "policies" / "default.yaml"))
    parser.add_argument("--iterations", type=int, default=3000, help="decisions timed for 1 KB (32 KB: a tenth)")
    parser.add_argument("--texts", type=int, default=50, help="distinct texts per size")
    args = parser.parse_args(argv)

    policy = load_policy(args.policy)
    results = []
    for size, iterations in ((1024, args.iterations), (32 * 1024, max(50, args.iterations // 10))):
        texts = [request_text(size, seed) for seed in range(args.texts)]
        results.append(measure(texts, policy, iterations, warmup=min(200, iterations)))
    per_detector = detector_medians(request_text(32 * 1024, 0), repeats=30)

    cpu = cpu_name()
    print(f"router decide() latency, policy {Path(args.policy).name} ({policy.content_hash[:12]}), "
          f"Python {platform.python_version()} on {cpu}")
    print(f"{'size':>8} {'iters':>6} {'p50 us':>9} {'p99 us':>9} {'mean us':>9} {'max us':>9} {'cpu p50':>9} "
          f"{'cpu p99':>9} {'MB/s':>7} {'found':>6}")
    for r in results:
        print(f"{r['size_bytes']:>8} {r['iterations']:>6} {r['p50_us']:>9.1f} {r['p99_us']:>9.1f} {r['mean_us']:>9.1f} "
              f"{r['max_us']:>9.1f} {r['cpu_p50_us']:>9.1f} {r['cpu_p99_us']:>9.1f} {r['mb_per_s']:>7.2f} "
              f"{r['findings_per_request']:>6.1f}")
    print("per detector on 32 KB (median us): " + ", ".join(f"{k} {v}" for k, v in per_detector.items()))
    p99_1kb = results[0]["p99_us"]
    print(f"goal p99 < {GOAL_P99_1KB_US:.0f} us for 1 KB: {'met' if p99_1kb < GOAL_P99_1KB_US else 'MISSED'} "
          f"(CPU time p99 {results[0]['cpu_p99_us']:.0f} us: the wall-clock p99 of a machine shared with other "
          "jobs is mostly their time)")
    print(json.dumps({
        "benchmark": "router.decide",
        "policy": Path(args.policy).name,
        "policy_hash": policy.content_hash,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu,
        "results": results,
        "per_detector_32kb_median_us": per_detector,
        "goal_p99_1kb_us": GOAL_P99_1KB_US,
        "goal_met": p99_1kb < GOAL_P99_1KB_US,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
