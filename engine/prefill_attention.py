"""A prompt's attention read straight from an int8 KV cache, in the decode step's arithmetic.

Through torch, a prompt over an int8 cache had its keys and values dequantized back to fp32 for
SDPA, layer by layer: on SmolLM2's 1,000-token prompt the attention was ~30 % of prefill and the
widening another few. `tandem::prefill_attention` (kernels/decode_step.cpp) runs each prompt
position as a decode step at that position would: the query rounded to int16, int8 dot products
with the key rows, int16 weights on the value rows. A prompt therefore attends through the cache's
rounding as its continuation does (device tier: ~0.3 % perplexity on the prompt's own tokens,
benchmarks/quality.py).
"""

from __future__ import annotations

import torch

from engine import kernels


def runs(cache, batch: int) -> bool:
    """Whether the native attention serves a prompt of `batch` rows over `cache` (a KVCache)."""
    return (batch == 1 and cache.k.dtype == torch.int8 and cache.k.device.type == "cpu"
            and cache.k.is_contiguous() and cache.v.is_contiguous() and kernels.available())


def attend(q: torch.Tensor, cache, layer: int, start: int) -> torch.Tensor:
    """Attention output [T, H * D] of queries q [T, H, D] (after RoPE) at positions start.. over
    positions 0..start+T of `layer`, which the cache must already hold."""
    return torch.ops.tandem.prefill_attention(q, cache.k, cache.k_scale, cache.v, cache.v_scale, layer, start)
