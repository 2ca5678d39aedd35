"""`tandem calibrate`: fit the router's calibrated judge on a user's own traffic.

The device model answers each prompt greedily, as it would in production, and
every answer is labelled right or wrong: against the accepted answers of a
JSONL file (router.answers matches whole words after normalisation), or, with
no human labels at all, by agreement with the cloud tier's answer to the same
prompt (a running cloud server, or a model loaded here at full precision).
Then two logistic models are fitted (router.judge says what they read) and
written, with their operating points, the model and tokenizer fingerprints
and a fit report, to the calibration file a policy's `confidence.calibration`
points at. Fitting needs numpy; applying the file needs neither numpy nor torch.

Input JSONL, one object a line: {"prompt": "..."} or {"messages": [...]},
with "answers": [...] (and optionally "rejected": [...]) when labelling by
accepted answers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router.answers import agrees, is_correct
from router.judge import FEATURES, FORMAT, answer_features

DEFAULT_WINDOW = 16
DEFAULT_MAX_NEW_TOKENS = 24
L2_GRID = (1.0, 10.0, 100.0, 1000.0)
PROBE_COMPONENTS = 64
FOLDS = 5
ESCALATION_GRID = [round(0.01 * i, 2) for i in range(0, 91)]


class CalibrationInputError(ValueError):
    """A labelled-traffic file the calibration cannot use, with the line at fault."""


@dataclass
class Observed:
    """One device answer: its text and, per token, the signals and hidden state the judge reads."""

    text: str
    logprobs: list[float]
    entropies: list[float]
    margins: list[float]
    hidden: np.ndarray  # [tokens, dim] float32; row 0 is the prompt's last position
    finish: str


# --- running the tiers -----------------------------------------------------------


def observe(local: Any, prompt_ids: list[int], *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> Observed:
    """The device model's greedy answer with its per-token signals (engine.runtime.LocalModel)."""
    events = list(local.stream(prompt_ids, max_new_tokens=max_new_tokens, hidden_tokens=max_new_tokens))
    tokens = [e.token for e in events]
    return Observed(
        text="".join(e.text for e in events),
        logprobs=[t.logprob for t in tokens],
        entropies=[t.entropy for t in tokens],
        margins=[t.margin for t in tokens],
        hidden=np.asarray([t.hidden for t in tokens], dtype=np.float32),
        finish=events[-1].finish_reason or "length",
    )


def save_observed(path: Path, observed: Sequence[Observed]) -> None:
    """One .npz holding every answer (hidden states as float16: the probes lose nothing measurable)."""
    lengths = np.array([len(o.logprobs) for o in observed])
    meta = json.dumps([{"text": o.text, "finish": o.finish} for o in observed])
    np.savez_compressed(
        path, lengths=lengths, meta=np.frombuffer(meta.encode(), dtype=np.uint8),
        logprobs=np.concatenate([o.logprobs for o in observed]),
        entropies=np.concatenate([o.entropies for o in observed]),
        margins=np.concatenate([o.margins for o in observed]),
        hidden=np.concatenate([o.hidden for o in observed]).astype(np.float16),
    )


def load_observed(path: Path) -> list[Observed]:
    with np.load(path) as npz:
        data = {name: npz[name] for name in npz.files}  # each access would decompress again
    meta = json.loads(data["meta"].tobytes().decode())
    ends = np.cumsum(data["lengths"])
    starts = ends - data["lengths"]
    return [
        Observed(m["text"], data["logprobs"][a:b].tolist(), data["entropies"][a:b].tolist(),
                 data["margins"][a:b].tolist(), data["hidden"][a:b].astype(np.float32), m["finish"])
        for m, a, b in zip(meta, starts, ends)
    ]


def read_traffic(path: Path, *, need_answers: bool) -> list[dict[str, Any]]:
    """Rows of a JSONL file, checked: each has a prompt or messages (and answers when labelling by them)."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationInputError(f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CalibrationInputError(f"{where}: not a JSON object ({exc.msg})") from None
        if not isinstance(row, dict) or not (isinstance(row.get("prompt"), str) or isinstance(row.get("messages"), list)):
            raise CalibrationInputError(f"{where}: each line needs \"prompt\" (a string) or \"messages\" (a list)")
        answers = row.get("answers")
        if need_answers and not (isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers)):
            raise CalibrationInputError(f"{where}: \"answers\" must be a non-empty list of strings (or label by "
                                        "the cloud with --cloud / --cloud-model)")
        rows.append(row)
    if len(rows) < 4 * FOLDS:
        raise CalibrationInputError(f"{path} holds {len(rows)} prompts; the fit needs at least {4 * FOLDS} "
                                    "(a few hundred give a judge worth having)")
    return rows


def prompt_ids_of(local: Any, row: dict[str, Any]) -> list[int]:
    return local.encode_chat(row["messages"]) if "messages" in row else local.encode_prompt(row["prompt"])


# --- fitting -------------------------------------------------------------------------


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties counting half."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logistic(x: np.ndarray, y: np.ndarray, l2: float, *, iters: int = 100) -> tuple[np.ndarray, float]:
    """L2-penalised logistic regression by Newton's method (the intercept is not penalised)."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - y) + penalty * w
        hess = (xb.T * (p * (1 - p))) @ xb + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


@dataclass
class Linear:
    """A logistic model on standardised inputs, folded back to raw inputs."""

    weights: np.ndarray
    bias: float
    l2: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weights + self.bias


def fit_linear(x: np.ndarray, y: np.ndarray, *, l2: float | None = None, seed: int = 0,
               components: int = PROBE_COMPONENTS) -> Linear:
    """Standardise, keep the top principal components (a hidden state has hundreds of numbers and
    a fit set a few hundred answers), pick the penalty by cross-validated AUROC when not given,
    fit, and fold the projection and scaling back into one weight per input."""
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    z = (x - mean) / scale
    if components < z.shape[1]:
        basis = np.linalg.svd(z, full_matrices=False)[2][:components].T  # [inputs, components]
    else:
        basis = np.eye(z.shape[1])
    z = z @ basis
    if l2 is None:
        folds = _folds(len(y), seed)
        l2 = max(L2_GRID, key=lambda c: auroc(_oof(lambda a, b: logistic(a, b, c), z, y, folds), y))
    w, b = logistic(z, y, l2)
    w = basis @ w
    return Linear(w / scale, b - float((w * mean / scale).sum()), l2)


def _folds(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n) % FOLDS


def _oof(fit, x: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Out-of-fold logits: each row scored by a model that never saw it."""
    out = np.empty(len(y))
    for k in range(FOLDS):
        train = folds != k
        w, b = fit(x[train], y[train])
        out[~train] = x[~train] @ w + b
    return out


def design(observed: Sequence[Observed], window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per answer: prompt hidden state, mean hidden state of the judged tokens, the token-signal
    features (without the probes), and whether the answer ended inside the window."""
    prompt = np.stack([o.hidden[0] for o in observed])
    answer = np.stack([o.hidden[: window].mean(0) for o in observed])
    finished = np.array([len(o.logprobs) <= window and o.finish != "length" for o in observed])
    return prompt, answer, finished, np.array([len(o.logprobs) for o in observed])


def judge_matrix(observed: Sequence[Observed], window: int, prompt_logits: np.ndarray,
                 answer_logits: np.ndarray) -> np.ndarray:
    """The judge's features (router.judge.FEATURES) for each answer, as the router computes them."""
    _, _, finished, _ = design(observed, window)
    rows = []
    for o, pl, al, fin in zip(observed, prompt_logits, answer_logits, finished):
        k = min(len(o.logprobs), window)
        f = answer_features(o.logprobs[:k], o.entropies[:k], o.margins[:k], [float(al)], float(pl), finished=bool(fin))
        rows.append([f[name] for name in FEATURES])
    return np.array(rows)


def fit_judge(
    observed: Sequence[Observed], labels: Sequence[bool], *, window: int = DEFAULT_WINDOW,
    prefill_share: float = 0.5, seed: int = 0,
) -> dict[str, Any]:
    """Fit the prompt probe, the answer probe and the judge; the operating points come from
    out-of-fold scores, so the curve says what to expect on traffic the fit never saw."""
    y = np.asarray(labels, dtype=float)
    if y.min() == y.max():
        raise CalibrationInputError("every answer is labelled the same; the judge needs right and wrong ones")
    prompt_x, answer_x, _, _ = design(observed, window)
    folds = _folds(len(y), seed)
    prompt_probe = fit_linear(prompt_x, y, seed=seed)
    answer_probe = fit_linear(answer_x, y, seed=seed)

    def oof_probe(x: np.ndarray, l2: float) -> np.ndarray:
        out = np.empty(len(y))
        for k in range(FOLDS):
            train = folds != k
            probe = fit_linear(x[train], y[train], l2=l2)
            out[~train] = probe.logit(x[~train])
        return out

    prompt_oof = oof_probe(prompt_x, prompt_probe.l2)
    answer_oof = oof_probe(answer_x, answer_probe.l2)
    features = judge_matrix(observed, window, prompt_oof, answer_oof)
    mean, scale = features.mean(0), features.std(0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (features - mean) / scale
    judge_l2 = 1.0
    coef, intercept = logistic(z, y, judge_l2)
    judge_oof = _oof(lambda a, b: logistic(a, b, judge_l2), z, y, folds)
    prompt_p, judge_p = _sigmoid(prompt_oof), _sigmoid(judge_oof)
    curve = operating_curve(prompt_p, judge_p, y.astype(bool), prefill_share)
    even = escalation_outcome((prompt_p < 0.5) | (judge_p < 0.5), y.astype(bool))  # `min_p_correct: 0.5`, out of fold
    return {
        "window": window,
        "probes": {
            "prompt": {"weights": prompt_probe.weights.tolist(), "bias": prompt_probe.bias},
            "answer": {"weights": answer_probe.weights.tolist(), "bias": answer_probe.bias},
        },
        "judge": {"features": list(FEATURES), "mean": mean.tolist(), "scale": scale.tolist(),
                  "coef": coef.tolist(), "intercept": intercept},
        "curve": curve,
        "report": {
            "answers": int(len(y)),
            "device_accuracy": round(float(y.mean()), 4),
            "window": window,
            "prefill_share": prefill_share,
            "l2": {"prompt_probe": prompt_probe.l2, "answer_probe": answer_probe.l2, "judge": judge_l2},
            "probe_components": PROBE_COMPONENTS,
            "min_p_correct_0.5": {name: round(value, 4) for name, value in even.items()},
            "cross_validated_auroc": {
                "prompt_probe": round(auroc(prompt_oof, y), 4),
                "answer_probe": round(auroc(answer_oof, y), 4),
                "judge": round(auroc(judge_oof, y), 4),
                **{name: round(auroc(features[:, i], y), 4) for i, name in enumerate(FEATURES)
                   if name not in ("prompt_probe", "answer_probe")},
            },
        },
    }


def escalation_outcome(escalated: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    """What escalating `escalated` does to answers that were `correct` or not: the share sent to the
    cloud, the accuracy of those kept (1.0 when none is), and the share of decisions that were right
    (escalated exactly when the device was wrong)."""
    kept = ~escalated
    return {"escalation": float(escalated.mean()),
            "kept_accuracy": float(correct[kept].mean()) if kept.any() else 1.0,
            "decisions_right": float((escalated != correct).mean())}


def operating_curve(prompt_p: np.ndarray, judge_p: np.ndarray, correct: np.ndarray,
                    prefill_share: float) -> list[dict[str, float]]:
    """For each escalation rate: send the `prefill_share` of it with the lowest prompt-probe scores
    to the cloud before decoding, then the lowest judge scores of the rest, up to the rate."""
    n = len(correct)
    points = []
    for rate in ESCALATION_GRID:
        total = round(rate * n)
        n_pre = round(rate * prefill_share * n)
        pre_threshold = _cut(np.sort(prompt_p), n_pre)
        early = prompt_p < pre_threshold
        rest = np.sort(judge_p[~early])
        judge_threshold = _cut(rest, max(0, total - int(early.sum())))
        escalated = early | (judge_p < judge_threshold)
        kept = ~escalated
        points.append({
            "escalation": round(float(escalated.mean()), 4),
            "prefill_threshold": pre_threshold,
            "judge_threshold": judge_threshold,
            "kept_accuracy": round(float(correct[kept].mean()) if kept.any() else 1.0, 4),
        })
    return points


def _cut(ordered: np.ndarray, k: int) -> float:
    """A threshold with exactly the `k` lowest values strictly below it (ties permitting)."""
    if k <= 0:
        return 0.0
    if k >= len(ordered):
        return 1.0
    return float((ordered[k - 1] + ordered[k]) / 2)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(z, -60, 60)))


def calibration_file(fit: dict[str, Any], *, model: dict[str, str], tokenizer: str, data: str,
                     labels: str) -> dict[str, Any]:
    """The JSON document router.judge.Judge reads."""
    report = dict(fit["report"], data=data, labels=labels)
    return {"format": FORMAT, "model": model, "tokenizer": tokenizer, "window": fit["window"],
            "probes": fit["probes"], "judge": fit["judge"], "curve": fit["curve"], "report": report}


# --- the command -------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.cli import add_model_arguments

    parser = subparsers.add_parser(
        "calibrate", help="fit the calibrated confidence judge on labelled or cloud-labelled prompts",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("data", type=Path, help="JSONL of prompts (with accepted answers unless labelled by the cloud)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="calibration file to write (JSON)")
    add_model_arguments(parser, precision="device")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--cloud", metavar="HOST:PORT", help="label by agreement with this cloud server's answers")
    labels.add_argument("--cloud-model", metavar="MODEL",
                        help="label by agreement with this model run here at full precision")
    parser.add_argument("--cloud-token", default=None, help="bearer token for --cloud")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help=f"tokens the judge reads before its verdict (default {DEFAULT_WINDOW})")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                        help=f"answer length generated for labelling (default {DEFAULT_MAX_NEW_TOKENS})")
    parser.add_argument("--prefill-share", type=float, default=0.5,
                        help="share of the escalations made by the prompt probe before decoding (default 0.5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    if args.window < 1 or args.max_new_tokens < args.window or not 0.0 <= args.prefill_share <= 1.0:
        print("error: need --window >= 1, --max-new-tokens >= --window and 0 <= --prefill-share <= 1",
              file=sys.stderr)
        return 2
    by_cloud = bool(args.cloud or args.cloud_model)
    try:
        rows = read_traffic(args.data, need_answers=not by_cloud)
    except CalibrationInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from engine.runtime import LocalModel

    device = LocalModel.load(args.model, tokenizer=args.tokenizer, max_context=args.max_context,
                             precision=args.precision)
    reference = _cloud_answers(args, device) if by_cloud else None
    observed, labels = [], []
    for i, row in enumerate(rows):
        ids = prompt_ids_of(device, row)
        answer = observe(device, ids, max_new_tokens=args.max_new_tokens)
        observed.append(answer)
        if reference is None:
            labels.append(is_correct(answer.text, row["answers"], row.get("rejected", ())))
        else:
            labels.append(agrees(answer.text, reference(ids)))
        print(f"\r{i + 1}/{len(rows)} answered", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    try:
        fit = fit_judge(observed, labels, window=args.window, prefill_share=args.prefill_share, seed=args.seed)
    except CalibrationInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    how = (f"agreement with the cloud tier ({args.cloud or args.cloud_model})" if by_cloud
           else "accepted answers, whole-word match after normalisation")
    doc = calibration_file(fit, model=device.fingerprint.to_dict(), tokenizer=device.tokenizer.fingerprint,
                           data=f"{args.data.name}: {len(rows)} prompts", labels=how)
    args.output.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    report = doc["report"]
    print(f"wrote {args.output}: {report['answers']} answers, device accuracy {report['device_accuracy']:.3f}, "
          f"cross-validated judge AUROC {report['cross_validated_auroc']['judge']:.3f}")
    for point in doc["curve"]:
        if math.isclose(point["escalation"] * 10 % 1, 0, abs_tol=0.02) and 0 < point["escalation"] <= 0.6:
            print(f"  escalate {point['escalation']:.0%}: kept-local accuracy {point['kept_accuracy']:.3f}")
    even = report["min_p_correct_0.5"]
    print(f"  min_p_correct 0.5 (escalate when more likely wrong than right): escalates {even['escalation']:.0%}, "
          f"kept-local accuracy {even['kept_accuracy']:.3f}, decisions right {even['decisions_right']:.3f}")
    return 0


def _cloud_answers(args: argparse.Namespace, device: Any):
    """A function from prompt IDs to the cloud tier's greedy answer text."""
    if args.cloud_model:
        from engine.runtime import LocalModel

        cloud = LocalModel.load(args.cloud_model, tokenizer=args.tokenizer, max_context=args.max_context,
                                precision="full")
        if cloud.tokenizer.fingerprint != device.tokenizer.fingerprint:
            raise SystemExit(f"error: {args.cloud_model} does not share the device model's tokenizer")
        return lambda ids: "".join(e.text for e in cloud.stream(ids, max_new_tokens=args.max_new_tokens))
    from cloud.client import CloudClient

    client = CloudClient(args.cloud, token=args.cloud_token)
    return lambda ids: client.generate(ids, max_new_tokens=args.max_new_tokens).text
