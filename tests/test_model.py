"""Logits parity with transformers' LlamaForCausalLM, and KV-cache consistency.

Tolerance: fp32 throughout; logits agree within 1e-4 absolute on random-weight
checkpoints (|logits| ~ 10) and within 2e-3 on the real SmolLM2 (both sides
dequantize the same Q4_1/Q8_0 blocks to fp32, then accumulate in different orders).
Decoding through the KV cache agrees with one full forward within 5e-4 on
SmolLM2 (30 layers; a 1-row matmul sums in a different order than a T-row one).
"""

from __future__ import annotations

import pytest
import torch

from engine.model import KVCache
from engine.runtime import LocalModel

ATOL_RANDOM = 1e-4
ATOL_SMOLLM2 = 2e-3
ATOL_CACHE = 5e-4

LLAMA3_ROPE = {
    "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
}
CASES = {
    "gqa_tied": dict(tie=True),
    "untied": dict(tie=False, kv_heads=4),
    "llama3_rope_scaling": dict(tie=True, rope_scaling=LLAMA3_ROPE),
    "sharded": dict(tie=False, shard_size="2MB"),
}


def hf_logits(folder, ids):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def full_logits(local: LocalModel, ids):
    cache = local.new_cache(len(ids))
    with torch.inference_mode():
        return local.model(torch.tensor([ids]), cache)[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers_on_random_checkpoints(case, hf_checkpoint_factory):
    folder = hf_checkpoint_factory(case, **CASES[case])
    if case == "sharded":
        assert (folder / "model.safetensors.index.json").exists()
    local = LocalModel.load(folder)
    ids = local.tokenizer.encode("In the beginning God created the heaven and the earth. " * 6)
    assert len(ids) > 64  # past original_max_position_embeddings, so rope scaling matters
    ours, ref = full_logits(local, ids), hf_logits(folder, ids)
    assert ref.abs().max() > 1.0
    assert (ours - ref).abs().max().item() < ATOL_RANDOM


def test_rope_scaling_changes_logits(hf_checkpoint_factory):
    """The llama3 case above is not vacuous: without scaling the logits differ."""
    plain = LocalModel.load(hf_checkpoint_factory("plain", tie=True))
    scaled = LocalModel.load(hf_checkpoint_factory("scaled", tie=True, rope_scaling=LLAMA3_ROPE))
    ids = plain.tokenizer.encode("word " * 100)
    assert (full_logits(plain, ids) - full_logits(scaled, ids)).abs().max() > 1e-2


def test_smollm2_gguf_logits_match_transformers(smollm2, smollm2_path):
    from transformers import LlamaForCausalLM

    ref_model = LlamaForCausalLM.from_pretrained(
        smollm2_path.parent, gguf_file=smollm2_path.name, dtype=torch.float32
    ).eval()
    ids = smollm2.encode_prompt("What is the capital of France? Answer in one word.")
    with torch.no_grad():
        ref = ref_model(torch.tensor([ids])).logits[0]
    ours = full_logits(smollm2, ids)
    assert (ours - ref).abs().max().item() < ATOL_SMOLLM2
    assert torch.equal(ours.argmax(-1), ref.argmax(-1))


def test_decode_through_kv_cache_matches_full_forward(smollm2):
    ids = smollm2.tokenizer.encode("And God said, Let there be light: and there was light.")
    reference = full_logits(smollm2, ids)
    cache = smollm2.new_cache(len(ids))
    with torch.inference_mode():
        stepwise = torch.cat([smollm2.model(torch.tensor([[t]]), cache)[0] for t in ids])
    assert cache.pos == len(ids)
    assert (stepwise - reference).abs().max().item() < ATOL_CACHE


def test_chunked_prefill_after_cached_prefix_matches_full_forward(smollm2):
    """Prefill of a continuation on top of a cached prefix (the cloud's prefix cache path)."""
    ids = smollm2.tokenizer.encode("Four score and seven years ago our fathers brought forth on this continent")
    reference = full_logits(smollm2, ids)
    cache = smollm2.new_cache(len(ids))
    with torch.inference_mode():
        first = smollm2.model(torch.tensor([ids[:7]]), cache)[0]
        rest = smollm2.model(torch.tensor([ids[7:]]), cache)[0]
    assert (torch.cat([first, rest]) - reference).abs().max().item() < ATOL_CACHE


def test_cache_truncate_rewinds(smollm2):
    ids = smollm2.tokenizer.encode("one two three four five six")
    cache = smollm2.new_cache(32)
    with torch.inference_mode():
        a = smollm2.model(torch.tensor([ids]), cache)[0, -1]
        cache.truncate(3)
        b = smollm2.model(torch.tensor([ids[3:]]), cache)[0, -1]
    assert (a - b).abs().max().item() < ATOL_CACHE
    with pytest.raises(ValueError):
        cache.truncate(100)


def test_cache_overflow_is_a_clear_error(smollm2):
    cache = KVCache(smollm2.config, 4)
    with pytest.raises(ValueError, match="exceed the KV cache of 4"):
        smollm2.model(torch.tensor([[1, 2, 3, 4, 5]]), cache)


def test_cache_copy_keeps_the_valid_positions_and_refuses_a_smaller_target(smollm2):
    cache = KVCache(smollm2.config, 8)
    with torch.inference_mode():
        smollm2.model(torch.tensor([[1, 2, 3, 4, 5]]), cache)
    bigger = cache.copy_into(KVCache(smollm2.config, 16))
    assert bigger.pos == 5
    assert torch.equal(bigger.k[:, :, :, :5], cache.k[:, :, :, :5])
    assert torch.equal(bigger.v[:, :, :, :5], cache.v[:, :, :, :5])
    with pytest.raises(ValueError, match="cannot hold 5"):
        cache.copy_into(KVCache(smollm2.config, 4))


def test_an_int8_cache_is_attended_through_its_rows_by_a_prompt_and_its_steps(smollm2, monkeypatch):
    """A prompt over an int8 cache attends its rows as its decode steps will (natively where the
    kernels are built, else through the torch path that is its reference): its first layer stores
    the int8 rounding of the fp32 cache's keys, and its logits move off the fp32 cache's, a little."""
    from engine import kernels, prefill_attention
    from engine.int8_rows import quantize

    ids = smollm2.tokenizer.encode("The quick brown fox jumps over the lazy dog because it was late.")
    n = len(ids)
    exact, int8 = KVCache(smollm2.config, 32), KVCache(smollm2.config, 32, dtype=torch.int8)
    with torch.inference_mode():
        want, got = smollm2.model(torch.tensor([ids]), exact), smollm2.model(torch.tensor([ids]), int8)
        rows = quantize(exact.k[0, :, :, :n])
        assert torch.equal(int8.k[0, :, :, :n], rows.q) and torch.equal(int8.k_scale[0, :, :, :n], rows.scale)
        assert not torch.equal(got, want) and float((got - want).abs().max()) < 1.0
        assert (got.argmax(-1) == want.argmax(-1)).float().mean() > 0.8
        step_exact, step_int8 = smollm2.model(torch.tensor([[11]]), exact), smollm2.model(torch.tensor([[11]]), int8)
        assert not torch.equal(step_int8, step_exact) and float((step_int8 - step_exact).abs().max()) < 1.0
        if kernels.available():  # the native prompt attention against its torch reference
            monkeypatch.setattr(prefill_attention, "runs", lambda cache, batch: False)
            reference = smollm2.model(torch.tensor([ids]), KVCache(smollm2.config, 32, dtype=torch.int8))
            # the two differ in the op's own int16 roundings, which flip a few later int8 rows
            assert float((got - reference).abs().mean()) < float((reference - want).abs().mean())


def test_a_kv_cache_holds_floats_or_int8_rows(smollm2):
    with pytest.raises(ValueError, match="floats or int8 rows, not torch.int32"):
        KVCache(smollm2.config, 4, dtype=torch.int32)
