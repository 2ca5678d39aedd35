"""One decode token through every layer of a quantized model in a single native call.

A 135M-parameter model decodes a token in a few milliseconds; run module by
module that is ~3,000 small ops, and their dispatch cost a third of the step.
`NativeDecodeStep` hands the layer loop to `tandem::decode_step`
(kernels/decode_step.cpp) when every layer's matmuls are quantized with int8
activations and the native kernels are built; otherwise `build` returns None
and the model runs its modules. Both compute the same thing: the step's test
holds one to the other. The KV cache may be int8 rows with an fp16 scale each
(the device tier's default: a little over a quarter of the bytes attention
streams per token in fp32), fp16 or fp32; the step reads each directly. An int8
cache may also keep its finished groups of positions in 4 bits
(engine/packed_kv.py), which the step reads instead of their rows.
"""

from __future__ import annotations

import torch

from engine import kernels, packed_kv
from engine.model import KVCache, Transformer
from engine.quant_linear import QuantLinear

# What the native step's attention reads directly (fp16 widened in registers; int8 keys in integer
# dot products with the query rounded to int16, int8 values too on AVX-512 VNNI, with the weights
# rounded to int16, else widened in registers).
CACHE_DTYPES = (torch.float32, torch.float16, torch.int8)


class NativeDecodeStep:
    """The per-layer tensors of a model, gathered once, for `tandem::decode_step`."""

    def __init__(self, model: Transformer, matrices: list[QuantLinear]) -> None:
        self.n_heads = model.config.n_heads
        self.eps = model.config.norm_eps
        self.norms = torch.stack([
            torch.stack([layer.attention_norm.weight, layer.ffn_norm.weight]) for layer in model.layers
        ]).detach().float().contiguous()
        self.weights = [m.weight for m in matrices]
        self.scales = [m.scales for m in matrices]
        self.fmts = [m.code for m in matrices]
        self.rope = (model.rope_cos, model.rope_sin)
        self.reads_packed = packed_kv.supported(model.config.head_dim)  # else a packed cache is read by its rows
        # The final norm and the output layer join the step when the output layer is quantized with
        # near-fp32 activations (as `swap_modules` makes it): one parallel region a token, not three ops.
        out = model.output
        self.head = None
        if isinstance(out, QuantLinear) and not out.quantize_activations and model.norm.weight.dtype == torch.float32:
            self.head = (model.norm.weight.detach().contiguous(), out)

    @classmethod
    def build(cls, model: Transformer) -> "NativeDecodeStep | None":
        """The native step for `model`, or None when its layers cannot run in it."""
        matrices = [m for layer in model.layers for m in (
            layer.attention.wqkv, layer.attention.wo, layer.feed_forward.w13, layer.feed_forward.w2)]
        if not all(isinstance(m, QuantLinear) and m.quantize_activations for m in matrices):
            return None
        if model.rope_cos.dtype != torch.float32 or not kernels.available():
            return None
        return cls(model, matrices)

    def runs(self, tokens: torch.Tensor, cache: KVCache) -> bool:
        """Whether this call is one the native step serves: one token, an fp32, fp16 or int8 cache."""
        return (tokens.shape == (1, 1) and cache.k.dtype in CACHE_DTYPES and cache.v.dtype == cache.k.dtype
                and cache.k.is_contiguous() and cache.v.is_contiguous())

    def __call__(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Hidden state [1, 1, dim] after every layer; appends the token to `cache` (not its pos)."""
        return torch.ops.tandem.decode_step(*self._step_args(x, cache), *self._packed_args(cache))

    def logits(self, x: torch.Tensor, cache: KVCache) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [1, 1, vocab], normed hidden state [1, 1, dim]) after every layer, the final norm and
        the output layer (`head` must be set); appends the token to `cache` (not its pos)."""
        norm, out = self.head
        normed, logits = torch.ops.tandem.decode_logits(*self._step_args(x, cache), norm, out.weight, out.scales,
                                                        out.code, *self._packed_args(cache))
        return logits.view(1, 1, -1), normed.view(1, 1, -1)

    def _step_args(self, x: torch.Tensor, cache: KVCache) -> tuple:
        cos, sin = self.rope
        return (x, self.norms, self.weights, self.scales, self.fmts, cache.k, cache.v, cos, sin, cache.pos,
                self.n_heads, self.eps, cache.k_scale, cache.v_scale)

    def _packed_args(self, cache: KVCache) -> tuple:
        """The cache's 4-bit groups, brought up to the positions before this step (none: empty)."""
        packed = cache.packed
        if packed is None or not self.reads_packed:
            return (None, None, None, None, 0)
        packed.update(cache.keys(), cache.values(), cache.pos)
        return (packed.keys, packed.key_stats, packed.values, packed.value_stats, packed.groups)
