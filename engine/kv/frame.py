"""One KV frame: a header, a zstd payload and a CRC-32, at most 1 MiB in all.

A frame holds keys and values of a range of layers and a range of token
positions, in one codec. Its header says everything a receiver must check
before it trusts or allocates anything: the sender's model fingerprint, the
codec and its parameters, the cache layout (layers, KV heads, head dim), the
ranges, the source dtype, the position offset, whether keys are post-RoPE, and
the exact sizes of the payload before and after zstd.

    offset  field
    0       magic "TKV1", version, codec, dtype, flags (bit 0: keys post-RoPE)
    8       n_layers, n_kv_heads, head_dim, layer_start, layer_count   (u16 each)
    18      total_tokens, token_start, token_count, position_offset     (u32 each)
    34      key_group, value_group, sink_tokens, key8_len, recent_tokens (u16 each)
    44      fingerprint field lengths (3 x u8), raw_len, payload_len (u32)
    55      fingerprint: architecture, weights family, quantization (UTF-8)
    ...     key8 bitmap (key8_len bytes), payload (zstd), then CRC-32 of everything
            before it (u32)

Version 2 added the value group and the recent window (q4 keeps the last
`recent_tokens` positions of the cache exactly, in the source dtype). Version 3
replaced "the first N layers at 8 bit" by a bitmap of the (layer, KV head)
pairs whose keys stay at 8 bit (bit `layer * n_kv_heads + head`, least
significant first), measured per model (engine/kv/profiles.py), and gave q4
values 8-bit group ranges inside each head's range (2 bytes a group instead of
an fp16 scale and zero point, so groups are half as wide for the size). An older
frame is refused with an error that names both versions.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Iterator

import torch
import zstandard

from engine.config import ModelConfig
from engine.fingerprint import ModelFingerprint
from engine.int8_rows import Int8Rows, assign
from engine.kv import quant
from engine.kv.errors import KVFormatError, KVLimitError

MAGIC = b"TKV1"
VERSION = 3
MAX_FRAME_BYTES = 1024 * 1024
MAX_RAW_BYTES = MAX_FRAME_BYTES - 16 * 1024  # zstd's worst-case growth plus the header still fit
MAX_FINGERPRINT_FIELD = 128

CODECS = {"fp16": 1, "int8": 2, "q4": 3}
CODEC_NAMES = {v: k for k, v in CODECS.items()}
# int8: a cache of int8 rows with fp16 scales (engine/int8_rows.py), whose own bytes are the int8 codec's
DTYPES = {torch.float32: 1, torch.float16: 2, torch.bfloat16: 3, torch.int8: 4}
DTYPE_OF = {v: k for k, v in DTYPES.items()}
Q4_KEY_GROUPS = (16, 32, 64)  # tokens per key channel group
Q4_VALUE_GROUPS = (8, 16, 32, 64, 128)  # channels per value group; must divide head_dim
MAX_SINK_TOKENS = 1024
MAX_RECENT_TOKENS = 1024
FLAG_POST_ROPE = 1

_FIXED = struct.Struct("<4sBBBB5H4I5H3BII")
_CRC = struct.Struct("<I")
HEADER_MIN_BYTES = _FIXED.size + _CRC.size


@dataclass(frozen=True)
class KVLayout:
    """The receiver's cache geometry; every frame must match it."""

    n_layers: int
    n_kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, config: ModelConfig) -> KVLayout:
        return cls(config.n_layers, config.n_kv_heads, config.head_dim)


@dataclass(frozen=True)
class FrameHeader:
    codec: str
    dtype: torch.dtype
    keys_post_rope: bool
    layout: KVLayout
    layer_start: int
    layer_count: int
    total_tokens: int
    token_start: int
    token_count: int
    position_offset: int
    key_group: int
    value_group: int
    sink_tokens: int
    key8: bytes  # bitmap of the (layer, KV head) pairs whose q4 keys stay at 8 bit; b"" for none
    recent_tokens: int
    fingerprint: ModelFingerprint
    raw_len: int = 0
    payload_len: int = 0

    def key8_heads(self, layer: int) -> list[bool]:
        """Per KV head of this (absolute) layer: are its keys kept at 8 bit?"""
        heads = self.layout.n_kv_heads
        bits = [layer * heads + h for h in range(heads)]
        return [bool(self.key8) and bool(self.key8[b // 8] >> (b % 8) & 1) for b in bits]

    @property
    def stream_identity(self) -> tuple:
        """What every frame of one cache must agree on."""
        return (self.codec, self.dtype, self.keys_post_rope, self.layout, self.total_tokens,
                self.position_offset, self.key_group, self.value_group, self.sink_tokens, self.key8,
                self.recent_tokens, self.fingerprint)


@dataclass(frozen=True)
class Part:
    """One section of a payload: keys or values of a sub-block, in one number format.

    `shape` is the block viewed for quantization ([L, H, T, D], or [A, B, G, g, D]
    for q4c with groups of g along dimension 3).
    """

    tensor: str  # "k" | "v"
    fmt: str  # "fp16" | "int8" | "q4c" (4 bit, 8-bit group ranges) | "exact" (the source dtype's own bytes)
    layers: tuple[int, int]  # relative to the frame
    heads: tuple[int, int]
    tokens: tuple[int, int]
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32  # of "exact" parts (int8: the int8 format)

    @property
    def nbytes(self) -> int:
        if self.fmt == "exact":
            return quant.exact_nbytes(self.shape, self.dtype)
        if self.fmt == "fp16":
            return quant.fp16_nbytes(self.shape)
        if self.fmt == "int8":
            return quant.int8_nbytes(self.shape)
        return quant.q4c_nbytes(self.shape)


def _runs(flags: list) -> list[tuple[int, int, object]]:
    """Maximal runs of equal items: (start, stop, item)."""
    runs: list[tuple[int, int, object]] = []
    for i, f in enumerate(flags):
        if runs and runs[-1][2] == f:
            runs[-1] = (runs[-1][0], i + 1, f)
        else:
            runs.append((i, i + 1, f))
    return runs


def plan(h: FrameHeader) -> list[Part]:
    """The payload's sections, in order; a pure function of the header.

    q4 frames: the cache's last `recent_tokens` positions exact in every layer
    (KIVI's full-precision window: the positions the next tokens attend to
    most), the first `sink_tokens` positions at 8 bit, the keys of the
    (layer, head) pairs in the `key8` bitmap at 8 bit, and the rest in 4 bit:
    keys per channel over groups of `key_group` consecutive positions, values
    per position over groups of `value_group` channels; each group's range is
    two 8-bit codes inside the fp16 range of its channel (keys) or head (values)
    over the block.
    """
    heads, dim = h.layout.n_kv_heads, h.layout.head_dim
    n_layers, n_tokens = h.layer_count, h.token_count

    def part(tensor: str, fmt: str, layers: tuple[int, int], tokens: tuple[int, int],
             head_range: tuple[int, int] = (0, heads)) -> Part:
        shape = (layers[1] - layers[0], head_range[1] - head_range[0], tokens[1] - tokens[0], dim)
        return Part(tensor, fmt, layers, head_range, tokens, shape, dtype=h.dtype)

    def block(fmt: str, layers: tuple[int, int], tokens: tuple[int, int]) -> list[Part]:
        return [part("k", fmt, layers, tokens), part("v", fmt, layers, tokens)]

    if h.codec != "q4":
        return block(h.codec, (0, n_layers), (0, n_tokens))
    parts: list[Part] = []
    # frame-relative start of the exact window at the cache's end
    recent = max(0, min(n_tokens, h.total_tokens - h.recent_tokens - h.token_start))
    if recent < n_tokens:
        parts += block("exact", (0, n_layers), (recent, n_tokens))
    if recent == 0:
        return parts
    sink = max(0, min(recent, h.sink_tokens - h.token_start))  # leading positions kept at 8 bit
    if sink:
        parts += block("int8", (0, n_layers), (0, sink))
    rest = recent - sink
    if rest == 0:
        return parts
    group = h.key_group
    full = rest // group * group
    masks = [tuple(h.key8_heads(h.layer_start + i)) for i in range(n_layers)]
    for l0, l1, mask in _runs(masks):
        for h0, h1, key8 in _runs(list(mask)):
            if key8:
                parts.append(part("k", "int8", (l0, l1), (sink, recent), (h0, h1)))
                continue
            n_h = h1 - h0  # keys: each channel's group of `group` consecutive tokens shares a scale
            if full:
                parts.append(Part("k", "q4c", (l0, l1), (h0, h1), (sink, sink + full),
                                  (l1 - l0, n_h, full // group, group, dim)))
            if rest > full:  # a shorter last group
                parts.append(Part("k", "q4c", (l0, l1), (h0, h1), (sink + full, recent),
                                  (l1 - l0, n_h, 1, rest - full, dim)))
    # values: each token's group of `value_group` channels is one group, its range two 8-bit
    # codes inside the head's range over the block (q4c with the groups as channels of width 1)
    v_group = h.value_group
    parts.append(Part("v", "q4c", (0, n_layers), (0, heads), (sink, recent),
                      (n_layers, heads, rest * (dim // v_group), v_group, 1)))
    return parts


def raw_size(h: FrameHeader) -> int:
    return sum(p.nbytes for p in plan(h))


def encode_frame(h: FrameHeader, k: torch.Tensor | Int8Rows, v: torch.Tensor | Int8Rows, *, level: int = 1
                 ) -> bytes:
    """k, v: [layer_count, n_kv_heads, token_count, head_dim] -> one frame. The int8 rows of an
    int8 cache go as they are in int8 (and exact) parts, dequantized into the others."""
    sections: list[torch.Tensor] = []
    for p in plan(h):
        src = k if p.tensor == "k" else v
        x = src[p.layers[0]:p.layers[1], p.heads[0]:p.heads[1], p.tokens[0]:p.tokens[1]]
        if p.fmt == "exact":
            sections += quant.exact_encode(x, h.dtype)
            continue
        if isinstance(x, Int8Rows) and p.fmt == "int8":
            sections += quant.int8_encode(x)
            continue
        x = (x.dequantize() if isinstance(x, Int8Rows) else x.float()).reshape(p.shape)
        if p.fmt == "fp16":
            sections += quant.fp16_encode(x)
        elif p.fmt == "int8":
            sections += quant.int8_encode(x)
        else:
            sections += quant.q4c_encode(x)
    raw = torch.cat(sections).numpy()
    payload = zstandard.ZstdCompressor(level=level).compress(raw)
    fp = [s.encode() for s in (h.fingerprint.architecture, h.fingerprint.weights_family,
                               h.fingerprint.quantization)]
    if any(len(f) > MAX_FINGERPRINT_FIELD for f in fp):
        raise ValueError(f"fingerprint fields are limited to {MAX_FINGERPRINT_FIELD} bytes: {h.fingerprint}")
    fixed = _FIXED.pack(
        MAGIC, VERSION, CODECS[h.codec], DTYPES[h.dtype], FLAG_POST_ROPE if h.keys_post_rope else 0,
        h.layout.n_layers, h.layout.n_kv_heads, h.layout.head_dim, h.layer_start, h.layer_count,
        h.total_tokens, h.token_start, h.token_count, h.position_offset,
        h.key_group, h.value_group, h.sink_tokens, len(h.key8), h.recent_tokens, *(len(f) for f in fp),
        raw.nbytes, len(payload),
    )
    body = b"".join((fixed, *fp, h.key8, payload))
    frame = body + _CRC.pack(zlib.crc32(body))
    if len(frame) > MAX_FRAME_BYTES:
        raise AssertionError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")  # the encoder's own bug
    return frame


def parse_frame(data: bytes) -> tuple[FrameHeader, memoryview]:
    """Check the frame's integrity and field values; returns the header and the zstd payload.

    Nothing here depends on the receiver; `check_frame` compares with it.
    """
    if len(data) > MAX_FRAME_BYTES:
        raise KVLimitError(f"KV frame is {len(data)} bytes; frames are at most {MAX_FRAME_BYTES}")
    if len(data) < HEADER_MIN_BYTES:
        raise KVFormatError(f"KV frame is {len(data)} bytes, shorter than a header ({HEADER_MIN_BYTES})")
    (magic, version, codec, dtype, flags, n_layers, n_kv_heads, head_dim, layer_start, layer_count,
     total_tokens, token_start, token_count, position_offset, key_group, value_group, sink_tokens, key8_len,
     recent_tokens, len_arch, len_family, len_quant, raw_len, payload_len) = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise KVFormatError(f"not a KV frame: magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise KVFormatError(f"KV frame version {version} is not supported (this receiver reads {VERSION})")
    expected = _FIXED.size + len_arch + len_family + len_quant + key8_len + payload_len + _CRC.size
    if len(data) != expected:
        raise KVFormatError(f"KV frame is {len(data)} bytes but its header describes {expected} (truncated?)")
    body = memoryview(data)[: len(data) - _CRC.size]
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(body) != crc:
        raise KVFormatError("KV frame checksum mismatch: the frame was corrupted in transit")
    if codec not in CODEC_NAMES:
        raise KVFormatError(f"unknown KV codec id {codec}")
    if dtype not in DTYPE_OF:
        raise KVFormatError(f"unknown KV dtype id {dtype}")
    if flags & ~FLAG_POST_ROPE:
        raise KVFormatError(f"unknown KV frame flags {flags:#x}")
    offset = _FIXED.size
    fields = []
    for n in (len_arch, len_family, len_quant):
        try:
            fields.append(bytes(body[offset:offset + n]).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise KVFormatError("KV frame fingerprint is not UTF-8") from exc
        offset += n
    key8 = bytes(body[offset:offset + key8_len])
    offset += key8_len
    header = FrameHeader(
        codec=CODEC_NAMES[codec], dtype=DTYPE_OF[dtype], keys_post_rope=bool(flags & FLAG_POST_ROPE),
        layout=KVLayout(n_layers, n_kv_heads, head_dim), layer_start=layer_start, layer_count=layer_count,
        total_tokens=total_tokens, token_start=token_start, token_count=token_count,
        position_offset=position_offset, key_group=key_group, value_group=value_group, sink_tokens=sink_tokens,
        key8=key8, recent_tokens=recent_tokens, fingerprint=ModelFingerprint(*fields), raw_len=raw_len,
        payload_len=payload_len,
    )
    return header, body[offset:]


def check_frame(h: FrameHeader, layout: KVLayout, max_tokens: int) -> None:
    """Every header field against the receiver, before anything is allocated."""
    if h.layout != layout:
        raise KVFormatError(f"KV frame layout {_layout_str(h.layout)} does not match this model's "
                            f"{_layout_str(layout)}")
    if not h.keys_post_rope:
        raise KVFormatError("KV frame holds keys before RoPE; this receiver stores keys after RoPE")
    if h.position_offset != 0:
        raise KVFormatError(f"KV frame starts at position {h.position_offset}; only caches from position 0 "
                            "can be resumed")
    if h.total_tokens > max_tokens:
        raise KVLimitError(f"KV cache of {h.total_tokens} positions is larger than this receiver's limit "
                           f"of {max_tokens}")
    if not (h.layer_count >= 1 and h.layer_start + h.layer_count <= layout.n_layers):
        raise KVFormatError(f"KV frame layers {h.layer_start}+{h.layer_count} are outside 0..{layout.n_layers}")
    if not (h.token_count >= 1 and h.token_start + h.token_count <= h.total_tokens):
        raise KVFormatError(f"KV frame positions {h.token_start}+{h.token_count} are outside "
                            f"0..{h.total_tokens}")
    if h.codec == "q4":
        if h.key_group not in Q4_KEY_GROUPS:
            raise KVFormatError(f"q4 key group size {h.key_group} is not one of {Q4_KEY_GROUPS}")
        if h.value_group not in Q4_VALUE_GROUPS or layout.head_dim % h.value_group:
            raise KVFormatError(f"q4 value group size {h.value_group} is not one of {Q4_VALUE_GROUPS} dividing "
                                f"head dim {layout.head_dim}")
        if h.sink_tokens > MAX_SINK_TOKENS or h.recent_tokens > MAX_RECENT_TOKENS:
            raise KVFormatError(f"q4 sink tokens {h.sink_tokens} / recent tokens {h.recent_tokens} out of range "
                                f"(at most {MAX_SINK_TOKENS} each)")
        check_key8(h.key8, layout)
    elif h.key_group or h.value_group or h.sink_tokens or h.key8 or h.recent_tokens:
        raise KVFormatError(f"{h.codec} frames take no group sizes, sink tokens, 8-bit keys or recent window")
    expected = raw_size(h)
    if h.raw_len != expected or expected > MAX_RAW_BYTES:
        raise KVFormatError(f"KV frame payload declares {h.raw_len} bytes; its header implies {expected} "
                            f"(at most {MAX_RAW_BYTES})")
    if h.payload_len < 1:
        raise KVFormatError("KV frame has an empty payload")


def key8_bitmap(pairs: frozenset[tuple[int, int]], layout: KVLayout) -> bytes:
    """The header's bitmap of (layer, KV head) pairs; b"" when there are none."""
    if not pairs:
        return b""
    bits = bytearray((layout.n_layers * layout.n_kv_heads + 7) // 8)
    for layer, head in pairs:
        if not (0 <= layer < layout.n_layers and 0 <= head < layout.n_kv_heads):
            raise ValueError(f"8-bit key (layer {layer}, head {head}) is outside {_layout_str(layout)}")
        b = layer * layout.n_kv_heads + head
        bits[b // 8] |= 1 << (b % 8)
    return bytes(bits)


def check_key8(key8: bytes, layout: KVLayout) -> None:
    """A bitmap is empty or one bit per (layer, head) of this layout, padding bits clear."""
    if not key8:
        return
    n_bits = layout.n_layers * layout.n_kv_heads
    if len(key8) != (n_bits + 7) // 8:
        raise KVFormatError(f"KV frame's 8-bit key bitmap is {len(key8)} bytes; {_layout_str(layout)} needs "
                            f"{(n_bits + 7) // 8}")
    if n_bits % 8 and key8[-1] >> (n_bits % 8):
        raise KVFormatError("KV frame's 8-bit key bitmap sets bits past the last layer's heads")


def decode_payload(h: FrameHeader, payload: memoryview, k_out: torch.Tensor | Int8Rows,
                   v_out: torch.Tensor | Int8Rows) -> None:
    """Decompress and dequantize into k_out, v_out ([layer_count, H, token_count, D] views); int8
    parts land in int8 rows (an int8 cache) bit for bit."""
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise KVFormatError(f"KV frame payload is not zstd: {exc}") from exc
    if declared != h.raw_len:
        raise KVFormatError(f"KV frame payload decompresses to {declared} bytes, header says {h.raw_len}")
    try:
        raw = zstandard.ZstdDecompressor().decompress(payload, max_output_size=h.raw_len)
    except zstandard.ZstdError as exc:
        raise KVFormatError(f"KV frame payload is corrupt: {exc}") from exc
    if len(raw) != h.raw_len:
        raise KVFormatError(f"KV frame payload decompressed to {len(raw)} bytes, header says {h.raw_len}")
    reader = quant.Reader(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    for p in plan(h):
        if p.fmt == "exact":
            x = quant.exact_decode(reader, p.shape, h.dtype)
        elif p.fmt == "fp16":
            x = quant.fp16_decode(reader, p.shape)
        elif p.fmt == "int8":
            x = quant.int8_decode_rows(reader, p.shape)
        else:
            x = quant.q4c_decode(reader, p.shape)
        out = k_out if p.tensor == "k" else v_out
        dest = out[p.layers[0]:p.layers[1], p.heads[0]:p.heads[1], p.tokens[0]:p.tokens[1]]
        assign(dest, x if isinstance(x, Int8Rows) else x.view(dest.shape))


def iter_blocks(
    n_layers: int, n_tokens: int, bytes_per_layer_token: int, align: int, frame_bytes: int = MAX_FRAME_BYTES,
    extra_per_layer: int = 0,
) -> Iterator[tuple[int, int, int, int]]:
    """(layer_start, layer_count, token_start, token_count) blocks whose payload fits a frame
    of `frame_bytes`.

    Token blocks are multiples of `align` positions; short caches put several
    layers in one frame. `extra_per_layer` bounds what a layer's block may
    hold beyond `bytes_per_layer_token` per position (q4's exact recent window).
    """
    budget = min(frame_bytes, MAX_FRAME_BYTES) - 80 * 1024  # room for the header, q4 scale rows, zstd growth
    per_layer = bytes_per_layer_token * n_tokens + extra_per_layer
    if per_layer <= budget:
        layers_per_frame = max(1, budget // max(per_layer, 1))
        for start in range(0, n_layers, layers_per_frame):
            yield start, min(layers_per_frame, n_layers - start), 0, n_tokens
        return
    block = max(align, (budget - extra_per_layer) // bytes_per_layer_token // align * align)
    for layer in range(n_layers):
        for start in range(0, n_tokens, block):
            yield layer, 1, start, min(block, n_tokens - start)


def _layout_str(layout: KVLayout) -> str:
    return f"{layout.n_layers} layers x {layout.n_kv_heads} KV heads x head dim {layout.head_dim}"
