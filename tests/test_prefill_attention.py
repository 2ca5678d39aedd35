"""A prompt's native attention over an int8 KV cache (kernels/decode_step.cpp: prefill_attention)
against SDPA over the same rows dequantized, and the model's prompt path through it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine import kernels, prefill_attention
from engine.int8_rows import quantize
from engine.model import KVCache


@pytest.fixture(scope="module", autouse=True)
def native_kernels():
    if not kernels.available():
        pytest.fail("the native kernels did not build (a C++ compiler is part of the set-up)")


def int8_cache(layers: int, kv_heads: int, positions: int, d: int):
    k = torch.zeros(layers, 1, kv_heads, positions, d, dtype=torch.int8)
    scale = torch.zeros(layers, 1, kv_heads, positions, dtype=torch.float16)
    return k, scale, torch.zeros_like(k), torch.zeros_like(scale)


def reference(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, start: int) -> torch.Tensor:
    """SDPA of q [T, H, D] at positions start.. over keys, values [Hkv, start + T, D] (causal), as [T, H * D]."""
    t, h, d = q.shape
    mask = torch.ones(t, keys.shape[1], dtype=torch.bool).tril(diagonal=start)
    out = F.scaled_dot_product_attention(q.transpose(0, 1)[None], keys[None], values[None], attn_mask=mask,
                                         enable_gqa=True)
    return out[0].transpose(0, 1).reshape(t, h * d)


# (heads, kv heads, head_dim, earlier positions, prompt): SmolLM2's grouping over several runs of 256
# positions; 8 heads a kv head (two groups of 4) at 128 values after a cached prefix; multi-head;
# odd lengths that leave tails of fewer than 16 keys.
SHAPES = [(9, 3, 64, 0, 600), (8, 1, 128, 37, 300), (4, 4, 64, 10, 17), (6, 2, 64, 3, 1)]


@pytest.mark.parametrize("heads,kv_heads,d,start,t", SHAPES)
def test_prefill_attention_matches_sdpa_over_the_rows(heads, kv_heads, d, start, t):
    """Each position attends the rows before it and its own, as SDPA does over them dequantized; the
    op's own roundings (queries to int16, weights to int16) leave ~1e-4 of the outputs' range
    (measured <= 5e-4 of ~3.8). Read with the prompt one position late, the outputs move by whole
    units: the bound can fail."""
    torch.manual_seed(heads * 1000 + start)
    layers, layer = 2, 1
    k, k_scale, v, v_scale = int8_cache(layers, kv_heads, start + t + 5, d)
    keys, values = quantize(2 * torch.randn(kv_heads, start + t, d)), quantize(torch.randn(kv_heads, start + t, d))
    k[layer, 0, :, : start + t], k_scale[layer, 0, :, : start + t] = keys.q, keys.scale
    v[layer, 0, :, : start + t], v_scale[layer, 0, :, : start + t] = values.q, values.scale
    qkv = 2 * torch.randn(t, heads + 2 * kv_heads, d)  # the queries strided, as the QKV matmul leaves them
    q = qkv[:, :heads]
    got = torch.ops.tandem.prefill_attention(q, k, k_scale, v, v_scale, layer, start)
    want = reference(q, keys.dequantize(torch.float32), values.dequantize(torch.float32), start)
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= 2e-3
    if start > 0 and t > 1:
        late = torch.ops.tandem.prefill_attention(q, k, k_scale, v, v_scale, layer, start - 1)
        assert float((late - want).abs().max()) > 0.1


def test_prefill_attention_refuses_what_it_cannot_read():
    k, k_scale, v, v_scale = int8_cache(1, 2, 8, 64)
    q = torch.randn(4, 4, 64)
    with pytest.raises(RuntimeError, match="outside the cache"):
        torch.ops.tandem.prefill_attention(q, k, k_scale, v, v_scale, 0, 5)
    with pytest.raises(RuntimeError, match="do not fit a cache"):
        torch.ops.tandem.prefill_attention(torch.randn(4, 3, 64), k, k_scale, v, v_scale, 0, 0)
    with pytest.raises(RuntimeError, match="int8 caches"):
        torch.ops.tandem.prefill_attention(q, k.float(), k_scale, v.float(), v_scale, 0, 0)


def test_a_prompt_over_an_int8_cache_takes_the_native_attention(smollm2_device, monkeypatch):
    """The device tier's prompt reads its int8 cache natively, layer by layer, and predicts what the
    torch path over the same rows predicts (the int8 activations of the device tier's matmuls carry
    the op's small roundings on, so the logits are held to the argmax; test_model holds the
    full-precision model's to the reference); a batch of two, or a float cache, keeps the torch path."""
    model = smollm2_device
    ids = model.tokenizer.encode("In the beginning God created the heaven and the earth. And the earth was "
                                 "without form, and void; and darkness was upon the face of the deep.")
    calls = []
    real = prefill_attention.attend
    monkeypatch.setattr(prefill_attention, "attend", lambda *a: calls.append(a[2]) or real(*a))
    with torch.inference_mode():
        got = model.model(torch.tensor([ids]), KVCache(model.config, 64, dtype=torch.int8))
        assert calls == list(range(model.config.n_layers))
        model.model(torch.tensor([ids]), KVCache(model.config, 64))
        model.model(torch.tensor([ids, ids]), KVCache(model.config, 64, batch_size=2, dtype=torch.int8))
        assert len(calls) == model.config.n_layers
        monkeypatch.setattr(prefill_attention, "runs", lambda cache, batch: False)
        want = model.model(torch.tensor([ids]), KVCache(model.config, 64, dtype=torch.int8))
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.9
