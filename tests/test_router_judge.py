"""The calibrated judge, its policy rule and the answer matcher, without a model: pure Python."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest

from router import PolicyError, StreamMonitor, load_policy, parse_policy
from router.answers import agrees, is_correct, words
from router.judge import FEATURES, FORMAT, Judge, JudgeError
from router.policy import Signal
from router.schema import PUBLISHED_PATH

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "policies" / "default.yaml"
SHIPPED = REPO / "policies" / "smollm2-135m.judge.json"


def tiny_judge(*, prompt_bias: float, answer_weight: float = 0.0, window: int = 4,
               prefill_threshold: float = 0.5, judge_threshold: float = 0.5) -> dict:
    """A judge over 2-number hidden states whose verdicts are easy to work out by hand: the
    prompt probe is sigmoid(prompt_bias); the judge reads only mean_logprob (coefficient 1)."""
    coef = [1.0 if name == "mean_logprob" else 0.0 for name in FEATURES]
    return {
        "format": FORMAT, "model": {"architecture": "arch-x", "weights_family": "fam-x", "quantization": "q"},
        "tokenizer": "tok-x", "window": window,
        "probes": {"prompt": {"weights": [0.0, 0.0], "bias": prompt_bias},
                   "answer": {"weights": [answer_weight, 0.0], "bias": 0.0}},
        "judge": {"features": list(FEATURES), "mean": [0.0] * len(FEATURES), "scale": [1.0] * len(FEATURES),
                  "coef": coef, "intercept": 0.0},
        "curve": [{"escalation": 0.2, "prefill_threshold": prefill_threshold, "judge_threshold": judge_threshold,
                   "kept_accuracy": 0.6}],
    }


def calibrated_policy(tmp_path: Path, judge: dict, **rule) -> str:
    (tmp_path / "j.json").write_text(json.dumps(judge))
    rule = {"signal": "calibrated", "calibration": "j.json", **rule}
    body = "\n".join(f"  {k}: {json.dumps(v)}" for k, v in rule.items())
    text = f'version: "t"\nedge: {{max_context_tokens: 512, max_new_tokens: 64}}\ncloud: {{allowed: true}}\n' \
           f"confidence:\n{body}\n"
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return str(path)


# --- the matcher -----------------------------------------------------------------------


def test_matcher_normalises_case_accents_and_number_words():
    assert words("Forty-Seven, São Paulo; 1,000 and one hundred and five") == \
        ["47", "sao", "paulo", "1000", "and", "105"]
    assert is_correct("The capital of Colombia is Bogotá.", ["Bogota"])
    assert is_correct("It is twenty-three.", ["23"]) and is_correct("23", ["twenty three"])
    assert not is_correct("123 apples", ["23"]), "a number inside another is not a whole-word match"
    assert not is_correct("Santiagoland", ["Santiago"])


def test_matcher_takes_the_first_candidate_named():
    assert is_correct("73 is larger than 37.", ["73"], ["37"])
    assert not is_correct("37 is larger than 73.", ["73"], ["37"])
    with pytest.raises(ValueError, match="at least one accepted answer"):
        is_correct("x", [])


def test_agreement_between_two_answers():
    assert agrees("Santiago", "The capital of Chile is Santiago.")
    assert agrees("The capital of Chile is Santiago.", "the capital of chile is santiago")
    assert not agrees("The capital of Chile is Lima.", "The capital of Chile is Santiago.")
    assert not agrees("", "Santiago")


# --- the judge -----------------------------------------------------------------------------


def test_judge_output_is_deterministic_and_is_the_logistic_of_its_features():
    judge = Judge.load(SHIPPED)
    dim = len(judge.prompt_probe.weights)
    hidden = [math.sin(i * 0.37) for i in range(dim)]
    scores = []
    for _ in range(3):
        state = judge.start()
        for k in range(5):
            state.observe(-0.1 * k, 0.5 + 0.1 * k, 0.9 - 0.1 * k, [h * (1 + 0.01 * k) for h in hidden])
        scores.append((state.prompt_p, state.score(finished=True)))
    assert scores[0] == scores[1] == scores[2]
    features = state.features(finished=True)
    z = judge.intercept + sum(c * (features[n] - m) / s
                              for n, c, m, s in zip(FEATURES, judge.coef, judge.mean, judge.scale))
    assert scores[0][1] == pytest.approx(1 / (1 + math.exp(-z)), rel=1e-12)
    assert 0.0 < scores[0][0] < 1.0


def test_damaged_or_foreign_calibration_files_are_refused(tmp_path):
    with pytest.raises(JudgeError, match="not a Tandem calibration file"):
        Judge.from_dict({"format": "something-else"})
    damaged = tiny_judge(prompt_bias=0.0)
    damaged["judge"]["coef"] = [1.0]
    with pytest.raises(JudgeError, match="damaged"):
        Judge.from_dict(damaged)
    judge = Judge.from_dict(tiny_judge(prompt_bias=0.0), source="j.json")
    judge.check_model({"architecture": "arch-x", "weights_family": "fam-x", "quantization": "other"}, "tok-x")
    with pytest.raises(JudgeError, match="fitted for the model arch-x/fam-x/q .* `tandem calibrate`"):
        judge.check_model({"architecture": "arch-y", "weights_family": "fam-y", "quantization": "q"}, "tok-x")
    with pytest.raises(JudgeError, match="with tokenizer tok-x"):
        judge.check_model(judge.model, "tok-y")


def test_operating_points_for_each_kind_of_target():
    judge = Judge.load(SHIPPED)
    low, high = judge.operating_point(escalation=0.1), judge.operating_point(escalation=0.4)
    assert low.escalation < high.escalation and low.judge_threshold <= high.judge_threshold
    assert low.kept_accuracy <= high.kept_accuracy
    reach = judge.operating_point(kept_accuracy=high.kept_accuracy)
    assert reach.kept_accuracy >= high.kept_accuracy and reach.escalation <= high.escalation
    even = judge.operating_point(min_p_correct=0.5)
    assert (even.prefill_threshold, even.judge_threshold) == (0.5, 0.5)
    with pytest.raises(ValueError, match="exactly one target"):
        judge.operating_point(escalation=0.2, min_p_correct=0.5)


def test_min_p_correct_keeps_exactly_the_answers_judged_more_likely_right_than_not(tmp_path):
    # the tiny judge's prompt probe is sigmoid(bias): 0.27 and 0.40 against 0.3 (its curve's 0.5 would fire on both)
    for bias, fires in ((-1.0, True), (-0.4, False)):
        monitor = monitor_for(tmp_path, tiny_judge(prompt_bias=bias), min_p_correct=0.3, target_escalation=None)
        verdict = monitor.observe(-0.01, 0.1, 0.9, [0.0, 0.0])
        assert verdict.escalate is fires and verdict.before_decoding is fires, bias


# --- the policy rule ---------------------------------------------------------------------------


def test_shipped_default_policy_is_calibrated_and_validates_against_the_published_schema():
    import yaml

    schema = json.loads(PUBLISHED_PATH.read_text())
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(DEFAULT.read_text()))
    rule = load_policy(DEFAULT).confidence
    assert rule.signal is Signal.CALIBRATED and rule.calibration.judge.window == rule.window
    assert rule.calibration.point == rule.calibration.judge.operating_point(min_p_correct=0.5)
    assert Path(rule.calibration.path) == SHIPPED.resolve()


def test_calibrated_rule_problems_name_the_field(tmp_path):
    judge = tiny_judge(prompt_bias=0.0)
    cases = [
        ({"calibration": None}, "confidence.calibration", "required field is missing"),
        ({"threshold": 0.2}, "confidence.threshold", "does not apply to signal calibrated"),
        ({"target_kept_accuracy": 0.7}, "confidence", "exactly one target"),
        ({"target_escalation": None}, "confidence", "exactly one target"),
        ({"calibration": "missing.json"}, "confidence.calibration", "cannot read the calibration file"),
        ({"target_escalation": 1.5}, "confidence.target_escalation", "1.5"),
        ({"min_p_correct": 0.5}, "confidence", "exactly one target"),
        ({"target_escalation": None, "min_p_correct": 1.0}, "confidence.min_p_correct", "1.0"),
    ]
    for change, field, message in cases:
        rule = {k: v for k, v in {"target_escalation": 0.2, **change}.items() if v is not None}
        path = calibrated_policy(tmp_path, judge, **rule)
        text = Path(path).read_text()
        if change.get("calibration", "") is None:
            text = text.replace('  calibration: "j.json"\n', "")
        with pytest.raises(PolicyError) as info:
            parse_policy(text, source=path)
        problem = info.value.problems[0]
        assert (problem.field, message in problem.message) == (field, True), problem


def test_hand_set_rule_refuses_calibrated_fields():
    text = DEFAULT.read_text()
    start = text.index("confidence:")
    end = text.index("\nprivacy:")
    hand_set = text[:start] + ("confidence:\n  signal: min_prob\n  threshold: 0.1\n  window: 8\n  min_tokens: 4\n"
                               "  target_escalation: 0.2\n") + text[end:]
    with pytest.raises(PolicyError, match="target_escalation only applies to signal calibrated"):
        parse_policy(hand_set, source=str(DEFAULT))


def test_content_hash_follows_the_judge_file_not_its_location(tmp_path):
    judge = tiny_judge(prompt_bias=0.0)

    def policy_in(folder: str):
        (tmp_path / folder).mkdir(exist_ok=True)
        path = calibrated_policy(tmp_path / folder, judge, target_escalation=0.2)
        return parse_policy(Path(path).read_text(), source=path)

    a, b = policy_in("a"), policy_in("b")
    assert a.confidence.calibration.path != b.confidence.calibration.path and a.content_hash == b.content_hash
    judge["judge"]["intercept"] = 1.0
    assert policy_in("c").content_hash != a.content_hash


# --- the monitor ------------------------------------------------------------------------------


def monitor_for(tmp_path, judge: dict, *, may_escalate: bool = True, **rule) -> StreamMonitor:
    rule = {k: v for k, v in {"target_escalation": 0.2, **rule}.items() if v is not None}
    policy = parse_policy(Path(calibrated_policy(tmp_path, judge, **rule)).read_text(), source=str(tmp_path / "p.yaml"))
    return StreamMonitor(policy.confidence, may_escalate=may_escalate)


def test_prompt_probe_fires_on_the_first_token_before_decoding(tmp_path):
    monitor = monitor_for(tmp_path, tiny_judge(prompt_bias=-2.0))  # P = 0.12 < 0.5
    verdict = monitor.observe(-0.01, 0.1, 0.9, [1.0, 2.0])
    assert verdict.escalate and verdict.before_decoding and verdict.index == 0 and verdict.window_start == 0
    assert verdict.code == "low_confidence:calibrated:prefill_probe"
    off = monitor_for(tmp_path, tiny_judge(prompt_bias=-2.0), prefill_probe=False)
    assert not off.observe(-0.01, 0.1, 0.9, [1.0, 2.0]).fired


def test_short_answer_is_judged_at_its_last_token(tmp_path):
    monitor = monitor_for(tmp_path, tiny_judge(prompt_bias=2.0, window=4))
    assert not monitor.observe(-0.5, 0.1, 0.9, [0.0, 0.0]).fired
    verdict = monitor.observe(-1.5, 0.1, 0.9, [0.0, 0.0], final=True)  # mean log-prob -1: P 0.27 < 0.5
    assert verdict.escalate and verdict.index == 1 and verdict.code == "low_confidence:calibrated:judge"
    assert monitor.judged and monitor.summary()["judged_at"] == 1


def test_long_answer_is_judged_once_at_the_window(tmp_path):
    monitor = monitor_for(tmp_path, tiny_judge(prompt_bias=2.0, window=3, judge_threshold=0.4))
    verdicts = [monitor.observe(-0.01, 0.1, 0.9, [0.0, 0.0]) for _ in range(3)]
    assert not any(v.fired for v in verdicts) and monitor.judged  # P(correct) 0.4975 >= 0.4
    assert monitor.summary()["judge_p"] == pytest.approx(1 / (1 + math.exp(0.01)), abs=1e-6)
    assert not monitor.observe(-9.0, 3.0, 0.0, [0.0, 0.0]).fired, "after its verdict the judge reads no more"


def test_a_request_that_may_not_leave_records_the_verdict_but_stays(tmp_path):
    monitor = monitor_for(tmp_path, tiny_judge(prompt_bias=-2.0), may_escalate=False)
    verdict = monitor.observe(-0.01, 0.1, 0.9, [1.0, 2.0])
    assert verdict.fired and not verdict.escalate and verdict.code == "low_confidence_kept_local"


def test_hand_set_rule_judges_an_answer_shorter_than_min_tokens_at_its_end():
    policy = load_policy(REPO / "policies" / "demo.yaml")
    rule = policy.confidence
    monitor = StreamMonitor(rule)
    assert rule.min_tokens > 2
    assert not monitor.observe(math.log(0.01), 3.0, 0.0).fired
    assert monitor.observe(math.log(0.01), 3.0, 0.0, final=True).escalate
