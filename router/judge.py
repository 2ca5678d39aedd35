"""The calibrated judge: will the device's answer be right?

Two small logistic models fitted by `tandem calibrate` for one device model:

- the prompt probe reads the final normed hidden state at the prompt's last
  position (what the first token is chosen from) and estimates, before any
  decode step, whether the device knows the answer;
- the answer judge reads summary features of the first `window` tokens (or the
  whole answer when it ends sooner): first-token, minimum, mean and quantile
  statistics of the token log-prob, entropy and margin, the prompt probe, and an
  answer probe averaged over the answer's hidden states.

Both give a probability that the answer is correct. The file also holds the
operating points measured on the fitting data (cross-validated): for each
escalation rate, the two thresholds and the accuracy of what stays local, so a
policy names a target and the thresholds follow. Applying it is pure Python:
a few dot products per token.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "tandem-judge/1"
# The features of the answer judge, in the order of its coefficients.
FEATURES = (
    "first_logprob", "first_entropy", "first_margin", "min_logprob", "mean_logprob", "p10_prob",
    "mean_entropy", "max_entropy", "mean_margin", "min_margin", "log_tokens", "finished",
    "prompt_probe", "answer_probe",
)
MIN_LOGPROB = -1000.0


class JudgeError(ValueError):
    """A calibration file that cannot be used: unreadable, malformed, or fitted for another model."""


@dataclass(frozen=True)
class Probe:
    """Logistic probe on a hidden state: logit = weights . hidden + bias."""

    weights: tuple[float, ...]
    bias: float

    def logit(self, hidden: Sequence[float]) -> float:
        if len(hidden) != len(self.weights):
            raise JudgeError(f"the probe reads hidden states of {len(self.weights)} numbers, got {len(hidden)}")
        return math.fsum(map(operator.mul, self.weights, hidden)) + self.bias


@dataclass(frozen=True)
class OperatingPoint:
    """Escalate when the prompt probe's P(correct) < prefill_threshold (before decoding) or the
    judge's P(correct) < judge_threshold; on the fitting data this escalated `escalation` of the
    answers and the rest were right `kept_accuracy` of the time."""

    escalation: float
    prefill_threshold: float
    judge_threshold: float
    kept_accuracy: float


@dataclass(frozen=True)
class Judge:
    model: dict[str, str]
    tokenizer: str
    window: int
    prompt_probe: Probe
    answer_probe: Probe
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    curve: tuple[OperatingPoint, ...]
    report: dict[str, Any] = field(default_factory=dict, compare=False)
    sha256: str = ""
    source: str = "<dict>"

    # --- reading ---------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> "Judge":
        try:
            raw = Path(path).read_bytes()
            data = json.loads(raw)
        except OSError as exc:
            raise JudgeError(f"cannot read the calibration file {path}: {exc.strerror or exc}") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise JudgeError(f"the calibration file {path} is not JSON: {exc}") from exc
        return cls.from_dict(data, source=str(path), sha256=hashlib.sha256(raw).hexdigest())

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>", sha256: str = "") -> "Judge":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise JudgeError(f"{source} is not a Tandem calibration file (expected \"format\": \"{FORMAT}\"; "
                             "write one with `tandem calibrate`)")
        try:
            judge = data["judge"]
            if tuple(judge["features"]) != FEATURES:
                raise JudgeError(f"{source} uses features {judge['features']}, this Tandem reads {list(FEATURES)}")
            probes = {name: Probe(tuple(map(float, p["weights"])), float(p["bias"]))
                      for name, p in data["probes"].items()}
            curve = tuple(OperatingPoint(float(c["escalation"]), float(c["prefill_threshold"]),
                                         float(c["judge_threshold"]), float(c["kept_accuracy"]))
                          for c in data["curve"])
            out = cls(
                model={k: str(v) for k, v in data["model"].items()},
                tokenizer=str(data["tokenizer"]),
                window=int(data["window"]),
                prompt_probe=probes["prompt"],
                answer_probe=probes["answer"],
                mean=tuple(map(float, judge["mean"])),
                scale=tuple(map(float, judge["scale"])),
                coef=tuple(map(float, judge["coef"])),
                intercept=float(judge["intercept"]),
                curve=curve,
                report=dict(data.get("report", {})),
                sha256=sha256,
                source=source,
            )
        except JudgeError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise JudgeError(f"{source} is a damaged calibration file ({type(exc).__name__}: {exc})") from exc
        n = len(FEATURES)
        if not (len(out.mean) == len(out.scale) == len(out.coef) == n) or not out.curve or out.window < 1:
            raise JudgeError(f"{source} is a damaged calibration file (its judge does not have {n} features, "
                             "or it has no operating points)")
        if len(out.prompt_probe.weights) != len(out.answer_probe.weights):
            raise JudgeError(f"{source} is a damaged calibration file (its probes differ in size)")
        return out

    def check_model(self, model: Mapping[str, str], tokenizer: str) -> None:
        """Refuse a device model other than the one the judge was fitted for: its hidden states
        and confidence mean something else, so the judge's verdicts would be noise. The same
        weights at another precision (the architecture and weights family match) are accepted:
        their hidden states differ by quantization noise; recalibrate for exact operating points."""
        keys = ("architecture", "weights_family")
        if any(model.get(k) != self.model.get(k) for k in keys) or tokenizer != self.tokenizer:
            raise JudgeError(
                f"the calibration file {self.source} was fitted for the model {_fp(self.model)} with tokenizer "
                f"{self.tokenizer}, but the device runs {_fp(model)} with tokenizer {tokenizer}; fit one for "
                "this model with `tandem calibrate` or use a hand-set confidence signal")

    # --- thresholds ----------------------------------------------------------------

    def operating_point(self, *, escalation: float | None = None, kept_accuracy: float | None = None,
                        min_p_correct: float | None = None) -> OperatingPoint:
        """The point for a target escalation rate (the nearest measured one), the lowest escalation
        whose kept-local accuracy reaches `kept_accuracy` (the highest measured when none does), or
        the point that keeps an answer only when its P(correct) is at least `min_p_correct` (both
        thresholds that probability: what the fit data's rate and accuracy were there is not on the
        curve, so those two read NaN)."""
        if sum(t is not None for t in (escalation, kept_accuracy, min_p_correct)) != 1:
            raise ValueError("name exactly one target: escalation, kept_accuracy or min_p_correct")
        if min_p_correct is not None:
            return OperatingPoint(math.nan, min_p_correct, min_p_correct, math.nan)
        if escalation is not None:
            return min(self.curve, key=lambda p: (abs(p.escalation - escalation), p.escalation))
        reaching = [p for p in self.curve if p.kept_accuracy >= kept_accuracy]
        if reaching:
            return min(reaching, key=lambda p: p.escalation)
        return max(self.curve, key=lambda p: (p.kept_accuracy, -p.escalation))

    # --- applying ------------------------------------------------------------------

    def prompt_p(self, hidden: Sequence[float]) -> float:
        """P(the device answers correctly), from the prompt's last hidden state alone."""
        return _sigmoid(self.prompt_probe.logit(hidden))

    def score(self, features: Mapping[str, float]) -> float:
        """P(the answer is correct) from its summary features."""
        z = self.intercept + math.fsum(
            c * (features[name] - m) / s for name, c, m, s in zip(FEATURES, self.coef, self.mean, self.scale))
        return _sigmoid(z)

    def start(self) -> "JudgeState":
        return JudgeState(self)


class JudgeState:
    """One answer's running inputs to the judge (it keeps at most `window` tokens)."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self.logprobs: list[float] = []
        self.entropies: list[float] = []
        self.margins: list[float] = []
        self.answer_logits: list[float] = []
        self.prompt_logit: float | None = None

    def observe(self, logprob: float, entropy: float, margin: float, hidden: Sequence[float] | None) -> None:
        if hidden is None:
            raise JudgeError("the calibrated judge needs each token's hidden state; stream with hidden_tokens >= the window")
        if self.prompt_logit is None:
            self.prompt_logit = self.judge.prompt_probe.logit(hidden)
        self.logprobs.append(logprob)
        self.entropies.append(entropy)
        self.margins.append(margin)
        self.answer_logits.append(self.judge.answer_probe.logit(hidden))

    @property
    def prompt_p(self) -> float:
        if self.prompt_logit is None:
            raise ValueError("no token observed yet")
        return _sigmoid(self.prompt_logit)

    def features(self, *, finished: bool) -> dict[str, float]:
        if self.prompt_logit is None:
            raise ValueError("no token observed yet")
        return answer_features(self.logprobs, self.entropies, self.margins, self.answer_logits,
                               self.prompt_logit, finished=finished)

    def score(self, *, finished: bool) -> float:
        return self.judge.score(self.features(finished=finished))


def answer_features(
    logprobs: Sequence[float], entropies: Sequence[float], margins: Sequence[float],
    answer_logits: Sequence[float], prompt_logit: float, *, finished: bool,
) -> dict[str, float]:
    """The judge's features of an answer's first tokens: the one definition fitting and applying share."""
    if not logprobs:
        raise ValueError("an answer needs at least one token to be judged")
    lps = [min(max(lp, MIN_LOGPROB), 0.0) for lp in logprobs]
    n = len(lps)
    return {
        "first_logprob": lps[0],
        "first_entropy": entropies[0],
        "first_margin": margins[0],
        "min_logprob": min(lps),
        "mean_logprob": sum(lps) / n,
        "p10_prob": quantile([math.exp(lp) for lp in lps], 0.1),
        "mean_entropy": sum(entropies) / n,
        "max_entropy": max(entropies),
        "mean_margin": sum(margins) / n,
        "min_margin": min(margins),
        "log_tokens": math.log(n),
        "finished": 1.0 if finished else 0.0,
        "prompt_probe": prompt_logit,
        "answer_probe": sum(answer_logits) / len(answer_logits),
    }


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default method)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _fp(fingerprint: Mapping[str, str | None]) -> str:
    return "/".join(str(fingerprint.get(k)) for k in ("architecture", "weights_family", "quantization"))
