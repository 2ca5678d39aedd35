"""The KV codec: round-trip error within each mode's bound, frames within 1 MiB, and a
decoder that refuses truncated, corrupted, oversized, mixed and mismatched payloads with
the right error (a hypothesis fuzz test included)."""

from __future__ import annotations

import math
import struct
import zlib

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.config import ModelConfig
from engine.fingerprint import ModelFingerprint
from engine.kv import (
    MAX_FRAME_BYTES,
    CodecOptions,
    KVAssembler,
    KVError,
    KVFormatError,
    KVLimitError,
    KVMismatchError,
    decode_frames,
    encode_cache,
    estimate_raw_bytes,
    layout_of,
    parse_frame,
)
from engine.kv import KVLayout, quant
from engine.kv.codec import DEFAULT_RECOMPUTE_TOKENS
from engine.kv.frame import _FIXED, check_key8
from engine.model import KVCache

CONFIG = ModelConfig(vocab_size=64, dim=384, n_layers=4, n_heads=6, n_kv_heads=2, ffn_dim=32, max_seq_len=4096)
FP = ModelFingerprint("arch-test", "fam-test", "none")
HEADER_FIXED = _FIXED.size


def synthetic_cache(n_tokens: int, seed: int = 0) -> KVCache:
    """Gaussian keys with outlier channels (as real post-RoPE keys have) and values with outlier tokens."""
    cache = KVCache(CONFIG, n_tokens)
    g = torch.Generator().manual_seed(seed)
    cache.k.normal_(generator=g)
    cache.v.normal_(generator=g)
    cache.k[..., 3] *= 25
    cache.k[..., 7] += 10
    cache.v[:, :, :, ::17] *= 8
    cache.pos = n_tokens
    return cache


def round_trip(cache: KVCache, options: CodecOptions) -> tuple[KVCache, list[bytes]]:
    frames = list(encode_cache(cache, FP, options))
    received = decode_frames(frames, layout_of(cache), FP, lambda n: KVCache(CONFIG, n), max_tokens=4096)
    assert received.n_tokens == cache.pos and received.codec == options.codec
    return received.cache, frames


def test_fp16_round_trip_error_is_half_precision_rounding():
    cache = synthetic_cache(300)
    out, _ = round_trip(cache, CodecOptions("fp16"))
    for a, b in ((cache.k, out.k), (cache.v, out.v)):
        assert torch.all((a - b).abs() <= a.abs() * 2**-11 + 2**-24)


def test_int8_round_trip_error_is_half_a_step_per_token_vector():
    cache = synthetic_cache(300)
    out, _ = round_trip(cache, CodecOptions("int8"))
    for a, b in ((cache.k, out.k), (cache.v, out.v)):
        step = a.abs().amax(dim=-1, keepdim=True) / 127
        assert torch.all((a - b).abs() <= 0.5 * step * 1.002 + 1e-6)


def q4c_bound(x: torch.Tensor) -> torch.Tensor:
    """x: [A, B, G, g, D], keys per channel: half a step of the group's grid range, which
    exceeds the group's own range by at most two steps of its channel's 255-step grid (the
    channel range rounded outward to fp16: at most one fp16 ulp, 2^-10 relative, each side)."""
    low, high = torch.aminmax(x, dim=3, keepdim=True)
    c_low, c_high = low.amin(dim=2, keepdim=True), high.amax(dim=2, keepdim=True)
    ulps = 2**-10 * (c_low.abs() + c_high.abs()) + 2**-23
    grid = (c_high - c_low + ulps) / 255
    slack = 1e-6 * (c_low.abs() + c_high.abs()) + 2**-24
    return (0.5 * (high - low + 2 * grid) / quant.Q4_LEVELS + slack).expand_as(x)


@settings(max_examples=200, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 6), st.sampled_from([1, 7, 16, 32]),
                    st.sampled_from([1, 2, 16, 64])),  # 1: values, one range per head
    scale=st.floats(1e-3, 1e3),
    offset=st.floats(-50, 50),
    outliers=st.integers(0, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_q4_channel_error_is_within_half_a_step_of_each_groups_grid(shape, scale, offset, outliers, seed):
    """Keys per channel (values per token, D = 1) with 8-bit group ranges inside the fp16 range
    of the channel (head): any group, offsets and outliers included, stays within its analytic
    bound; past fp16 it is refused."""
    assume(math.prod(shape) % 2 == 0)  # two values a byte: the codec's blocks are always even
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) + offset) * scale
    flat = x.view(-1)
    flat[torch.randint(0, flat.numel(), (outliers,), generator=g)] *= 40
    if x.abs().amax() > quant.FP16_MAX:
        with pytest.raises(ValueError, match="beyond the fp16 range"):
            quant.q4c_encode(x)
        return
    buffer = torch.cat(quant.q4c_encode(x))
    assert buffer.numel() == quant.q4c_nbytes(tuple(x.shape))
    out = quant.q4c_decode(quant.Reader(buffer), tuple(x.shape))
    assert torch.all((x - out).abs() <= q4c_bound(x))


def cache_q4_bound(a: torch.Tensor, kind: str, options: CodecOptions) -> torch.Tensor:
    """The bound of every element of a [L, H, T, D] tensor under `options`' plan, position by
    position as the frames lay it out (sinks and the keys of `key8` heads at int8, 4-bit
    groups, exact window)."""
    L, H, T, D = a.shape
    int8 = 0.5 * a.abs().amax(dim=-1, keepdim=True).expand_as(a) / 127 * 1.002 + 1e-6
    bound = int8.clone()
    end = T - options.recent_tokens
    body = a[:, :, options.sink_tokens:end]
    if kind == "k":
        kg = options.key_group
        full = body.shape[2] // kg * kg
        groups = body[:, :, :full].reshape(*body.shape[:2], -1, kg, D)
        tail = body[:, :, full:].unsqueeze(2)
        parts = [q4c_bound(groups).reshape(*body.shape[:2], full, D), q4c_bound(tail).squeeze(2)]
        q = torch.cat(parts, dim=2)
        for layer, head in options.key8:
            q[layer, head] = int8[layer, head, options.sink_tokens:end]
    else:
        vg = options.value_group  # per token over groups of vg channels, inside the head's range
        q = q4c_bound(body.reshape(L, H, -1, vg, 1)).reshape(body.shape)
    bound[:, :, options.sink_tokens:end] = q
    bound[:, :, end:] = 0  # exact
    return bound


@pytest.mark.parametrize("key_group, value_group, recent, key8", [
    (32, 64, 16, {(1, 0)}), (64, 32, 0, set()), (16, 64, 40, {(0, 1), (2, 0), (2, 1), (3, 1)}),
])
def test_q4_round_trip_is_within_each_groups_bound_and_the_recent_window_exact(key_group, value_group, recent,
                                                                              key8):
    """Through frames: keys per channel over `key_group` tokens, values per token over
    `value_group` channels, the sink tokens and the `key8` heads' keys at int8, the last
    `recent` positions bit-identical."""
    n = 3 * key_group + 37 + recent  # full groups plus a shorter last one
    cache = synthetic_cache(n, seed=key_group + recent)
    options = CodecOptions("q4", key_group=key_group, value_group=value_group, sink_tokens=4,
                           key8=frozenset(key8), recent_tokens=recent)
    out, _ = round_trip(cache, options)
    for kind, a, b in (("k", cache.k[:, 0], out.k[:, 0, :, :n]), ("v", cache.v[:, 0], out.v[:, 0, :, :n])):
        assert torch.all((a - b).abs() <= cache_q4_bound(a, kind, options)), kind
        assert torch.equal(a[:, :, n - recent:], b[:, :, n - recent:])
    for layer, head in key8:  # the bitmap reached the decoder: those keys are int8's, bit for bit
        keys = cache.k[layer, 0, head, 4:n - recent]
        int8 = quant.int8_decode(quant.Reader(torch.cat(quant.int8_encode(keys))), tuple(keys.shape))
        assert torch.equal(out.k[layer, 0, head, 4:n - recent], int8)


def test_the_sink_tokens_stay_at_8_bit_in_every_layer():
    cache = synthetic_cache(200, seed=3)
    out, _ = round_trip(cache, CodecOptions("q4", sink_tokens=8, recent_tokens=0))
    a, b = cache.k[:, 0, :, :8], out.k[:, 0, :, :8]
    assert torch.all((a - b).abs() <= 0.5 * a.abs().amax(dim=-1, keepdim=True) / 127 * 1.002 + 1e-6)


def test_the_smollm2_profile_reaches_the_frames_and_other_models_get_plain_q4():
    from engine.kv.profiles import SMOLLM2_135M_KEY8, q4_key8
    smollm2 = ModelFingerprint("arch", "fam-0188ffb102ff8468", "gguf-q4_1")
    assert CodecOptions.for_model("q4", smollm2).key8 == SMOLLM2_135M_KEY8 == q4_key8(smollm2)
    assert CodecOptions.for_model("q4", FP).key8 == frozenset()
    assert CodecOptions.for_model("int8", smollm2).key8 == frozenset()
    with pytest.raises(ValueError, match="outside"):
        list(encode_cache(synthetic_cache(50), FP, CodecOptions("q4", key8=frozenset({(4, 0)}))))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_the_recent_window_is_bit_identical_in_the_caches_dtype(dtype):
    """Frames split by tokens (a long cache, small frames): the window may span frames."""
    cache = KVCache(CONFIG, 3000, dtype=dtype)
    g = torch.Generator().manual_seed(5)
    cache.k.copy_(torch.randn(cache.k.shape, generator=g))
    cache.v.copy_(torch.randn(cache.v.shape, generator=g))
    cache.pos = 3000
    options = CodecOptions("q4", recent_tokens=200, frame_bytes=128 * 1024)
    frames = list(encode_cache(cache, FP, options))
    assert len({parse_frame(f)[0].token_start for f in frames}) > 2
    out = decode_frames(frames, layout_of(cache), FP, lambda n: KVCache(CONFIG, n, dtype=dtype), max_tokens=4096)
    window = slice(2800, 3000)
    assert torch.equal(out.cache.k[:, :, :, window].view(torch.int16 if dtype.itemsize == 2 else torch.int32),
                       cache.k[:, :, :, window].view(torch.int16 if dtype.itemsize == 2 else torch.int32))
    assert torch.equal(out.cache.v[:, :, :, window], cache.v[:, :, :, window])
    assert not torch.equal(out.cache.k[:, :, :, :2800], cache.k[:, :, :, :2800])  # the rest is 4 bit


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_frame_is_refused_naming_both_versions(version):
    """Version 2 kept "the first N layers" at 8 bit where version 3 has a per-head bitmap: a
    version 2 frame is refused, not misread."""
    frame = reheader(frames_of()[0], 4, "<B", version)
    with pytest.raises(KVFormatError, match=f"version {version} is not supported .*reads 3"):
        assembler().add(frame)


def test_a_malformed_key8_bitmap_is_refused():
    """A bitmap of the wrong length, or one setting bits past the last (layer, head), is named."""
    options = CodecOptions("q4", key8=frozenset({(0, 0), (3, 1)}))
    frame = list(encode_cache(synthetic_cache(50), FP, options))[0]
    header, _ = parse_frame(frame)
    assert header.key8 == bytes([0b1000_0001]) and header.key8_heads(3) == [False, True]
    at = HEADER_FIXED + sum(len(f.encode()) for f in (FP.architecture, FP.weights_family, FP.quantization))
    body = bytearray(frame[:at] + b"\x00" + frame[at:-4])  # one more bitmap byte than the layout needs
    struct.pack_into("<H", body, 40, 2)  # key8_len
    with pytest.raises(KVFormatError, match="bitmap is 2 bytes; .* needs 1"):
        assembler().add(bytes(body) + struct.pack("<I", zlib.crc32(body)))
    with pytest.raises(KVFormatError, match="past the last layer"):
        check_key8(b"\xff", KVLayout(3, 2, 64))  # 6 valid bits


def test_q4_is_over_3_5x_smaller_than_fp16_and_int8_about_2x():
    """The 4-bit format itself (SmolLM2's profile keeps a few of its 90 heads' keys at 8 bit;
    benchmarks/kv_handoff.py measures its ratio)."""
    cache = synthetic_cache(1024)
    fp16_bytes = cache.k.numel() * 2 * 2
    options = {"fp16": CodecOptions("fp16"), "int8": CodecOptions("int8"),
               "q4": CodecOptions("q4", recent_tokens=0)}
    sizes = {codec: sum(map(len, round_trip(cache, o)[1])) for codec, o in options.items()}
    assert fp16_bytes / sizes["q4"] >= 3.5
    assert fp16_bytes / sizes["int8"] >= 1.9
    assert sizes["fp16"] <= fp16_bytes * 1.01
    assert estimate_raw_bytes(layout_of(cache), 1024, CodecOptions("q4")) >= sizes["q4"]
    window = CodecOptions("q4", recent_tokens=64)  # the SDK's estimate counts the exact window too
    assert estimate_raw_bytes(layout_of(cache), 1024, window) >= sum(map(len, round_trip(cache, window)[1]))


def test_long_caches_split_into_frames_of_at_most_1_mib_that_tile_the_cache():
    cache = KVCache(CONFIG, 4096)
    cache.k.normal_()
    cache.v.normal_()
    cache.pos = 4000
    frames = list(encode_cache(cache, FP, CodecOptions("fp16")))
    assert len(frames) > 1 and max(map(len, frames)) <= MAX_FRAME_BYTES
    headers = [parse_frame(f)[0] for f in frames]
    assert sum(h.layer_count * h.token_count for h in headers) == CONFIG.n_layers * 4000
    assert all(h.fingerprint == FP and h.keys_post_rope and h.position_offset == 0 for h in headers)
    out = decode_frames(reversed(frames), layout_of(cache), FP, lambda n: KVCache(CONFIG, n), max_tokens=4096)
    assert torch.equal(out.cache.k[:, :, :, :4000], cache.k[:, :, :, :4000].half().float())


def test_frames_of_a_partial_prefix_hold_only_that_prefix():
    cache = synthetic_cache(100)
    frames = list(encode_cache(cache, FP, CodecOptions("int8"), n_tokens=40))
    assert all(parse_frame(f)[0].total_tokens == 40 for f in frames)


# --- refusals -----------------------------------------------------------------------------


def frames_of(n: int = 50, codec: str = "q4", fp: ModelFingerprint = FP) -> list[bytes]:
    return list(encode_cache(synthetic_cache(n), fp, CodecOptions(codec)))


def assembler(**kwargs) -> KVAssembler:
    options = {"max_tokens": 4096, "max_bytes": 1 << 30, **kwargs}
    layout = kwargs.pop("layout", layout_of(synthetic_cache(1)))
    options.pop("layout", None)
    receiver = options.pop("receiver", FP)
    return KVAssembler(layout, receiver, lambda n: KVCache(CONFIG, n), **options)


def test_truncated_frame_is_a_format_error():
    frame = frames_of()[0]
    for cut in (0, 10, len(frame) // 2, len(frame) - 1):
        with pytest.raises(KVFormatError, match="shorter than a header|truncated"):
            assembler().add(frame[:cut])


def test_a_flipped_bit_anywhere_fails_the_checksum():
    frame = bytearray(frames_of()[0])
    for position in (60, len(frame) // 2, len(frame) - 6):
        corrupt = bytearray(frame)
        corrupt[position] ^= 0x10
        with pytest.raises(KVFormatError, match="checksum|truncated"):
            assembler().add(bytes(corrupt))


def test_missing_and_duplicated_frames_are_refused():
    frames = frames_of(n=3000, codec="fp16")
    assert len(frames) > 2
    a = assembler()
    for f in frames[:-1]:
        a.add(f)
    with pytest.raises(KVFormatError, match="incomplete"):
        a.finish()
    with pytest.raises(KVFormatError, match="overlaps"):
        a.add(frames[0])
    with pytest.raises(KVFormatError, match="no frames"):
        assembler().finish()


def test_frames_of_two_codecs_do_not_mix():
    a = assembler()
    a.add(frames_of(codec="q4")[0])
    with pytest.raises(KVFormatError, match="disagree"):
        a.add(frames_of(codec="int8")[0])


def test_a_cache_from_another_model_is_a_mismatch():
    other_family = ModelFingerprint("arch-test", "fam-other", "none")
    with pytest.raises(KVMismatchError, match="weights family"):
        assembler().add(frames_of(fp=other_family)[0])
    other_arch = ModelFingerprint("arch-other", "fam-test", "none")
    with pytest.raises(KVMismatchError, match="architecture"):
        assembler().add(frames_of(fp=other_arch)[0])


def test_a_cache_from_the_quantized_twin_needs_cross_precision_allowed():
    edge = ModelFingerprint("arch-test", "fam-test", "gguf-q4_1")
    with pytest.raises(KVMismatchError, match="cross-precision"):
        assembler(allow_cross_precision=False).add(frames_of(fp=edge)[0])
    assembler(allow_cross_precision=True).add(frames_of(fp=edge)[0])


def test_oversized_payloads_are_limit_errors_before_anything_is_allocated():
    allocated = []

    def make(n):
        allocated.append(n)
        return KVCache(CONFIG, n)

    frames = frames_of(n=200)
    a = KVAssembler(layout_of(synthetic_cache(1)), FP, make, max_tokens=100, max_bytes=1 << 30)
    with pytest.raises(KVLimitError, match="limit of 100"):
        a.add(frames[0])
    a = KVAssembler(layout_of(synthetic_cache(1)), FP, make, max_tokens=4096, max_bytes=len(frames[0]) - 1)
    with pytest.raises(KVLimitError, match="bytes"):
        a.add(frames[0])
    with pytest.raises(KVLimitError, match="at most"):
        parse_frame(b"\0" * (MAX_FRAME_BYTES + 1))
    assert allocated == []


def reheader(frame: bytes, offset: int, fmt: str, value: int) -> bytes:
    """The frame with one header field rewritten and its checksum made valid again."""
    body = bytearray(frame[:-4])
    struct.pack_into(fmt, body, offset, value)
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize(
    "offset, fmt, value, message",
    [
        (4, "<B", 9, "version"),
        (5, "<B", 77, "codec"),
        (8, "<H", 5, "layout"),           # n_layers
        (10, "<H", 3, "layout"),          # n_kv_heads
        (16, "<H", 9, "layers"),          # layer_count past the model
        (18, "<I", 2**31, "limit"),       # total_tokens: a huge allocation, refused first
        (26, "<I", 10**6, "positions"),   # token_count past total
        (30, "<I", 7, "position 7"),      # position offset
        (34, "<H", 48, "key group size"),
        (36, "<H", 48, "value group size"),
        (42, "<H", 5000, "recent tokens"),
        (47, "<I", 12345, "header implies"),  # raw_len
        (7, "<B", 0, "before RoPE"),
    ],
)
def test_every_header_field_is_checked(offset, fmt, value, message):
    frame = frames_of()[0]
    with pytest.raises(KVError, match=message):
        assembler().add(reheader(frame, offset, fmt, value))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_frames_raise_only_kv_errors(data):
    """Random bytes, and valid frames with random edits (checksum fixed up so the decoder's
    later checks run too): the decoder either accepts or raises a KVError, nothing else."""
    frame = _FUZZ_FRAME
    kind = data.draw(st.sampled_from(["random", "edit", "edit_fixed_crc", "truncate"]))
    if kind == "random":
        blob = data.draw(st.binary(max_size=2048))
        blob = (b"TKV1\x01" + blob) if data.draw(st.booleans()) else blob
    elif kind == "truncate":
        blob = frame[: data.draw(st.integers(0, len(frame)))]
    else:
        edits = data.draw(st.lists(st.tuples(st.integers(0, len(frame) - 5), st.integers(0, 255)), min_size=1,
                                   max_size=6))
        body = bytearray(frame[:-4])
        for position, value in edits:
            body[position] = value
        crc = zlib.crc32(body) if kind == "edit_fixed_crc" else struct.unpack("<I", frame[-4:])[0]
        blob = bytes(body) + struct.pack("<I", crc)
    a = assembler(max_tokens=512)
    try:
        a.add(blob)
    except KVError:
        return


_FUZZ_FRAME = list(encode_cache(synthetic_cache(70), FP, CodecOptions("q4", key_group=32)))[0]


def test_quantizers_take_the_sizes_they_declare():
    x = torch.randn(2, 3, 8, 64)
    for fmt, sections, size in (
        ("fp16", quant.fp16_encode(x), quant.fp16_nbytes(x.shape)),
        ("int8", quant.int8_encode(x), quant.int8_nbytes(x.shape)),
        ("q4c", quant.q4c_encode(x.view(2, 3, 2, 4, 64)), quant.q4c_nbytes((2, 3, 2, 4, 64))),
    ):
        assert sum(s.numel() for s in sections) == size, fmt


@pytest.mark.parametrize("shape", [(2, 3, 4, 32, 64), (1, 3, 128, 16, 1), (1, 2, 3, 5, 8)])
def test_q4_packs_the_same_bytes_with_and_without_the_word_at_a_time_path(shape, monkeypatch):
    """The fast path (pairs of codes as one int16 word, folded group ranges) against the
    byte-strided one a big-endian host takes and torch's own reductions."""
    x = torch.randn(shape) * 3 + 1
    fast = torch.cat(quant.q4c_encode(x))
    low, high = quant._group_range(x)
    assert torch.equal(low, x.amin(dim=3, keepdim=True)) and torch.equal(high, x.amax(dim=3, keepdim=True))
    monkeypatch.setattr(quant, "LITTLE_ENDIAN", False)
    assert torch.equal(torch.cat(quant.q4c_encode(x)), fast)
    strided = quant.q4c_decode(quant.Reader(fast), shape)
    monkeypatch.setattr(quant, "LITTLE_ENDIAN", True)
    assert torch.equal(quant.q4c_decode(quant.Reader(fast), shape), strided)


def test_constant_blocks_decode_exactly_in_q4():
    x = torch.zeros(1, 2, 64, 64)
    x[0, 1] = 3.5
    grouped = x.view(1, 2, 2, 32, 64)
    buf = torch.cat(quant.q4c_encode(grouped))
    assert torch.equal(quant.q4c_decode(quant.Reader(buf), tuple(grouped.shape)), grouped)
    buf = torch.cat(quant.int8_encode(x))
    assert torch.allclose(quant.int8_decode(quant.Reader(buf), tuple(x.shape)), x, atol=3.5 / 254)


@pytest.mark.parametrize("codec", ["fp16", "int8"])
def test_an_fp16_device_cache_hands_off_to_an_fp32_receiver_and_back(codec):
    """The device tier keeps its cache in fp16; the codec takes it as it is (the frames say
    fp16) and the fp32 cloud cache receives it, within the codec's own error; and back."""
    half = synthetic_cache(300)
    half_cache = KVCache(CONFIG, 300, dtype=torch.float16)
    half_cache.k.copy_(half.k), half_cache.v.copy_(half.v)
    half_cache.pos = 300
    options = CodecOptions(codec)
    frames = list(encode_cache(half_cache, FP, options))
    assert {parse_frame(f)[0].dtype for f in frames} == {torch.float16}
    wide = decode_frames(frames, layout_of(half_cache), FP, lambda n: KVCache(CONFIG, n), max_tokens=4096).cache
    same = decode_frames(frames, layout_of(half_cache), FP, lambda n: KVCache(CONFIG, n, dtype=torch.float16),
                         max_tokens=4096).cache
    assert wide.k.dtype == torch.float32 and wide.pos == 300
    torch.testing.assert_close(wide.k.half(), same.k, rtol=0, atol=0)
    back = decode_frames(list(encode_cache(wide, FP, options)), layout_of(wide), FP,
                         lambda n: KVCache(CONFIG, n, dtype=torch.float16), max_tokens=4096).cache
    for a, b in ((half_cache.k, back.k), (half_cache.v, back.v)):
        scale = a.float().abs().amax(dim=-1, keepdim=True)
        bound = {"fp16": 2**-10, "int8": 2 / 127}[codec]  # one rounding each way
        assert torch.all((a.float() - b.float()).abs() <= scale * bound + 1e-3)


def int8_device_cache(n_tokens: int) -> KVCache:
    """An int8 cache (the device tier's `--kv-cache int8`) holding the synthetic cache's values."""
    source = synthetic_cache(n_tokens)
    cache = source.copy_into(KVCache(CONFIG, n_tokens, dtype=torch.int8))
    assert cache.k.dtype == torch.int8 and cache.k_scale.dtype == torch.float16
    return cache


def test_an_int8_device_cache_hands_off_as_it_is_through_the_int8_codec():
    """The int8 cache keeps the codec's own int8 rows (one fp16 scale per head and position), so
    its frames carry its bytes without rounding again (the frames say int8): an int8 receiver gets
    the same int8 values and scales bit for bit, an fp32 one their product exactly, and the fp32
    cache sent back through the int8 codec rounds to the same rows again."""
    cache = int8_device_cache(300)
    frames = list(encode_cache(cache, FP, CodecOptions("int8")))
    assert {parse_frame(f)[0].dtype for f in frames} == {torch.int8}
    same = decode_frames(frames, layout_of(cache), FP, lambda n: KVCache(CONFIG, n, dtype=torch.int8),
                         max_tokens=4096).cache
    wide = decode_frames(frames, layout_of(cache), FP, lambda n: KVCache(CONFIG, n), max_tokens=4096).cache
    for name in ("k", "v", "k_scale", "v_scale"):
        assert torch.equal(getattr(same, name), getattr(cache, name)), name
    everything = (slice(None),) * 4
    for got, want in zip(wide.read(everything, torch.float32), cache.read(everything, torch.float32)):
        assert torch.equal(got, want)
    back = decode_frames(list(encode_cache(wide, FP, CodecOptions("int8"))), layout_of(wide), FP,
                         lambda n: KVCache(CONFIG, n, dtype=torch.int8), max_tokens=4096).cache
    for name in ("k", "v", "k_scale", "v_scale"):
        assert torch.equal(getattr(back, name), getattr(cache, name)), name


@pytest.mark.parametrize("codec", ["fp16", "q4"])
def test_an_int8_device_cache_hands_off_through_the_other_codecs(codec):
    """fp16 and q4 frames take the int8 cache's values (q * scale) and round them in their own
    format; q4's exact window at the end of the cache is the int8 rows themselves."""
    cache = int8_device_cache(300)
    options = CodecOptions(codec, recent_tokens=64) if codec == "q4" else CodecOptions(codec)
    frames = list(encode_cache(cache, FP, options))
    assert estimate_raw_bytes(layout_of(cache), 300, options, torch.int8) >= sum(
        parse_frame(f)[0].raw_len for f in frames)
    wide = decode_frames(frames, layout_of(cache), FP, lambda n: KVCache(CONFIG, n), max_tokens=4096).cache
    everything = (slice(None),) * 4
    for got, want in zip(wide.read(everything, torch.float32), cache.read(everything, torch.float32)):
        if codec == "fp16":
            assert torch.all((got - want).abs() <= want.abs() * 2**-11 + 2**-24)
        else:
            assert torch.equal(got[:, :, :, -64:], want[:, :, :, -64:])  # the exact window
            assert float((got - want).abs().mean()) < 0.2 * float(want.abs().mean())
    same = decode_frames(frames, layout_of(cache), FP, lambda n: KVCache(CONFIG, n, dtype=torch.int8),
                         max_tokens=4096).cache
    if codec == "q4":
        for name in ("k", "v", "k_scale", "v_scale"):  # the exact window lands as it was
            assert torch.equal(getattr(same, name)[:, :, :, -64:], getattr(cache, name)[:, :, :, -64:]), name


def test_an_int8_cache_rounds_what_it_stores_as_the_codec_does():
    """Writing float values into an int8 cache and encoding them with the int8 codec are one
    rounding (engine/int8_rows.py): the cache's bytes are the codec's sections."""
    source = synthetic_cache(128)
    cache = source.copy_into(KVCache(CONFIG, 128, dtype=torch.int8))
    k = source.k[:, 0, :, :128]
    scale, q = quant.int8_encode(k)
    assert torch.equal(scale, cache.k_scale[:, 0, :, :128].contiguous().view(torch.uint8).flatten())
    assert torch.equal(q, cache.k[:, 0, :, :128].contiguous().view(torch.uint8).flatten())
    assert cache.nbytes == cache.k.nbytes * 2 + cache.k_scale.nbytes * 2


def test_q4_hand_offs_leave_the_last_positions_for_the_receiver_to_prefill():
    """The next tokens attend most to the last positions: q4 sends none of them (the receiver
    prefills them from the token IDs it gets anyway); the other codecs send every position."""
    q4 = CodecOptions("q4")
    assert q4.recompute_tokens == DEFAULT_RECOMPUTE_TOKENS > 0
    assert q4.sent_tokens(2048) == 2048 - DEFAULT_RECOMPUTE_TOKENS
    assert q4.sent_tokens(DEFAULT_RECOMPUTE_TOKENS) == 0 and q4.sent_tokens(10) == 0
    assert CodecOptions("q4", recompute_tokens=0).sent_tokens(2048) == 2048
    assert CodecOptions("int8").sent_tokens(2048) == CodecOptions("fp16").sent_tokens(2048) == 2048
    with pytest.raises(ValueError, match="recompute_tokens"):
        CodecOptions("q4", recompute_tokens=-1)
