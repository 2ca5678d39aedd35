"""The KV codec's number formats, as vectorised torch on whole blocks.

Each encoder returns byte sections (uint8 tensors, concatenated by the frame)
and each decoder reads them back from a flat uint8 buffer; section sizes are a
pure function of the shapes (`*_nbytes`), so a decoder knows every size before
it reads anything.

- exact: the source dtype's own bytes; the decoded values are bit-identical.
- fp16: the values rounded to half precision; error <= 2^-11 * |x|.
- int8 (per token): symmetric, one fp16 scale per [head, token] vector;
  error <= 0.5 * absmax / 127 of that vector (plus fp16 rounding of the scale).
- q4 (KIVI, asymmetric 4 bit, fp16 scale and zero point): keys per channel,
  each channel's group of consecutive tokens sharing a scale; values per token,
  each group of channels sharing one. Error <= 0.5 * (max - min) / 15 of the group
  (plus fp16 rounding of scale and zero point).
"""

from __future__ import annotations

import math

import torch

Q4_LEVELS = 15
INT8_MAX = 127
FP16_MAX = 65504.0


class Reader:
    """Consumes a flat uint8 buffer section by section (sizes known in advance)."""

    def __init__(self, buffer: torch.Tensor) -> None:
        self.buffer = buffer
        self.offset = 0

    def take(self, nbytes: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        section = self.buffer[self.offset : self.offset + nbytes]
        self.offset += nbytes
        return section.view(dtype).view(shape)


def _as_bytes(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.uint8).flatten()


def _fp16_scale(spread: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fp16 scale for `spread` over `levels` steps, and its float32 inverse (0 where the scale is 0)."""
    scale = (spread / levels).to(torch.float16)
    inverse = scale.float().reciprocal_()
    inverse.masked_fill_(scale == 0, 0.0)
    return scale, inverse


# --- exact (the source dtype) -----------------------------------------------------------------


def exact_nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    return dtype.itemsize * math.prod(shape)


def exact_encode(x: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
    """x in `dtype` already (the cache's own): its bytes, unchanged."""
    return [_as_bytes(x.to(dtype))]


def exact_decode(reader: Reader, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return reader.take(exact_nbytes(shape, dtype), dtype, shape)


# --- fp16 -----------------------------------------------------------------------------


def fp16_nbytes(shape: tuple[int, ...]) -> int:
    return 2 * math.prod(shape)


def _check_fp16_range(low: torch.Tensor, high: torch.Tensor, what: str) -> None:
    if not (float(low.min()) >= -FP16_MAX and float(high.max()) <= FP16_MAX):
        raise ValueError(f"KV values reach {max(-float(low.min()), float(high.max())):g}, beyond the fp16 range "
                         f"of the {what} codec; use the int8 codec")


def fp16_encode(x: torch.Tensor) -> list[torch.Tensor]:
    _check_fp16_range(*torch.aminmax(x), "fp16")
    return [_as_bytes(x.to(torch.float16))]


def fp16_decode(reader: Reader, shape: tuple[int, ...]) -> torch.Tensor:
    return reader.take(fp16_nbytes(shape), torch.float16, shape).float()


# --- int8 per token -------------------------------------------------------------------


def int8_nbytes(shape: tuple[int, ...]) -> int:
    """x: [..., D]: one fp16 scale per vector of D, then D int8 values."""
    return 2 * math.prod(shape[:-1]) + math.prod(shape)


def int8_encode(x: torch.Tensor) -> list[torch.Tensor]:
    scale, inverse = _fp16_scale(x.abs().amax(dim=-1, keepdim=True), INT8_MAX)
    q = (x * inverse).round_().clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return [_as_bytes(scale), _as_bytes(q)]


def int8_decode(reader: Reader, shape: tuple[int, ...]) -> torch.Tensor:
    scale = reader.take(2 * math.prod(shape[:-1]), torch.float16, (*shape[:-1], 1))
    q = reader.take(math.prod(shape), torch.int8, shape)
    return q.float().mul_(scale.float())


# --- asymmetric 4 bit in groups ---------------------------------------------------------


def q4_nbytes(shape: tuple[int, ...], group_dim: int) -> int:
    """x grouped so that dimension `group_dim` holds one group: fp16 scale and zero per
    group, then two values per byte."""
    n_groups = math.prod(shape) // shape[group_dim]
    return 4 * n_groups + math.prod(shape) // 2


def q4_encode(x: torch.Tensor, group_dim: int) -> list[torch.Tensor]:
    """x: any shape with an even element count; the values along `group_dim` form a group."""
    low, high = torch.aminmax(x, dim=group_dim, keepdim=True)
    _check_fp16_range(low, high, "q4")
    zero = low.to(torch.float16)
    scale, inverse = _fp16_scale(high - zero.float(), Q4_LEVELS)
    q = (x - zero.float()).mul_(inverse).round_().clamp_(0, Q4_LEVELS).to(torch.uint8).flatten()
    packed = q[0::2] | (q[1::2] << 4)
    return [_as_bytes(scale), _as_bytes(zero), packed]


def q4_decode(reader: Reader, shape: tuple[int, ...], group_dim: int) -> torch.Tensor:
    stat_shape = tuple(1 if i == group_dim % len(shape) else n for i, n in enumerate(shape))
    n_groups = math.prod(stat_shape)
    scale = reader.take(2 * n_groups, torch.float16, stat_shape).float()
    zero = reader.take(2 * n_groups, torch.float16, stat_shape).float()
    packed = reader.take(math.prod(shape) // 2, torch.uint8, (math.prod(shape) // 2,))
    q = torch.stack((packed & 0x0F, packed >> 4), dim=-1).view(shape)
    return q.float().mul_(scale).add_(zero)
