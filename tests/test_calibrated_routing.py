"""The calibrated judge on the real device model: hidden states from the engine, the shipped
judge applied by the SDK against a real cloud server on loopback, and `tandem calibrate`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.questions import questions
from edge import Done, Escalation, TandemClient, Text
from engine.generate import decode_one_token, generate_tokens, prefill
from router import load_policy
from router.answers import is_correct
from router.judge import Judge, JudgeError
from tests.cloud_fixtures import running_server
from tests.edge_fixtures import Capture, CaptureInterceptor, policy_with

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "policies" / "smollm2-135m.judge.json"
# A short answer the device model gets wrong ("The number three is actually 3.", checked below).
SHORT_WRONG = "What number comes right after three hundred and six? Answer in a few words."
# The device's greedy text depends on the CPU (its int8 roundings: AMX tiles or VNNI), so a test that
# needs a short wrong answer takes the first of these that gets one here.
SHORT_WRONG_CANDIDATES = {SHORT_WRONG: "307"} | {
    f"What number comes right after {words}? Answer in a few words.": answer for words, answer in [
        ("five hundred and three", "504"), ("seven hundred and forty-one", "742"),
        ("four hundred and twelve", "413"), ("three hundred and nine", "310")]}
# A question the shipped prompt probe rates low: the device does not know it.
PROBE_REJECTS = "What number comes right after fifty-six? Answer in a few words."


@pytest.fixture(scope="module")
def cloud(smollm2):
    capture = Capture()
    with running_server(smollm2, interceptors=[CaptureInterceptor(capture)]) as (_, port):
        yield f"127.0.0.1:{port}", capture


def calibrated(**rule):
    base = {"signal": "calibrated", "calibration": "smollm2-135m.judge.json", "hold_tokens": 0,
            "min_p_correct": None, **rule}  # the tests name their own target
    return policy_with(confidence=base)


def device_answer(model, prompt: str, n: int = 24):
    return list(model.stream(model.encode_prompt(prompt), max_new_tokens=n, hidden_tokens=n))


# --- the engine's hidden states ----------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["smollm2", "smollm2_device"])
def test_hidden_states_are_what_the_logits_come_from_on_both_decode_paths(fixture, request):
    model = request.getfixturevalue(fixture)
    ids = model.encode_prompt("Name a colour.")
    with torch.inference_mode():
        cache = model.new_cache(len(ids) + 8)
        logits, hidden = prefill(model.model, cache, ids, with_hidden=True)
        assert torch.allclose(model.model.output(hidden.to(model.model.norm.weight.dtype)).float(), logits,
                              atol=1e-3)
        step_logits, step_hidden = decode_one_token(model.model, cache, int(logits.argmax()), with_hidden=True)
        assert step_hidden.shape == (model.config.dim,)
        assert torch.allclose(model.model.output(step_hidden).float(), step_logits, atol=1e-3)
    if fixture == "smollm2_device":
        assert model.model.decode_step is not None, "the device tier decodes through the native step"
    tokens = list(generate_tokens(model.model, model.new_cache(len(ids) + 4), ids, max_new_tokens=4,
                                  hidden_tokens=3))
    plain = list(generate_tokens(model.model, model.new_cache(len(ids) + 4), ids, max_new_tokens=4))
    assert [t.id for t in tokens] == [t.id for t in plain] and plain[0].hidden is None
    assert tokens[0].hidden == tuple(hidden.tolist())
    assert [t.hidden is None for t in tokens] == [False, False, False, True], "only the first hidden_tokens"


# --- the judge on real answers ----------------------------------------------------------------------


def test_judge_verdict_on_a_real_answer_is_deterministic(smollm2_device):
    judge = Judge.load(SHIPPED)
    judge.check_model(smollm2_device.fingerprint.to_dict(), smollm2_device.tokenizer.fingerprint)
    verdicts = []
    for _ in range(2):
        state = judge.start()
        events = device_answer(smollm2_device, SHORT_WRONG)
        for e in events[: judge.window]:
            state.observe(e.token.logprob, e.token.entropy, e.token.margin, e.token.hidden)
        verdicts.append((state.prompt_p, state.score(finished=len(events) <= judge.window)))
    assert verdicts[0] == verdicts[1]


def test_calibration_for_another_model_is_refused(llama3_small):
    with pytest.raises(JudgeError, match="was fitted for the model .* but the device runs .*tandem calibrate"):
        TandemClient(llama3_small, policy=load_policy(REPO / "policies" / "default.yaml"), audit_log=None)


def short_wrong_answer(model, window: int) -> tuple[str, list]:
    """(prompt, the device's answer) for the first candidate it answers wrongly in under `window` tokens."""
    texts = []
    for prompt, right in SHORT_WRONG_CANDIDATES.items():
        events = device_answer(model, prompt)
        texts.append("".join(e.text for e in events))
        if len(events) < window and not is_correct(texts[-1], [right]):
            return prompt, events
    pytest.fail(f"no candidate gets a short wrong answer from the device on this CPU: {texts}")


def test_short_wrong_answer_is_judged_and_withdrawn(smollm2_device, cloud, tmp_path):
    judge = Judge.load(SHIPPED)
    prompt, events = short_wrong_answer(smollm2_device, judge.window)
    address, capture = cloud
    before = len(capture.of("Generate"))
    policy = calibrated(target_escalation=0.3, prefill_probe=False)
    with TandemClient(smollm2_device, cloud=address, policy=policy, audit_log=None) as client:
        shown = list(client.generate(prompt, max_new_tokens=24))
    (escalation,) = [e for e in shown if isinstance(e, Escalation)]
    first_edge = next(i for i, e in enumerate(shown) if isinstance(e, Text) and e.tier == "edge")
    assert first_edge < shown.index(escalation), "hold_tokens 0: the device's answer was shown first"
    assert (escalation.keep_chars, escalation.kept_tokens) == (0, 0)
    done = shown[-1]
    assert isinstance(done, Done) and done.tier == "cloud"
    assert done.record.escalation_reason == "low_confidence:calibrated:judge"
    assert done.record.signals["judged_at"] == len(events) - 1, "judged at its last token"
    assert len(capture.of("Generate")) == before + 1

    held = calibrated(target_escalation=0.3, prefill_probe=False, hold_tokens=16)
    with TandemClient(smollm2_device, cloud=address, policy=held, audit_log=None) as client:
        shown = list(client.generate(prompt, max_new_tokens=24))
    assert not any(isinstance(e, Text) and e.tier == "edge" for e in shown), "held back, then withdrawn unseen"
    assert shown[-1].tier == "cloud"


def test_prompt_the_probe_rejects_never_starts_device_decoding(smollm2_device, cloud, tmp_path):
    judge = Judge.load(SHIPPED)
    prompt_p = judge.prompt_p(device_answer(smollm2_device, PROBE_REJECTS, 1)[0].token.hidden)
    target = next(p.escalation for p in judge.curve if p.prefill_threshold > prompt_p)
    calls: list[int] = []
    hook = smollm2_device.model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[1]))
    address, _ = cloud
    try:
        with TandemClient(smollm2_device, cloud=address, policy=calibrated(target_escalation=target),
                          audit_log=None) as client:
            shown = list(client.generate(PROBE_REJECTS, max_new_tokens=16))
            assert calls == [len(smollm2_device.encode_prompt(PROBE_REJECTS))], "one prefill, no decode step"
            calls.clear()
            kept = list(client.generate(PROBE_REJECTS, max_new_tokens=16, tags=["confidential"]))
    finally:
        hook.remove()
    done = shown[-1]
    assert done.tier == "cloud" and done.record.escalation_reason == "low_confidence:calibrated:prefill_probe"
    assert not any(isinstance(e, Text) and e.tier == "edge" for e in shown)
    assert done.record.tokens["edge"] == 0
    # A request that may not leave the device is answered there all the same.
    assert kept[-1].tier == "edge" and kept[-1].record.signals["fired_at"] == 0 and len(calls) > 1


# --- tandem calibrate --------------------------------------------------------------------------------


def test_tandem_calibrate_fits_a_judge_from_accepted_answers_and_from_the_cloud(smollm2_device, cloud, tmp_path):
    # Both runs need right and wrong labels whatever the kernels' rounding does to 8-token answers. By
    # accepted answers: one row the device answers right, one no answer can match. By the cloud (the
    # same model in fp32): its sums now follow fp32 so closely that all 20 sampled rows agreed, so
    # four rows where the Q4_1 device's answer differs from fp32's under both the int8 tile prefill
    # and AMX's bf16 one, and under the attention before and after its split (scan of the fit split).
    anchors = [{"prompt": "What is the capital of France?", "answers": ["Paris"]},
               {"prompt": "What is two plus two?", "answers": ["xylophone quartet"]}]
    fragile = [{"prompt": f"What is {q}? Answer in a few words.", "answers": [a]}
               for q, a in (("8 plus 5", "13"), ("7 plus 7", "14"), ("11 minus 4", "7"), ("63 minus 9", "54"))]
    rows = anchors + fragile + [r for r in questions() if r["split"] == "fit"][::45][:14]
    data = tmp_path / "traffic.jsonl"
    data.write_text("".join(json.dumps({"prompt": r["prompt"], "answers": r["answers"]}) + "\n" for r in rows))
    address, _ = cloud
    for extra, name in (([], "labelled.json"), (["--cloud", address], "cloud.json")):
        out = tmp_path / name
        result = subprocess.run(
            [sys.executable, "-m", "tandem.cli", "calibrate", str(data), "-o", str(out), "--max-context", "512",
             "--max-new-tokens", "8", "--window", "4", *extra],
            capture_output=True, text=True, timeout=600, cwd=REPO,
        )
        assert result.returncode == 0, result.stderr
        judge = Judge.load(out)
        judge.check_model(smollm2_device.fingerprint.to_dict(), smollm2_device.tokenizer.fingerprint)
        assert judge.window == 4 and judge.report["answers"] == len(rows) and judge.curve
        assert ("cloud tier" in judge.report["labels"]) == bool(extra)
        assert "cross-validated judge AUROC" in result.stdout and "min_p_correct 0.5" in result.stdout
        even = judge.report["min_p_correct_0.5"]
        assert 0 <= even["escalation"] <= 1 and 0 <= even["decisions_right"] <= 1

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "answers": ["a"]}\n{"prompt": 3}\n')
    result = subprocess.run([sys.executable, "-m", "tandem.cli", "calibrate", str(bad), "-o", str(tmp_path / "x")],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2 and f"{bad}:2" in result.stderr and not (tmp_path / "x").exists()
