"""The stream monitor: each signal fires at the token it should, never before
min_tokens, once, and identically for the same sequence."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router import ConfidenceRule, EscalationAction, Signal, StreamMonitor


def rule(signal: Signal, *, threshold: float, window: int, min_tokens: int, quantile: float = 0.1,
         action: EscalationAction = EscalationAction.ESCALATE_CONTINUE) -> ConfidenceRule:
    return ConfidenceRule(signal, threshold, window, min_tokens, action, quantile)


def run(monitor: StreamMonitor, probs=None, entropies=None):
    n = len(probs or entropies)
    probs = probs or [0.9] * n
    entropies = entropies or [0.1] * n
    return [monitor.observe(math.log(p), e, 0.5) for p, e in zip(probs, entropies)]


def fired(verdicts):
    return [v for v in verdicts if v.fired]


def test_min_prob_fires_at_the_first_allowed_token_and_points_at_the_low_one():
    monitor = StreamMonitor(rule(Signal.MIN_PROB, threshold=0.1, window=4, min_tokens=3))
    verdicts = run(monitor, probs=[0.9, 0.05, 0.9, 0.9, 0.9])
    (hit,) = fired(verdicts)
    assert (hit.index, hit.window_start, hit.escalate) == (2, 1, True)  # not at token 1: min_tokens is 3
    assert hit.code == "low_confidence:min_prob" and hit.action is EscalationAction.ESCALATE_CONTINUE
    assert hit.value == pytest.approx(0.05)


def test_quantile_prob_needs_enough_low_tokens_in_the_window():
    monitor = StreamMonitor(rule(Signal.QUANTILE_PROB, threshold=0.3, window=5, min_tokens=1, quantile=0.2))
    verdicts = run(monitor, probs=[0.9] * 5 + [0.1, 0.1, 0.1])
    (hit,) = fired(verdicts)
    # one low token in five: the 0.2-quantile is 0.74; two low tokens: 0.1.
    assert (hit.index, hit.window_start) == (6, 5)
    assert hit.value == pytest.approx(0.1)


def test_mean_logprob_fires_when_the_window_mean_drops_below_threshold():
    monitor = StreamMonitor(rule(Signal.MEAN_LOGPROB, threshold=-1.0, window=4, min_tokens=2))
    logprobs = [-0.1, -0.1, -2.0, -2.0, -2.0]
    verdicts = [monitor.observe(lp, 0.1, 0.5) for lp in logprobs]
    (hit,) = fired(verdicts)
    assert (hit.index, hit.window_start) == (3, 2)
    assert hit.value == pytest.approx(-1.05)


def test_entropy_fires_when_mean_entropy_rises_above_threshold():
    monitor = StreamMonitor(rule(Signal.ENTROPY, threshold=2.0, window=3, min_tokens=1,
                                 action=EscalationAction.ESCALATE_RESTART))
    verdicts = run(monitor, entropies=[0.5, 0.5, 3.0, 3.0, 3.0])
    (hit,) = fired(verdicts)
    assert (hit.index, hit.window_start, hit.action) == (3, 2, EscalationAction.ESCALATE_RESTART)
    assert hit.value == pytest.approx(6.5 / 3)


def test_nothing_fires_before_min_tokens_even_on_terrible_tokens():
    monitor = StreamMonitor(rule(Signal.MIN_PROB, threshold=0.5, window=2, min_tokens=6))
    verdicts = run(monitor, probs=[0.01] * 8)
    assert [v.index for v in fired(verdicts)] == [5]
    assert fired(verdicts)[0].window_start == 4  # the window is the last 2 tokens


def test_fires_once_per_stream():
    monitor = StreamMonitor(rule(Signal.MIN_PROB, threshold=0.5, window=2, min_tokens=1))
    verdicts = run(monitor, probs=[0.01] * 5)
    assert [v.index for v in fired(verdicts)] == [0]
    assert monitor.fired is verdicts[0]


def test_a_request_that_may_not_leave_records_the_low_confidence_but_never_escalates():
    monitor = StreamMonitor(rule(Signal.MIN_PROB, threshold=0.5, window=2, min_tokens=1), may_escalate=False)
    verdicts = run(monitor, probs=[0.9, 0.01, 0.01])
    assert not any(v.escalate for v in verdicts)
    (hit,) = fired(verdicts)
    assert hit.code == "low_confidence_kept_local" and hit.action is None


def test_no_rule_never_fires():
    monitor = StreamMonitor(None)
    assert not any(v.fired or v.escalate for v in run(monitor, probs=[0.001] * 50))


def test_invalid_signals_are_rejected_and_minus_infinity_is_clamped():
    monitor = StreamMonitor(rule(Signal.MIN_PROB, threshold=0.1, window=2, min_tokens=1))
    with pytest.raises(ValueError):
        monitor.observe(float("nan"), 0.1, 0.5)
    with pytest.raises(ValueError):
        monitor.observe(-0.1, float("inf"), 0.5)
    verdict = monitor.observe(float("-inf"), 0.1, 0.5)
    assert verdict.escalate
    json.dumps(monitor.summary(), allow_nan=False)


def test_summary_reports_the_stream_in_numbers_only():
    monitor = StreamMonitor(rule(Signal.QUANTILE_PROB, threshold=0.2, window=4, min_tokens=2, quantile=0.25))
    run(monitor, probs=[0.9, 0.8, 0.1, 0.1, 0.7])
    summary = monitor.summary()
    assert summary["tokens"] == 5 and summary["signal"] == "quantile_prob"
    assert summary["min_prob"] == pytest.approx(0.1)
    assert summary["mean_prob"] == pytest.approx(0.52)
    assert summary["p25_prob"] == pytest.approx(0.1)
    assert summary["fired_at"] == 3 and summary["signal_value"] == pytest.approx(0.1)
    assert all(isinstance(v, (int, float, str, type(None))) for v in summary.values())


signals = st.tuples(
    st.floats(min_value=-30, max_value=0), st.floats(min_value=0, max_value=12), st.floats(min_value=0, max_value=1)
)
rules = st.builds(
    ConfidenceRule,
    signal=st.sampled_from(list(Signal)),
    threshold=st.floats(min_value=0.01, max_value=0.99),
    window=st.integers(1, 16),
    min_tokens=st.integers(1, 20),
    action=st.sampled_from(list(EscalationAction)),
    quantile=st.floats(min_value=0.05, max_value=0.95),
)


@given(r=rules, sequence=st.lists(signals, max_size=60))
def test_verdicts_are_deterministic_and_respect_min_tokens_and_the_window(r, sequence):
    if r.signal is Signal.MEAN_LOGPROB:
        r = ConfidenceRule(r.signal, -r.threshold * 5, r.window, r.min_tokens, r.action, r.quantile)
    a, b = StreamMonitor(r), StreamMonitor(r)
    first = [a.observe(*s) for s in sequence]
    second = [b.observe(*s) for s in sequence]
    assert first == second
    hits = fired(first)
    assert len(hits) <= 1
    for hit in hits:
        assert hit.index >= r.min_tokens - 1
        assert max(0, hit.index - r.window + 1) <= hit.window_start <= hit.index
