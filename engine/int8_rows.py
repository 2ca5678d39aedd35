"""Vectors stored as int8 with one fp16 scale each: the int8 KV cache and the KV codec's int8 format.

One convention for both, so that a cache kept in int8 hands off as it is (the
codec sends its bytes without rounding again) and a received int8 frame lands
in an int8 cache bit for bit: per vector of D values (one head of one token),
symmetric, scale = fp16(absmax / 127), q = round-half-even(x / scale) clamped
to [-127, 127], x ~= q * scale; error <= 0.5 * scale (plus the scale's own fp16
rounding). The native decode step (kernels/decode_step.cpp) rounds the same way.
This module imports only torch: the model and the codec both build on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

INT8_MAX = 127


@dataclass(frozen=True)
class Int8Rows:
    """q: int8 [..., D]; scale: fp16 [...] (one per vector). Indexing the leading dims gives views."""

    q: torch.Tensor
    scale: torch.Tensor

    def __getitem__(self, index) -> Int8Rows:
        return Int8Rows(self.q[index], self.scale[index])

    @property
    def shape(self) -> torch.Size:
        return self.q.shape

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """q * scale in fp32 (the codec's decoder does the same), then `dtype`."""
        return self.q.float().mul_(self.scale.float().unsqueeze(-1)).to(dtype)

    def copy_(self, src: torch.Tensor | Int8Rows) -> None:
        """Write `src` here: int8 rows bit for bit, float values rounded by `quantize`."""
        rows = src if isinstance(src, Int8Rows) else quantize(src)
        self.q.copy_(rows.q)
        self.scale.copy_(rows.scale)


def assign(dest: torch.Tensor | Int8Rows, src: torch.Tensor | Int8Rows) -> None:
    """dest = src, either of them float or int8 rows: rounded to int8, dequantized or copied as is."""
    if isinstance(dest, torch.Tensor) and isinstance(src, Int8Rows):
        src = src.dequantize()
    dest.copy_(src)


def fp16_scale(spread: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fp16 scale for `spread` over `levels` steps, and its fp32 inverse (0 where the scale is 0)."""
    scale = (spread / levels).to(torch.float16)
    inverse = scale.float().reciprocal_()
    inverse.masked_fill_(scale == 0, 0.0)
    return scale, inverse


def quantize(x: torch.Tensor) -> Int8Rows:
    """x [..., D] (any float dtype) as int8 rows, one fp16 scale per vector of D."""
    x = x.float()
    scale, inverse = fp16_scale(x.abs().amax(dim=-1, keepdim=True), INT8_MAX)
    q = (x * inverse).round_().clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return Int8Rows(q, scale.squeeze(-1))
