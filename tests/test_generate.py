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
