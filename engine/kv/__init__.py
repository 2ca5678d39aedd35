"""Compressed KV-cache hand-off between tiers: codec, frames, compatibility.

    frames = list(encode_cache(cache, model.fingerprint, CodecOptions.for_model("q4", model.fingerprint)))
    received = decode_frames(frames, layout, model.fingerprint, model.new_cache, max_tokens=8192)
"""

from engine.kv.codec import (
    DEFAULT_CODEC,
    CodecOptions,
    KVAssembler,
    ReceivedKV,
    decode_frames,
    encode_cache,
    estimate_raw_bytes,
    layout_of,
)
from engine.kv.compat import check_compatible, cross_precision, incompatibility
from engine.kv.errors import KVError, KVFormatError, KVLimitError, KVMismatchError
from engine.kv.frame import CODECS, MAX_FRAME_BYTES, FrameHeader, KVLayout, parse_frame

__all__ = [
    "CODECS",
    "DEFAULT_CODEC",
    "MAX_FRAME_BYTES",
    "CodecOptions",
    "FrameHeader",
    "KVAssembler",
    "KVError",
    "KVFormatError",
    "KVLayout",
    "KVLimitError",
    "KVMismatchError",
    "ReceivedKV",
    "check_compatible",
    "cross_precision",
    "decode_frames",
    "encode_cache",
    "estimate_raw_bytes",
    "incompatibility",
    "layout_of",
    "parse_frame",
]
