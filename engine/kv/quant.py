"""The KV codec's number formats, as vectorised torch on whole blocks.

Each encoder returns byte sections (uint8 tensors, concatenated by the frame)
and each decoder reads them back from a flat uint8 buffer; section sizes are a
pure function of the shapes (`*_nbytes`), so a decoder knows every size before
it reads anything.

- exact: the source dtype's own bytes; the decoded values are bit-identical.
- fp16: the values rounded to half precision; error <= 2^-11 * |x|.
- int8 (per token): symmetric, one fp16 scale per [head, token] vector;
  error <= 0.5 * absmax / 127 of that vector (plus fp16 rounding of the scale).
- q4 channel, x viewed as [A, B, G, g, D]: each of the D "channels"' range over
  the block in fp16, rounded outward, and each group of g entries' range on that
  channel as two 8-bit codes on a 255-step grid of it, rounded outward: 2 bytes a
  group instead of 4, so groups can be twice as short for the same size. Error
  <= 0.5 * (hi - lo) / 15 of the group's grid range [lo, hi], which covers the
  group's values and exceeds their range by at most two grid steps. Keys use it
  per channel over groups of consecutive tokens (as KIVI and KVQuant do); values
  per token over groups of channels, viewed as [L, H, T * D / g, g, 1] (one
  "channel": the head's range over the block).
"""

from __future__ import annotations

import math
import sys

import torch

from engine.int8_rows import Int8Rows, quantize

Q4_LEVELS = 15
FP16_MAX = 65504.0
LITTLE_ENDIAN = sys.byteorder == "little"


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


# --- exact (the source dtype) -----------------------------------------------------------------
# An int8 cache (engine/int8_rows.py) is exact in its own int8 rows: the int8 format below.


def exact_nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    return int8_nbytes(shape) if dtype == torch.int8 else dtype.itemsize * math.prod(shape)


def exact_encode(x: torch.Tensor | Int8Rows, dtype: torch.dtype) -> list[torch.Tensor]:
    """x in `dtype` already (the cache's own): its bytes, unchanged."""
    if dtype == torch.int8:
        return int8_encode(x)
    return [_as_bytes(x.to(dtype))]


def exact_decode(reader: Reader, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor | Int8Rows:
    if dtype == torch.int8:
        return int8_decode_rows(reader, shape)
    return reader.take(exact_nbytes(shape, dtype), dtype, shape)


# --- fp16 -----------------------------------------------------------------------------


def fp16_nbytes(shape: tuple[int, ...]) -> int:
    return 2 * math.prod(shape)


def _check_fp16_range(low: torch.Tensor, high: torch.Tensor, what: str) -> None:
    lowest, highest = float(low.min()), float(high.max())
    if math.isnan(lowest) or math.isnan(highest):
        raise ValueError("the KV cache holds NaN values; a cache that decoding broke cannot be sent")
    if not (lowest >= -FP16_MAX and highest <= FP16_MAX):
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


def int8_encode(x: torch.Tensor | Int8Rows) -> list[torch.Tensor]:
    """Float values are rounded (engine/int8_rows.py); int8 rows (an int8 cache) go as they are."""
    rows = x if isinstance(x, Int8Rows) else quantize(x)
    return [_as_bytes(rows.scale), _as_bytes(rows.q)]


def int8_decode_rows(reader: Reader, shape: tuple[int, ...]) -> Int8Rows:
    scale = reader.take(2 * math.prod(shape[:-1]), torch.float16, shape[:-1])
    return Int8Rows(reader.take(math.prod(shape), torch.int8, shape), scale)


def int8_decode(reader: Reader, shape: tuple[int, ...]) -> torch.Tensor:
    return int8_decode_rows(reader, shape).dequantize()


# --- 4 bit with 8-bit group ranges ----------------------------------------------------


def _fp16_outward(low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp16 bounds with low16 <= low and high16 >= high."""
    low16, high16 = low.to(torch.float16), high.to(torch.float16)
    low16 = torch.where(low16.float() > low, torch.nextafter(low16, low16.new_tensor(-math.inf)), low16)
    high16 = torch.where(high16.float() < high, torch.nextafter(high16, high16.new_tensor(math.inf)), high16)
    return low16, high16


def _channel_grid(c_low: torch.Tensor, c_high: torch.Tensor, lo_code: torch.Tensor, hi_code: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """A group's zero point and step from its channel's fp16 range and its two 8-bit codes;
    the encoder and the decoder compute it with the same operations."""
    grid = (c_high.float() - c_low.float()) / 255
    zero = c_low.float() + lo_code.float() * grid
    return zero, (hi_code.float() - lo_code.float()) * grid / Q4_LEVELS


def q4c_nbytes(shape: tuple[int, ...]) -> int:
    """x: [A, B, G, g, D], groups of g along dim 3: fp16 channel range, two u8 codes per group,
    then two values per byte."""
    a, b, n_groups, _, d = shape
    return 4 * a * b * d + 2 * a * b * n_groups * d + math.prod(shape) // 2


def _group_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max over dim 3 of [A, B, G, g, D], keepdim. torch reduces a short contiguous
    run (D == 1: the values' groups) slowly and aminmax over an outer dim slowly too, so the
    former folds halves elementwise and the latter takes amin and amax (both exact)."""
    g = x.shape[3]
    if x.shape[4] != 1 or g & (g - 1):
        return x.amin(dim=3, keepdim=True), x.amax(dim=3, keepdim=True)
    low = high = x.squeeze(4)
    while low.shape[3] > 1:
        half = low.shape[3] // 2
        low = torch.minimum(low[..., :half], low[..., half:])
        high = torch.maximum(high[..., :half], high[..., half:])
    return low.unsqueeze(4), high.unsqueeze(4)


def _pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """Codes 0..15 (uint8, contiguous, even in count) -> bytes, the even-indexed code in the low
    nibble. On little-endian hosts each pair is one int16 word: one pass instead of two strided."""
    if not LITTLE_ENDIAN:
        return q[0::2] | (q[1::2] << 4)
    word = q.view(torch.int16)
    return (word | (word >> 4)).to(torch.uint8)


def _unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of _pack_nibbles: n bytes -> 2n uint8 codes."""
    if not LITTLE_ENDIAN:
        return torch.stack((packed & 0x0F, packed >> 4), dim=-1).flatten()
    word = packed.to(torch.int16)
    return ((word & 0x0F) | ((word & 0xF0) << 4)).view(torch.uint8)


def q4c_encode(x: torch.Tensor) -> list[torch.Tensor]:
    """x: [A, B, G, g, D] with an even element count; a group is g consecutive entries of one
    channel (the last dim)."""
    low, high = _group_range(x)  # [A, B, G, 1, D]
    _check_fp16_range(low, high, "q4")
    c_low, c_high = _fp16_outward(low.amin(dim=2, keepdim=True), high.amax(dim=2, keepdim=True))
    grid = (c_high.float() - c_low.float()) / 255
    inverse = grid.reciprocal().masked_fill_(grid == 0, 0.0)
    lo_code = (low - c_low.float()).mul_(inverse).floor_().clamp_(0, 255).to(torch.uint8)
    hi_code = (high - c_low.float()).mul_(inverse).ceil_().clamp_(0, 255).to(torch.uint8)
    zero, scale = _channel_grid(c_low, c_high, lo_code, hi_code)
    step_inverse = scale.reciprocal().masked_fill_(scale == 0, 0.0)
    # float -> int32 -> uint8: torch's direct float -> uint8 conversion is several times slower
    q = (x - zero).mul_(step_inverse).round_().clamp_(0, Q4_LEVELS).to(torch.int32).to(torch.uint8)
    return [_as_bytes(c_low), _as_bytes(c_high), _as_bytes(lo_code), _as_bytes(hi_code), _pack_nibbles(q.flatten())]


def q4c_decode(reader: Reader, shape: tuple[int, ...]) -> torch.Tensor:
    a, b, n_groups, _, d = shape
    c_low = reader.take(2 * a * b * d, torch.float16, (a, b, 1, 1, d))
    c_high = reader.take(2 * a * b * d, torch.float16, (a, b, 1, 1, d))
    lo_code = reader.take(a * b * n_groups * d, torch.uint8, (a, b, n_groups, 1, d))
    hi_code = reader.take(a * b * n_groups * d, torch.uint8, (a, b, n_groups, 1, d))
    zero, scale = _channel_grid(c_low, c_high, lo_code, hi_code)
    packed = reader.take(math.prod(shape) // 2, torch.uint8, (math.prod(shape) // 2,))
    return _unpack_nibbles(packed).view(shape).float().mul_(scale).add_(zero)
