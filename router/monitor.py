"""The stream monitor: one token's confidence signals at a time, continue or
escalate.

It computes the policy's signal over the last `window` tokens once
`min_tokens` tokens exist, and fires the first time the signal crosses the
threshold. The verdict names the first token of the low-confidence stretch
(the earliest token in the window that crosses the threshold on its own, or
the window's start when none does), so an `escalate_continue` hand-off keeps
only the tokens before it. Pure arithmetic on the inputs: the same sequence
always gives the same verdicts. It fires at most once per stream.

The calibrated signal (router.judge) decides at two points instead: right
after the prefill, from the prompt's hidden state (the first token's), and
once more at the `window`-th token or at the answer's last token, whichever
comes first, so a short answer is judged too. A hand-set rule also judges an
answer that ends before `min_tokens`, over the tokens it has.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from router.judge import JudgeState, quantile
from router.policy import ConfidenceRule, EscalationAction, Signal

# A chosen token's log-prob of -inf (or float rounding above 0) is clamped into
# [MIN_LOGPROB, 0] so every summary stays finite JSON.
MIN_LOGPROB = -1000.0


@dataclass(frozen=True)
class MonitorVerdict:
    """What to do after token `index` (0-based)."""

    escalate: bool
    index: int
    fired: bool = False
    code: str = "continue"
    detail: str = ""
    value: float | None = None
    window_start: int | None = None
    action: EscalationAction | None = None
    before_decoding: bool = False  # the calibrated judge's prompt probe fired right after the prefill


class StreamMonitor:
    """Watches one generation. `may_escalate=False` (a request that must stay on
    the device) still records when the rule fires but never says escalate."""

    def __init__(self, rule: ConfidenceRule | None, *, may_escalate: bool = True) -> None:
        self.rule = rule
        self.may_escalate = may_escalate
        self._window: deque[tuple[float, float]] = deque(maxlen=rule.window if rule else 1)  # (logprob, entropy)
        self._probs: list[float] = []
        self._logprob_sum = self._entropy_sum = self._margin_sum = 0.0
        self._fired: MonitorVerdict | None = None
        calibration = rule.calibration if rule else None
        self._judge: JudgeState | None = calibration.judge.start() if calibration else None
        self._judged_at: int | None = None
        self._judge_p: float | None = None

    @property
    def hidden_tokens(self) -> int:
        """How many first tokens `observe` needs the hidden state of (the calibrated judge's window)."""
        return self.rule.window if self._judge is not None and self.rule is not None else 0

    @property
    def judged(self) -> bool:
        """Whether the calibrated judge has given its verdict on this answer (held text may show)."""
        return self._judged_at is not None

    @property
    def count(self) -> int:
        return len(self._probs)

    @property
    def fired(self) -> MonitorVerdict | None:
        """The verdict of the token where the rule fired, if it has."""
        return self._fired

    def observe(
        self, logprob: float, entropy: float, margin: float, hidden: Sequence[float] | None = None,
        *, final: bool = False,
    ) -> MonitorVerdict:
        """Record one token: natural-log probability of the chosen token, entropy of
        the next-token distribution in nats, top-1 minus top-2 probability, and the hidden
        state that chose it (calibrated signal only). `final`: the answer ends with it."""
        if math.isnan(logprob) or not (math.isfinite(entropy) and math.isfinite(margin)):
            raise ValueError(f"confidence signals must be finite numbers, got {logprob=}, {entropy=}, {margin=}")
        logprob = min(max(logprob, MIN_LOGPROB), 0.0)
        index = self.count
        self._probs.append(math.exp(logprob))
        self._logprob_sum += logprob
        self._entropy_sum += entropy
        self._margin_sum += margin
        self._window.append((logprob, entropy))
        rule = self.rule
        if self._judge is not None:
            return self._observe_calibrated(logprob, entropy, margin, hidden, index, final)
        if rule is None or self._fired is not None or (self.count < rule.min_tokens and not final):
            return MonitorVerdict(escalate=False, index=index)
        value = self._signal_value(rule)
        low = value > rule.threshold if rule.signal is Signal.ENTROPY else value < rule.threshold
        if not low:
            return MonitorVerdict(escalate=False, index=index)
        start = self.count - len(self._window)
        window_start = start + next((i for i, t in enumerate(self._window) if self._token_low(rule, t)), 0)
        relation = ">" if rule.signal is Signal.ENTROPY else "<"
        detail = (f"{rule.signal.value} {value:.4g} {relation} {rule.threshold:g} over tokens {start}..{index}; "
                  f"low-confidence stretch starts at token {window_start}")
        return self._fire(index, value, f"low_confidence:{rule.signal.value}", detail, window_start, rule.action)

    def _observe_calibrated(self, logprob: float, entropy: float, margin: float, hidden: Sequence[float] | None,
                            index: int, final: bool) -> MonitorVerdict:
        rule, judge = self.rule, self._judge
        assert rule is not None and rule.calibration is not None and judge is not None
        point = rule.calibration.point
        if self._fired is not None or self._judged_at is not None:
            return MonitorVerdict(escalate=False, index=index)
        judge.observe(logprob, entropy, margin, hidden)
        if index == 0 and rule.calibration.prefill_probe and judge.prompt_p < point.prefill_threshold:
            return self._fire_calibrated(index, judge.prompt_p, point.prefill_threshold, "prefill_probe",
                                         "the prompt probe expects a wrong answer, before any decoding")
        if self.count < rule.window and not final:
            return MonitorVerdict(escalate=False, index=index)
        self._judged_at = index
        self._judge_p = judge.score(finished=final)
        if self._judge_p >= point.judge_threshold:
            return MonitorVerdict(escalate=False, index=index)
        where = "the whole answer" if final else f"tokens 0..{index}"
        return self._fire_calibrated(index, self._judge_p, point.judge_threshold, "judge",
                                     f"the judge expects {where} wrong")

    def _fire(self, index: int, value: float, code: str, detail: str, window_start: int,
              action: EscalationAction, before_decoding: bool = False) -> MonitorVerdict:
        """The verdict of a rule that fired: it escalates only when the request may leave the device."""
        if not self.may_escalate:
            detail += "; the request may not leave the device, so decoding continues locally"
        self._fired = MonitorVerdict(
            escalate=self.may_escalate,
            index=index,
            fired=True,
            code=code if self.may_escalate else "low_confidence_kept_local",
            detail=detail,
            value=value,
            window_start=window_start,
            action=action if self.may_escalate else None,
            before_decoding=before_decoding,
        )
        return self._fired

    def _fire_calibrated(self, index: int, p: float, threshold: float, stage: str, why: str) -> MonitorVerdict:
        # window_start 0: the judge weighs the answer as a whole, so nothing of it is kept
        detail = f"{why}: P(correct) {p:.3g} < {threshold:.3g}"
        return self._fire(index, p, f"low_confidence:calibrated:{stage}", detail, 0, EscalationAction.ESCALATE_RESTART,
                          before_decoding=stage == "prefill_probe")

    def _signal_value(self, rule: ConfidenceRule) -> float:
        if rule.signal is Signal.ENTROPY:
            return sum(e for _, e in self._window) / len(self._window)
        if rule.signal is Signal.MEAN_LOGPROB:
            return sum(lp for lp, _ in self._window) / len(self._window)
        probs = [math.exp(lp) for lp, _ in self._window]
        return min(probs) if rule.signal is Signal.MIN_PROB else quantile(probs, rule.quantile)

    @staticmethod
    def _token_low(rule: ConfidenceRule, token: tuple[float, float]) -> bool:
        logprob, entropy = token
        if rule.signal is Signal.ENTROPY:
            return entropy > rule.threshold
        if rule.signal is Signal.MEAN_LOGPROB:
            return logprob < rule.threshold
        return math.exp(logprob) < rule.threshold

    def summary(self) -> dict[str, Any]:
        """Signals over the whole stream, for the decision record (numbers only)."""
        n = self.count
        q = self.rule.quantile if self.rule and self.rule.signal is Signal.QUANTILE_PROB else 0.1
        out: dict[str, Any] = {"tokens": n, "signal": self.rule.signal.value if self.rule else None}
        if n:
            out |= {
                "min_prob": round(min(self._probs), 6),
                "mean_prob": round(sum(self._probs) / n, 6),
                f"p{round(q * 100):02d}_prob": round(quantile(self._probs, q), 6),
                "mean_logprob": round(self._logprob_sum / n, 6),
                "mean_entropy": round(self._entropy_sum / n, 6),
                "mean_margin": round(self._margin_sum / n, 6),
            }
        out["fired_at"] = self._fired.index if self._fired else None
        out["signal_value"] = round(self._fired.value, 6) if self._fired and self._fired.value is not None else None
        if self._judge is not None and self._judge.prompt_logit is not None:
            out["prompt_p"] = round(self._judge.prompt_p, 6)
            out["judge_p"] = None if self._judge_p is None else round(self._judge_p, 6)
            out["judged_at"] = self._judged_at
        return out
