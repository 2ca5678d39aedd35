"""How well does the router know when the device is wrong?

The embedded device model (SmolLM2-135M-Instruct at device precision, greedy,
through the chat template) answers every question of benchmarks/questions.py;
each answer is labelled by router.answers. The judge is fitted on the fit split
exactly as `tandem calibrate` fits it, then applied to the test split through
the router's own pure-Python path (router.judge), the way the SDK applies it.

Printed and written (Markdown table + PNG): AUROC for predicting a correct
answer of each single signal, of the pre-decoding probe and of the judge; the
accuracy of the answers kept on the device at 10..60 % escalation for each,
against random escalation and a perfect judge (oracle); the two-stage rule the
policy runs (probe before decoding, judge at the window or the answer's end);
and the hand-set rule of the previous default policy.

    python -m benchmarks.routing [--cache PATH] [--out DIR] [--write-judge FILE]

The device answers (~1,600 questions, ~0.3 s each on a quiet core) are cached
in --cache, so refits and plots are instant.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.questions import questions
from router.answers import is_correct
from router.judge import FEATURES, Judge
from router.monitor import StreamMonitor
from router.policy import ConfidenceRule, EscalationAction, Signal
from tandem.calibrate import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_WINDOW,
    Observed,
    auroc,
    calibration_file,
    escalation_outcome,
    fit_judge,
    load_observed,
    observe,
    save_observed,
)

RATES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
# The hand-set rule the default policy shipped before the calibrated judge.
OLD_DEFAULT = ConfidenceRule(Signal.QUANTILE_PROB, 0.2, 16, 8, EscalationAction.ESCALATE_CONTINUE, 0.1)
# Single signals, oriented so that higher means "more likely right" (entropies are negated).
SINGLE = ("first_logprob", "first_margin", "first_entropy", "min_logprob", "mean_logprob", "p10_prob",
          "mean_entropy", "max_entropy", "mean_margin", "min_margin")
NEGATED = {"first_entropy", "mean_entropy", "max_entropy"}


def answers(rows: list[dict], cache: Path) -> list[Observed]:
    if cache.is_file():
        observed = load_observed(cache)
        if len(observed) == len(rows):
            return observed
        print(f"{cache} holds {len(observed)} answers, not {len(rows)}: answering again", file=sys.stderr)
    import torch

    from engine.registry import resolve
    from engine.runtime import LocalModel

    torch.set_num_threads(1)
    local = LocalModel.load(resolve("smollm2-135m"), max_context=1024, precision="device")
    observed, t0 = [], time.monotonic()
    for i, row in enumerate(rows):
        observed.append(observe(local, local.encode_prompt(row["prompt"]), max_new_tokens=DEFAULT_MAX_NEW_TOKENS))
        print(f"\r{i + 1}/{len(rows)} answered, {time.monotonic() - t0:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_observed(cache, observed)
    return observed


def device_fingerprints() -> tuple[dict[str, str], str]:
    from engine.registry import resolve
    from engine.runtime import LocalModel

    local = LocalModel.load(resolve("smollm2-135m"), max_context=256, precision="device")
    return local.fingerprint.to_dict(), local.tokenizer.fingerprint


def kept_accuracy(score: np.ndarray, correct: np.ndarray, rate: float) -> float:
    """Accuracy of the answers kept after escalating the `rate` with the lowest scores."""
    order = np.argsort(score, kind="mergesort")
    return float(correct[order[round(rate * len(correct)):]].mean())


def judge_router_path(judge: Judge, o: Observed) -> tuple[float, float]:
    """(prompt probe P, judge P) for one answer, computed by router.judge as the SDK does."""
    state = judge.start()
    k = min(len(o.logprobs), judge.window)
    for i in range(k):
        state.observe(o.logprobs[i], o.entropies[i], o.margins[i], o.hidden[i].tolist())
    finished = len(o.logprobs) <= judge.window and o.finish != "length"
    return state.prompt_p, state.score(finished=finished)


def old_rule(o: Observed, *, judge_end: bool) -> bool:
    monitor = StreamMonitor(OLD_DEFAULT)
    for i, (lp, e, m) in enumerate(zip(o.logprobs, o.entropies, o.margins)):
        final = i == len(o.logprobs) - 1 and judge_end
        if monitor.observe(lp, e, m, final=final).escalate:
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "tandem" / "routing-answers.npz")
    parser.add_argument("--out", type=Path, default=Path("benchmarks") / "results")
    parser.add_argument("--write-judge", type=Path, default=None,
                        help="also write the judge fitted on the fit split (the default policy's judge)")
    args = parser.parse_args(argv)

    rows = list(questions())
    observed = answers(rows, args.cache)
    correct = np.array([is_correct(o.text, r["answers"], r["rejected"]) for o, r in zip(observed, rows)])
    fit = np.array([r["split"] == "fit" for r in rows])
    test = ~fit
    fit_obs = [o for o, f in zip(observed, fit) if f]
    test_obs = [o for o, f in zip(observed, fit) if not f]
    y_fit, y_test = correct[fit], correct[test]

    fitted = fit_judge(fit_obs, y_fit, window=DEFAULT_WINDOW)
    model, tokenizer = device_fingerprints()
    kinds = sorted({r["kind"] for r in rows})
    data_note = (f"benchmarks/questions.py (seed 13): {int(fit.sum())} fit-split questions of {len(kinds)} kinds "
                 f"({', '.join(kinds)}); SmolLM2-135M-Instruct Q4_1 at device precision, greedy, chat template")
    doc = calibration_file(fitted, model=model, tokenizer=tokenizer, data=data_note,
                           labels="accepted answers, whole-word match after normalisation (router.answers)")
    judge = Judge.from_dict(json.loads(json.dumps(doc)), source="fit split")
    if args.write_judge:
        args.write_judge.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")

    # Scores on the test split, every one oriented so that higher means "more likely right".
    scores: dict[str, np.ndarray] = {}
    test_features = []
    for o in test_obs:
        state = judge.start()
        k = min(len(o.logprobs), judge.window)
        for i in range(k):
            state.observe(o.logprobs[i], o.entropies[i], o.margins[i], o.hidden[i].tolist())
        finished = len(o.logprobs) <= judge.window and o.finish != "length"
        test_features.append((state.features(finished=finished), state.prompt_p, state.score(finished=finished)))
    for name in SINGLE:
        values = np.array([f[name] for f, _, _ in test_features])
        scores[name] = -values if name in NEGATED else values
    scores["prompt probe (before decoding)"] = np.array([p for _, p, _ in test_features])
    scores["answer probe"] = np.array([f["answer_probe"] for f, _, _ in test_features])
    scores["calibrated judge"] = np.array([j for _, _, j in test_features])

    base = float(y_test.mean())
    rng = random.Random(0)
    random_rows = [float(np.mean([kept_accuracy(np.array([rng.random() for _ in y_test]), y_test, r)
                                  for _ in range(200)])) for r in RATES]
    oracle = [min(1.0, base / (1 - r)) for r in RATES]
    lines = [
        f"# Routing: does the router know when the device is wrong?\n",
        f"Device model: SmolLM2-135M-Instruct (Q4_1 GGUF, device precision), greedy, chat template. "
        f"Questions: {len(rows)} over {len(kinds)} kinds; fit split {int(fit.sum())}, test split {int(test.sum())} "
        f"(no question shared). Device accuracy: fit {y_fit.mean():.3f}, test {base:.3f}. "
        f"Judge window {judge.window} tokens. All figures below are on the test split.\n",
        "| signal | AUROC | " + " | ".join(f"kept acc @{r:.0%}" for r in RATES) + " |",
        "|---|---|" + "---|" * len(RATES),
        "| random | 0.500 | " + " | ".join(f"{a:.3f}" for a in random_rows) + " |",
    ]
    curves = {"random": random_rows, "oracle": oracle}
    for name, score in scores.items():
        row = [kept_accuracy(score, y_test, r) for r in RATES]
        curves[name] = row
        lines.append(f"| {name} | {auroc(score, y_test):.3f} | " + " | ".join(f"{a:.3f}" for a in row) + " |")
    lines.append("| oracle | 1.000 | " + " | ".join(f"{a:.3f}" for a in oracle) + " |")

    judge_20 = curves["calibrated judge"][RATES.index(0.2)]
    gap = (judge_20 - random_rows[1]) / (oracle[1] - random_rows[1])
    lines.append(f"\nAt 20 % escalation the judge closes {gap:.0%} of the gap between random "
                 f"({random_rows[1]:.3f}) and the oracle ({oracle[1]:.3f}).\n")
    lines.append("Rules as a policy runs them (thresholds from the fit split's curve; the probe acts before "
                 "decoding, the judge at the window or the answer's end):\n")
    lines.append("| rule | escalated | of which before decoding | kept-local accuracy | decisions right "
                 "(escalated iff the device was wrong) |")
    lines.append("|---|---|---|---|---|")
    rules = [(f"calibrated, target_escalation {t}", {"escalation": t}) for t in (0.1, 0.2, 0.3)]
    rules += [(f"calibrated, min_p_correct {p}", {"min_p_correct": p}) for p in (0.3, 0.5)]
    for label, target in rules:  # the two-stage rule a policy with this target runs
        point = judge.operating_point(**target)
        pre = scores["prompt probe (before decoding)"] < point.prefill_threshold
        out = escalation_outcome(pre | (scores["calibrated judge"] < point.judge_threshold), y_test)
        lines.append(f"| {label} | {out['escalation']:.3f} | {pre.mean():.3f} | {out['kept_accuracy']:.3f} | "
                     f"{out['decisions_right']:.3f} |")
    for judge_end, label in ((False, "previous default (quantile_prob 0.1 < 0.2, window 16, min 8)"),
                             (True, "previous default, short answers judged at their end")):
        out = escalation_outcome(np.array([old_rule(o, judge_end=judge_end) for o in test_obs]), y_test)
        lines.append(f"| {label} | {out['escalation']:.3f} | 0 | {out['kept_accuracy']:.3f} | "
                     f"{out['decisions_right']:.3f} |")
    lines.append(f"| every answer escalated | 1.000 | 1.000 | - | {1 - base:.3f} |")
    lines += unseen_kinds(rows, observed, correct, kinds)
    by_kind = {k: [c for c, r in zip(correct, rows) if r["kind"] == k] for k in kinds}
    lines.append("\nDevice accuracy by kind (all questions): " + ", ".join(
        f"{k} {np.mean(v):.2f} ({len(v)})" for k, v in by_kind.items()) + ".")
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "routing.md").write_text(report, encoding="utf-8")
    plot(curves, args.out / "routing.png")
    return 0


def unseen_kinds(rows: list[dict], observed: list[Observed], correct: np.ndarray, kinds: list[str]) -> list[str]:
    """Leave one kind out: for each kind, a judge fitted on the fit split of every other kind scores
    all of that kind's questions. Traffic brings questions of kinds no fit saw; this is what to
    expect of them (the test split above shares its kinds with the fit)."""
    kind = np.array([r["kind"] for r in rows])
    fit = np.array([r["split"] == "fit" for r in rows])
    prompt_p, judge_p = np.empty(len(rows)), np.empty(len(rows))
    for k in kinds:
        train = fit & (kind != k)
        doc = calibration_file(fit_judge([o for o, t in zip(observed, train) if t], correct[train],
                                         window=DEFAULT_WINDOW), model={}, tokenizer="", data="", labels="")
        judge = Judge.from_dict(json.loads(json.dumps(doc)), source=f"fit without {k}")
        for i in np.flatnonzero(kind == k):
            prompt_p[i], judge_p[i] = judge_router_path(judge, observed[i])
    even = escalation_outcome((prompt_p < 0.5) | (judge_p < 0.5), correct)  # min_p_correct 0.5
    lines = [f"\nOn kinds the fit never saw (each kind scored by a judge fitted on the other {len(kinds) - 1}; "
             f"all {len(rows)} questions pooled): calibrated judge AUROC {auroc(judge_p, correct):.3f}, "
             f"prompt probe {auroc(prompt_p, correct):.3f}; kept-local accuracy at 20 % escalated "
             f"{kept_accuracy(judge_p, correct, 0.2):.3f} (random {correct.mean():.3f}, oracle "
             f"{min(1.0, correct.mean() / 0.8):.3f}); with min_p_correct 0.5, {even['escalation']:.1%} escalated, "
             f"the kept answers right {even['kept_accuracy']:.3f} of the time, decisions right "
             f"{even['decisions_right']:.3f} "
             f"(escalating all: {1 - correct.mean():.3f}). By kind (AUROC within the kind): " + ", ".join(
                 f"{k} {auroc(judge_p[kind == k], correct[kind == k]):.2f}" for k in kinds) + "."]
    return lines


def plot(curves: dict[str, list[float]], path: Path) -> None:
    """Selective-accuracy curves; matplotlib is a benchmark-only extra (pip install tandem[bench])."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed; no plot written to {path}", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(8, 5.5))
    x = [100 * r for r in RATES]
    highlight = {"random": ("k", "--"), "oracle": ("k", ":"), "calibrated judge": ("C3", "-"),
                 "prompt probe (before decoding)": ("C0", "-"), "answer probe": ("C1", "-"),
                 "first_logprob": ("C2", "-")}
    for name, values in curves.items():
        color, style = highlight.get(name, ("0.75", "-"))
        ax.plot(x, values, style, color=color, linewidth=2.2 if name in highlight else 1,
                label=name if name in highlight else None)
    ax.set_xlabel("answers escalated to the cloud (%)")
    ax.set_ylabel("accuracy of the answers kept on the device")
    ax.set_title("SmolLM2-135M on the device: selective accuracy (test split; grey: other single signals)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
