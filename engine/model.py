"""One Llama-architecture transformer in plain torch (RMSNorm, RoPE, GQA, SwiGLU).

The model is stateless between calls: the caller owns a `KVCache` and passes it
in, so one set of weights can serve many sessions and a cache can be exported,
compressed and imported. Weight names follow Meta's Llama layout with the Q/K/V
and gate/up projections fused (`wqkv`, `w13`); loaders map checkpoints to them.
Quantized variants swap the `nn.Linear` modules; nothing here branches on it.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine import prefill_attention
from engine.config import ModelConfig, RopeScaling
from engine.huge_pages import zeros
from engine.int8_rows import Int8Rows, assign
from engine.packed_kv import PackedKV


class KVCache:
    """Preallocated keys and values of every layer; the first `pos` positions are valid.

    Keys are stored after RoPE. Shapes: k, v: [n_layers, B, n_kv_heads, max_seq_len, head_dim].
    `dtype` may be below the model's (fp16 under fp32 weights): attention widens what it reads.
    An int8 cache also holds one fp16 scale per vector, k_scale, v_scale: [n_layers, B,
    n_kv_heads, max_seq_len] (engine/int8_rows.py: the KV codec's int8 format); float caches
    hold None there. With `packed`, an int8 cache also keeps its finished groups of positions in
    4 bits for the native decode step to read (engine/packed_kv.py); rewinding `pos` or storing
    over a group drops that group's copy, and the step packs it again from the rows.
    """

    def __init__(
        self,
        config: ModelConfig,
        max_seq_len: int | None = None,
        *,
        batch_size: int = 1,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        packed: bool = False,
    ) -> None:
        if not (dtype.is_floating_point or dtype == torch.int8):
            raise ValueError(f"a KV cache holds floats or int8 rows, not {dtype}")
        if packed and (dtype != torch.int8 or torch.device(device).type != "cpu"):
            raise ValueError("4-bit groups are kept for an int8 cache on the CPU only")
        self.max_seq_len = min(max_seq_len or config.max_seq_len, config.max_seq_len)
        shape = (config.n_layers, batch_size, config.n_kv_heads, self.max_seq_len, config.head_dim)
        self.k = zeros(shape, dtype, device)
        self.v = zeros(shape, dtype, device)
        self.k_scale = self.v_scale = None
        if dtype == torch.int8:
            self.k_scale = zeros(shape[:-1], torch.float16, device)
            self.v_scale = zeros(shape[:-1], torch.float16, device)
        self.packed = PackedKV(shape) if packed else None
        self.pos = 0

    @property
    def pos(self) -> int:
        """How many positions are valid."""
        return self._pos

    @pos.setter
    def pos(self, pos: int) -> None:
        if self.packed is not None:
            self.packed.forget_from(pos)
        self._pos = pos

    @property
    def dtype(self) -> torch.dtype:
        return self.k.dtype

    def keys(self) -> torch.Tensor | Int8Rows:
        """Every stored key, as the float tensor or as int8 rows (views: indexing them writes here)."""
        return self.k if self.k_scale is None else Int8Rows(self.k, self.k_scale)

    def values(self) -> torch.Tensor | Int8Rows:
        return self.v if self.v_scale is None else Int8Rows(self.v, self.v_scale)

    def store(self, index: tuple, k: torch.Tensor | Int8Rows, v: torch.Tensor | Int8Rows) -> None:
        """Write keys and values at `index` (over the leading dims), rounded to the cache's type."""
        if self.packed is not None:
            span = index[3] if len(index) > 3 and isinstance(index[3], slice) else slice(None)
            self.packed.forget_from(span.start or 0)
        assign(self.keys()[index], k)
        assign(self.values()[index], v)

    def read(self, index: tuple, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values at `index` as `dtype` (widened or dequantized: a copy, unless already `dtype`)."""
        return tuple(t[index].to(dtype) if isinstance(t, torch.Tensor) else t[index].dequantize(dtype)
                     for t in (self.keys(), self.values()))

    def append(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, Hkv, T, D] at positions start.. of `layer`; return the keys and values of
        positions 0..start+T for attention, in k's dtype. A float cache gives back what it holds
        (fp16 widened), an int8 cache its rows dequantized, the new ones included: a prompt attends
        through the rounding as its decode steps do, and as the native prompt attention reads the
        rows (engine/prefill_attention.py), which this is the reference of."""
        bsz, seqlen = k.shape[0], k.shape[2]
        end = start + seqlen
        self.store((layer, slice(0, bsz), slice(None), slice(start, end)), k, v)
        return self.read((layer, slice(0, bsz), slice(None), slice(0, end)), k.dtype)

    def reset(self) -> None:
        self.pos = 0

    def truncate(self, pos: int) -> None:
        """Forget everything from position `pos` on (e.g. to rewind to a shared prefix)."""
        if not 0 <= pos <= self.pos:
            raise ValueError(f"cannot truncate a cache holding {self.pos} positions to {pos}")
        self.pos = pos

    def copy_into(self, other: "KVCache") -> "KVCache":
        """Copy the valid positions into `other` (same model, room for them) and return it."""
        if other.max_seq_len < self.pos:
            raise ValueError(f"a cache of {other.max_seq_len} positions cannot hold {self.pos}")
        valid = (slice(None), slice(None), slice(None), slice(0, self.pos))
        other.store(valid, self.keys()[valid], self.values()[valid])
        other.pos = self.pos
        return other

    @property
    def nbytes(self) -> int:
        scales = 0 if self.k_scale is None else self.k_scale.nbytes + self.v_scale.nbytes
        return self.k.nbytes + self.v.nbytes + scales + (0 if self.packed is None else self.packed.nbytes)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.n_kv_heads = config.n_kv_heads
        self.head_dim = config.head_dim
        self.q_size = config.n_heads * config.head_dim
        self.kv_size = config.n_kv_heads * config.head_dim
        self.wqkv = nn.Linear(config.dim, self.q_size + 2 * self.kv_size, bias=False)
        self.wo = nn.Linear(self.q_size, config.dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        cache: KVCache,
        layer: int,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        bsz, seqlen, _ = x.shape
        start = cache.pos
        qk, v = self.wqkv(x).split([self.q_size + self.kv_size, self.kv_size], dim=-1)
        # RoPE on the query and key heads at once: [B, T, H + Hkv, D], cos/sin [T, 1, D]
        qk = apply_rope(qk.view(bsz, seqlen, self.n_heads + self.n_kv_heads, self.head_dim), rope)
        # q: [B, H, T, D]; k, v: [B, Hkv, T, D]
        q, k = (t.transpose(1, 2) for t in qk.split([self.n_heads, self.n_kv_heads], dim=2))
        v = v.view(bsz, seqlen, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if seqlen > 1 and prefill_attention.runs(cache, bsz):  # a prompt over an int8 cache: read as it is
            cache.store((layer, slice(0, 1), slice(None), slice(start, start + seqlen)), k, v)
            out = prefill_attention.attend(qk[0, :, : self.n_heads], cache, layer, start)
            return self.wo(out.view(1, seqlen, self.q_size))

        # A cache kept at lower precision (fp16 or int8 rows on the device tier) is widened
        # here, in prefill and the fallback path; the native decode step reads it as it is.
        keys, values = cache.append(layer, start, k, v)
        out = F.scaled_dot_product_attention(
            q, keys, values,
            attn_mask=mask,
            is_causal=mask is None and seqlen > 1,
            enable_gqa=self.n_heads != self.n_kv_heads,
        )
        return self.wo(out.transpose(1, 2).reshape(bsz, seqlen, self.q_size))


class FeedForward(nn.Module):
    """SwiGLU with the gate (w1) and up (w3) projections fused into one matmul."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ffn_dim = config.ffn_dim
        self.w13 = nn.Linear(config.dim, 2 * config.ffn_dim, bias=False)
        self.w2 = nn.Linear(config.ffn_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).split(self.ffn_dim, dim=-1)
        return self.w2(F.silu(gate) * up)


class TransformerBlock(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(config)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.feed_forward = FeedForward(config)

    def forward(self, x, rope, cache, layer, mask):
        h = x + self.attention(self.attention_norm(x), rope, cache, layer, mask)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # Weights always come from a checkpoint; passing `_weight` skips a random
        # init that costs seconds on the meta device.
        self.tok_embeddings = nn.Embedding(
            config.vocab_size, config.dim, _weight=torch.empty(config.vocab_size, config.dim)
        )
        self.layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        cos, sin = rope_tables(config)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        # Set by the runtime when the layers can run a single-token step in one native
        # call (engine/decode_step.py); None runs the modules below.
        self.decode_step = None

    def forward(
        self, tokens: torch.Tensor, cache: KVCache, *, last_only: bool = False, with_hidden: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Run `tokens` [B, T] at positions cache.pos.. and append them to the cache.

        Returns logits [B, T, V], or [B, 1, V] for the last position when `last_only`
        (prefill for generation needs only that, and the vocab matmul dominates it).
        `with_hidden` also returns the final normed hidden state [B, T or 1, dim] the
        logits were projected from: what a learned confidence judge reads.
        """
        bsz, seqlen = tokens.shape
        start, end = cache.pos, cache.pos + seqlen
        if end > cache.max_seq_len:
            raise ValueError(f"positions {start}..{end} exceed the KV cache of {cache.max_seq_len}")
        rope = (self.rope_cos[start:end], self.rope_sin[start:end])
        mask = None
        if seqlen > 1 and start > 0:
            # Queries at start..end-1 see every cached position plus the causal part.
            mask = torch.ones(seqlen, end, dtype=torch.bool, device=tokens.device).tril(diagonal=start)
        x = self.tok_embeddings(tokens)
        native = self.decode_step is not None and self.decode_step.runs(tokens, cache)
        if native and self.decode_step.head is not None:
            logits, normed = self.decode_step.logits(x, cache)
            cache.pos = end
            return (logits, normed) if with_hidden else logits
        if native:
            x = self.decode_step(x, cache)
        else:
            for i, layer in enumerate(self.layers):
                x = layer(x, rope, cache, i, mask)
        cache.pos = end
        if cache.packed is not None and seqlen > 1:  # the prompt's finished groups, while it is still prefill
            cache.packed.update(cache.keys(), cache.values(), end)
        if last_only:
            x = x[:, -1:]
        normed = self.norm(x)
        logits = self.output(normed).float()
        return (logits, normed.float()) if with_hidden else logits


def rope_frequencies(head_dim: int, theta: float, scaling: RopeScaling | None) -> torch.Tensor:
    """Inverse frequencies [head_dim/2], with Llama 3's smooth long-wavelength scaling."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64, device="cpu") / head_dim))
    if scaling is None:
        return inv_freq
    low_wavelen = scaling.original_max_position_embeddings / scaling.low_freq_factor
    high_wavelen = scaling.original_max_position_embeddings / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    smooth = (scaling.original_max_position_embeddings / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    scaled = torch.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    mid = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(mid, (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq, scaled)


def rope_tables(config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin [max_seq_len, 1, head_dim] in the half-split layout of HF Llama.

    The sin table carries the sign of the rotation (-sin on the first half), so
    that `apply_rope` needs one roll instead of two slices, a negation and a cat.
    """
    inv_freq = rope_frequencies(config.head_dim, config.rope_theta, config.rope_scaling)
    angles = torch.outer(torch.arange(config.max_seq_len, dtype=torch.float64, device="cpu"), inv_freq)
    sin = angles.sin()
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float()[:, None], torch.cat([-sin, sin], dim=-1).float()[:, None]


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate x [B, T, heads, D] by its positions' angles (cos, signed sin: [T, 1, D])."""
    cos, sin = rope
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, -1), sin).to(x.dtype)
