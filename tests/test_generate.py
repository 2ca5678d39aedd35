"""Generation: greedy and seeded sampling are deterministic, stops are honoured,
and every token's confidence signals are the model's own distribution."""

from __future__ import annotations

import pytest
import torch

from engine.detokenize import Detokenizer
from engine.generate import Sampling
from engine.runtime import StreamEvent


def run(model, prompt, **kwargs) -> list[StreamEvent]:
    return list(model.stream(model.encode_prompt(prompt), **kwargs))


def test_greedy_answers_paris(smollm2):
    events = run(smollm2, "What is the capital of France?", max_new_tokens=24)
    assert "Paris" in "".join(e.text for e in events)
    assert events[-1].finish_reason == "stop"  # ended on <|im_end|>, not the token budget


def test_temperature_zero_determinism(smollm2):
    a = [e.token.id for e in run(smollm2, "Write a haiku about rivers.", max_new_tokens=20)]
    b = [e.token.id for e in run(smollm2, "Write a haiku about rivers.", max_new_tokens=20)]
    assert a == b


def test_seeded_sampling_is_reproducible_and_differs_across_seeds(smollm2):
    def sample(seed):
        s = Sampling(temperature=1.0, top_p=0.95, top_k=50, seed=seed)
        return [e.token.id for e in run(smollm2, "Tell me a story.", max_new_tokens=24, sampling=s)]

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_top_k_one_is_greedy(smollm2):
    greedy = [e.token.id for e in run(smollm2, "Name a color.", max_new_tokens=12)]
    top1 = [e.token.id for e in run(smollm2, "Name a color.", max_new_tokens=12,
                                    sampling=Sampling(temperature=0.7, top_k=1, seed=0))]
    assert top1 == greedy


def test_signals_are_the_models_distribution(smollm2):
    ids = smollm2.encode_prompt("What is the capital of France?")
    events = list(smollm2.stream(ids, max_new_tokens=8))
    generated = [e.token.id for e in events]
    cache = smollm2.new_cache(len(ids) + len(generated))
    with torch.inference_mode():
        logits = smollm2.model(torch.tensor([ids + generated[:-1]]), cache)[0, len(ids) - 1 :]
    logprobs = torch.log_softmax(logits, -1)
    for row, event in zip(logprobs, events):
        t = event.token
        probs = row.exp()
        top2 = probs.topk(2).values
        assert t.logprob == pytest.approx(row[t.id].item(), abs=2e-3)
        assert t.entropy == pytest.approx(-(probs * row).sum().item(), abs=2e-3)
        assert t.margin == pytest.approx((top2[0] - top2[1]).item(), abs=2e-3)
        assert t.logprob <= 0 and t.entropy >= 0 and 0 <= t.margin <= 1


def test_max_new_tokens_ends_with_length(smollm2):
    events = run(smollm2, "Count from one to one hundred.", max_new_tokens=5)
    assert len(events) == 5 and events[-1].finish_reason == "length"


def test_stop_string_truncates_the_text(smollm2):
    full = "".join(e.text for e in run(smollm2, "What is the capital of France?", max_new_tokens=24))
    assert " is " in full
    events = run(smollm2, "What is the capital of France?", max_new_tokens=24, stop_strings=(" is ",))
    text = "".join(e.text for e in events)
    assert events[-1].finish_reason == "stop_string"
    assert text == full[: full.index(" is ")]


def test_detokenizer_holds_back_split_characters_and_stop_prefixes(smollm2):
    tok = smollm2.tokenizer
    text = "naïve café 🙂 END tail"
    detok = Detokenizer(tok, stop_strings=(" END",))
    out = "".join(detok.push(i) for i in tok.encode(text))
    assert detok.stopped and out == "naïve café 🙂"
    assert "\ufffd" not in out


def test_sampling_rejects_invalid_values():
    with pytest.raises(ValueError):
        Sampling(temperature=-1)
    with pytest.raises(ValueError):
        Sampling(top_p=0.0)




def test_prefill_in_chunks_equals_one_forward(smollm2):
    """Chunks after the first attend to the cache through a mask; the result is the one forward's."""
    from engine.generate import prefill, prefill_chunk

    ids = smollm2.encode_prompt("Summarise the history of the printing press in three sentences.")
    caches, logits = [], []
    for chunk in (len(ids), 7):
        cache = smollm2.new_cache(len(ids))
        with torch.inference_mode():
            logits.append(prefill(smollm2.model, cache, ids, chunk=chunk))
        caches.append(cache)
    assert caches[1].pos == len(ids)
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(caches[1].k, caches[0].k, rtol=0, atol=1e-4)
    torch.testing.assert_close(caches[1].v, caches[0].v, rtol=0, atol=1e-4)
    assert 64 <= prefill_chunk(smollm2.config) < 4096
    with pytest.raises(ValueError, match="at least one token"):
        prefill(smollm2.model, smollm2.new_cache(4), [])


# ---- the signals in one native pass --------------------------------------------------------


def _logit_cases() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    cases = {f"normal x{scale:g} [{n}]": torch.randn(n, generator=g) * scale
             for n in (2, 37, 49152, 128256) for scale in (1.0, 30.0)}
    cases["huge values"] = torch.randn(49152, generator=g) * 1e4 + 3e4
    tied = torch.randn(49152, generator=g)
    tied[[40_000, 123, 9_001]] = 12.5  # three-way tie for the top: ids resolve to the lowest
    cases["tie at the top"] = tied
    second = torch.randn(49152, generator=g)
    second[[77, 30_000]] = 9.0
    second[5] = 11.0  # a tie for second place
    cases["tie for second"] = second
    masked = torch.randn(49152, generator=g) * 4
    masked[::3] = float("-inf")  # e.g. a banned-token mask
    cases["-inf entries"] = masked
    return cases


@pytest.fixture(scope="module")
def native_kernels():
    from engine import kernels

    if not kernels.available():
        pytest.fail("the native kernels did not build (a C++ compiler is part of the set-up)")


def assert_same_signals(got, want, logits: torch.Tensor, *, tol: float = 1e-4) -> None:
    assert got.id == want.id or logits[got.id] == logits[want.id]
    assert got.logprob == pytest.approx(want.logprob, abs=tol)
    assert got.entropy == pytest.approx(want.entropy, abs=tol)
    assert got.margin == pytest.approx(want.margin, abs=tol)
    for (gid, glp), (wid, wlp) in zip(got.top, want.top, strict=True):
        assert glp == pytest.approx(wlp, abs=tol)
        assert logits[gid] == logits[wid]  # the same id, or one tied with it


@pytest.mark.parametrize("case", list(_logit_cases()))
def test_native_signals_equal_the_torch_reference(native_kernels, case):
    """log-prob, entropy, margin and the top two within 1e-4 of the torch ops, on 2 to 128k
    logits, huge values, ties and masked (-inf) entries; ties go to the lowest id, as argmax."""
    from engine.generate import GREEDY, native_signals, pick, pick_reference

    logits = _logit_cases()[case]
    assert native_signals(logits) is not None  # the native pass ran, not the fallback
    got = pick(logits, GREEDY, None)
    assert_same_signals(got, pick_reference(logits, GREEDY, None), logits)
    assert got.id == int(logits.argmax())
    assert got.top[1][0] == int(logits.clone().index_fill_(0, logits.argmax(), float("-inf")).argmax())


def test_degenerate_logits_take_the_reference_path(native_kernels):
    from engine.generate import GREEDY, native_signals, pick, pick_reference

    one_finite = torch.full((1000,), float("-inf"))
    one_finite[3] = 1.0
    nan, inf = torch.randn(1000), torch.randn(1000)
    nan[10], inf[10] = float("nan"), float("inf")
    for logits in (one_finite, nan, inf):
        assert native_signals(logits) is None
        got, want = pick(logits, GREEDY, None), pick_reference(logits, GREEDY, None)
        assert repr(got) == repr(want)  # NaN signals included


@pytest.mark.parametrize("sampling", [Sampling(), Sampling(temperature=0.8, top_p=0.9, seed=3),
                                      Sampling(temperature=1.3, top_k=40, seed=11)])
def test_native_signals_leave_the_generation_as_it_was(native_kernels, smollm2_device, monkeypatch, sampling):
    """The same tokens, greedy or sampled (same seed), with the signals within 1e-4, as when
    every token's signals come from the torch ops; the signals stay the temperature-1 ones."""
    from engine import generate

    ids = smollm2_device.encode_prompt("Write a short poem about the sea.")

    def tokens():
        return [e.token for e in smollm2_device.stream(ids, max_new_tokens=24, sampling=sampling)]

    native = tokens()
    monkeypatch.setattr(generate, "native_signals", lambda logits: None)
    reference = tokens()
    assert [t.id for t in native] == [t.id for t in reference]
    for got, want in zip(native, reference):
        assert got.logprob == pytest.approx(want.logprob, abs=1e-4)
        assert got.entropy == pytest.approx(want.entropy, abs=1e-4)
        assert got.margin == pytest.approx(want.margin, abs=1e-4)
        assert [i for i, _ in got.top] == [i for i, _ in want.top]
