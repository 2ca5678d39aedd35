"""A 4-bit copy of an int8 KV cache's finished groups, which the native decode step reads instead of the rows.

At a long context a decode step streams the whole cache: SmolLM2 at 1,000 positions reads 11.9 MB
of int8 rows a token beside 88 MB of weights, and the step slows to ~80 % of the short prompt's.
Every finished group of GROUP positions of a kv head is therefore also kept in 4 bits (76 bytes a
position and head of 64 values instead of 132):

- keys per channel over the group's positions (KIVI's layout: a key channel's range is steady along
  positions, a position's is not: per token, 4-bit keys cost SmolLM2 ~6-8 % perplexity, per
  channel ~0.4 %; benchmarks/kv_cache_bits.py);
- values per position over CHANNELS channels;

each code with an fp16 scale and minimum (x = min + scale * code). The int8 rows stay the cache:
prefill reads them, the hand-off codec ships them, and the unfinished group is read from them.
A prompt's groups are packed at the end of its prefill, a later group when the decode step first
needs it (`update`, natively); a group is forgotten when the cache is rewound into it. Layouts are
the kernels' (kernels/decode_step.cpp, Q4Rows): keys pre-transposed in blocks of 16 positions, values
interleaved by pairs of positions.
"""

from __future__ import annotations

import torch

from engine import kernels
from engine.huge_pages import zeros

GROUP = 64  # positions of a key group (kernels/decode_step.cpp: kQ4Group)
CHANNELS = 32  # channels of a value group
HEAD_DIMS = (64, 128)  # what the kernels read


def supported(head_dim: int) -> bool:
    """Whether this build's decode step reads 4-bit groups (AVX-512 VNNI) for heads of `head_dim`."""
    return head_dim in HEAD_DIMS and kernels.available() and torch.ops.tandem.packed_kv_supported()


def quantize_4bit(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes uint8 0..15, scale fp16, min fp16) of x over `dim`, asymmetric: x ~ min + scale * code,
    the codes rounded against the fp16 scale and minimum the kernels read."""
    low = x.amin(dim, keepdim=True).clamp(-65504, 65504).half()
    scale = ((x.amax(dim, keepdim=True) - low.float()) / 15).clamp(max=65504).half()
    s = scale.float()
    codes = ((x - low.float()) / torch.where(s > 0, s, 1.0)).round_().clamp_(0, 15).to(torch.uint8)
    return codes, scale, low


def pack_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """keys [..., groups * GROUP, D] fp32 -> (bytes [..., groups, 32 D], stats fp16 [..., groups, 2, D]):
    per group and channel a scale and a minimum; per block of 16 positions, D / 8 vectors of 64
    bytes in which dword i is position i and byte j holds channel 8m + j (low nibble) and 8m + 4 + j."""
    *lead, t, d = keys.shape
    x = keys.reshape(*lead, t // GROUP, GROUP, d)
    codes, scale, low = quantize_4bit(x, -2)
    c = codes.view(*lead, t // GROUP, GROUP // 16, 16, d // 8, 2, 4)  # [.., group, block, i, m, h, j]
    c = c.movedim(-3, -4)  # [.., group, block, m, i, h, j]
    packed = (c[..., 0, :] | (c[..., 1, :] << 4)).reshape(*lead, t // GROUP, 32 * d)
    return packed.contiguous(), torch.cat([scale, low], -2)


def pack_values(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """values [..., groups * GROUP, D] fp32 -> (bytes [..., groups * GROUP / 2, D], stats fp16 [..., groups,
    D / CHANNELS, 2, GROUP]): per position and CHANNELS channels a scale and a minimum; per pair of
    positions and 64-channel block, dword L holds channels L | 16 + L (byte 0: the first position,
    byte 2: the second) and 32 + L | 48 + L (bytes 1 and 3)."""
    *lead, t, d = values.shape
    codes, scale, low = quantize_4bit(values.reshape(*lead, t, d // CHANNELS, CHANNELS), -1)
    c = codes.view(*lead, t // 2, 2, d // 64, 2, 2, 16)  # [.., pair, p, block, q, h, L]
    c = c[..., 0, :] | (c[..., 1, :] << 4)  # [.., pair, p, block, q, L]
    packed = c.permute(*range(len(lead)), -5, -3, -1, -4, -2).reshape(*lead, t // 2, d)
    stats = torch.stack([scale[..., 0], low[..., 0]], -1).view(*lead, t // GROUP, GROUP, d // CHANNELS, 2)
    return packed.contiguous(), stats.permute(*range(len(lead)), -4, -2, -1, -3).contiguous()


def unpack_keys(packed: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """What pack_keys' output holds, as fp32 [..., groups * GROUP, D] (tests and references)."""
    *lead, groups, size = packed.shape
    d = size // 32
    b = packed.view(*lead, groups, GROUP // 16, d // 8, 16, 4)  # [.., group, block, m, i, j]
    c = torch.stack([b & 15, b >> 4], -2)  # [.., group, block, m, i, h, j]
    codes = c.movedim(-4, -3).reshape(*lead, groups, GROUP, d)
    scale, low = stats.float().unbind(-2)
    return (codes.float() * scale.unsqueeze(-2) + low.unsqueeze(-2)).reshape(*lead, groups * GROUP, d)


def unpack_values(packed: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """What pack_values' output holds, as fp32 [..., groups * GROUP, D]."""
    *lead, pairs, d = packed.shape
    b = packed.view(*lead, pairs, d // 64, 16, 2, 2)  # [.., pair, block, L, p, q]
    c = torch.stack([b & 15, b >> 4], -1)  # [.., pair, block, L, p, q, h]
    codes = c.permute(*range(len(lead)), -6, -3, -5, -2, -1, -4).reshape(*lead, 2 * pairs, d)
    s = stats.float().permute(*range(len(lead)), -4, -1, -3, -2).reshape(*lead, 2 * pairs, d // CHANNELS, 2)
    x = codes.float().view(*lead, 2 * pairs, d // CHANNELS, CHANNELS) * s[..., :1] + s[..., 1:]
    return x.view(*lead, 2 * pairs, d)


class PackedKV:
    """The 4-bit groups of one int8 KVCache ([n_layers, B, n_kv_heads, ...] as its rows); the first
    `groups` groups of every head are current."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        layers, batch, heads, positions, d = shape
        if d not in HEAD_DIMS:
            raise ValueError(f"4-bit cache groups take heads of {' or '.join(map(str, HEAD_DIMS))} values, not {d}")
        lead, self.max_groups = (layers, batch, heads), positions // GROUP
        self.keys = zeros((*lead, self.max_groups, 32 * d), torch.uint8)
        self.key_stats = zeros((*lead, self.max_groups, 2, d), torch.float16)
        self.values = zeros((*lead, self.max_groups * GROUP // 2, d), torch.uint8)
        self.value_stats = zeros((*lead, self.max_groups, d // CHANNELS, 2, GROUP), torch.float16)
        self.groups = 0

    def update(self, k_rows, v_rows, pos: int) -> None:
        """Pack the groups finished before position `pos` from the int8 rows (Int8Rows of the cache):
        natively where the kernels are built (kernels/decode_step.cpp, pack_kv_groups: the same bytes),
        else with `pack_keys` and `pack_values`."""
        done = min(pos // GROUP, self.max_groups)
        if done <= self.groups:
            return
        first = self.groups
        if kernels.available():
            torch.ops.tandem.pack_kv_groups(k_rows.q, k_rows.scale, v_rows.q, v_rows.scale, self.keys,
                                            self.key_stats, self.values, self.value_stats, first, done)
        else:
            self._pack_in_torch(k_rows, v_rows, first, done)
        self.groups = done

    def _pack_in_torch(self, k_rows, v_rows, first: int, done: int) -> None:
        rows = (slice(None), slice(None), slice(None), slice(first * GROUP, done * GROUP))
        keys, key_stats = pack_keys(k_rows[rows].dequantize(torch.float32))
        values, value_stats = pack_values(v_rows[rows].dequantize(torch.float32))
        self.keys[:, :, :, first:done] = keys
        self.key_stats[:, :, :, first:done] = key_stats
        self.values[:, :, :, first * GROUP // 2:done * GROUP // 2] = values
        self.value_stats[:, :, :, first:done] = value_stats

    def forget_from(self, pos: int) -> None:
        """Positions from `pos` on are rewritten or gone: the groups holding them are no longer current."""
        self.groups = min(self.groups, pos // GROUP)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in (self.keys, self.key_stats, self.values, self.value_stats))
