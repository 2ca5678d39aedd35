"""The 4-bit groups of an int8 KV cache (engine/packed_kv.py): rounding, layout, and when they are rebuilt."""

from __future__ import annotations

import pytest
import torch

from engine.packed_kv import GROUP, PackedKV, pack_keys, pack_values, quantize_4bit, unpack_keys, unpack_values


@pytest.mark.parametrize("d", [64, 128])
def test_packing_round_trips_within_half_a_step(d):
    """Keys per channel over 64 positions, values per position over 32 channels: each value comes
    back within half its group's step (plus the fp16 rounding of the minimum)."""
    gen = torch.Generator().manual_seed(d)
    k = torch.randn(2, 1, 3, 2 * GROUP, d, generator=gen) * torch.linspace(0.1, 8, d)  # outlier channels
    v = torch.randn(2, 1, 3, 2 * GROUP, d, generator=gen)
    keys, key_stats = pack_keys(k)
    values, value_stats = pack_values(v)
    assert keys.shape == (2, 1, 3, 2, 32 * d) and values.shape == (2, 1, 3, GROUP, d)
    k_step = key_stats[..., 0, :].float().repeat_interleave(GROUP, -2)  # [.., groups, D] -> per position
    assert ((unpack_keys(keys, key_stats) - k).abs() <= k_step / 2 + 1e-2).all()
    v_step = value_stats[..., 0, :].float().permute(0, 1, 2, 3, 5, 4).reshape(2, 1, 3, 2 * GROUP, d // 32)
    assert ((unpack_values(values, value_stats) - v).abs() <= v_step.repeat_interleave(32, -1) / 2 + 1e-2).all()


def test_the_bytes_are_laid_out_as_the_kernels_read_them():
    """Spot checks of kernels/decode_step.cpp's Q4Rows layout: key byte (group, block, vector m, lane i, j)
    holds position 16 block + i, channels 8m + j (low nibble) and 8m + 4 + j; value byte (pair, block,
    lane L, j) holds channels 64 block + L | + 16 (j = 0: the pair's first position, 2: its second) or
    + 32 | + 48 (j = 1, 3)."""
    gen = torch.Generator().manual_seed(0)
    k, v = torch.randn(1, 1, 1, 2 * GROUP, 64, generator=gen), torch.randn(1, 1, 1, 2 * GROUP, 128, generator=gen)
    key_codes = quantize_4bit(k.view(2, GROUP, 64), -2)[0].view(2 * GROUP, 64)
    value_codes = quantize_4bit(v.view(2 * GROUP, 4, 32), -1)[0].view(2 * GROUP, 128)
    keys, values = pack_keys(k)[0][0, 0, 0], pack_values(v)[0][0, 0, 0]
    for group, block, m, i, j in [(0, 0, 0, 1, 2), (1, 2, 3, 5, 1), (1, 3, 7, 15, 3)]:
        byte = int(keys[group, (block * 8 + m) * 64 + 4 * i + j])
        position = GROUP * group + 16 * block + i
        assert (byte & 15, byte >> 4) == (key_codes[position, 8 * m + j], key_codes[position, 8 * m + 4 + j])
    for pair, block, lane in [(0, 0, 0), (7, 1, 3), (63, 1, 15)]:
        got = [int(b) for b in values[pair, 64 * block + 4 * lane:64 * block + 4 * lane + 4]]
        c = 64 * block + lane
        for j, (position, low) in enumerate([(2 * pair, c), (2 * pair, c + 32), (2 * pair + 1, c),
                                             (2 * pair + 1, c + 32)]):
            assert (got[j] & 15, got[j] >> 4) == (value_codes[position, low], value_codes[position, low + 16])


def test_only_finished_groups_are_packed_and_a_rewind_forgets_them():
    from engine.int8_rows import quantize

    packed = PackedKV((1, 1, 2, 4 * GROUP, 64))
    rows = quantize(torch.randn(1, 1, 2, 4 * GROUP, 64))
    packed.update(rows, rows, GROUP - 1)
    assert packed.groups == 0
    packed.update(rows, rows, 2 * GROUP + 5)
    assert packed.groups == 2
    packed.forget_from(GROUP + 3)
    assert packed.groups == 1
    with pytest.raises(ValueError, match="heads of 64 or 128 values"):
        PackedKV((1, 1, 2, GROUP, 96))


def test_native_packing_writes_the_bytes_the_torch_packing_does():
    """kernels/decode_step.cpp's pack_kv_groups against pack_keys / pack_values on the same int8 rows:
    identical codes, scales and minimums (the same fp32 products and roundings), heads of 64 and 128."""
    from engine import kernels
    from engine.int8_rows import quantize

    if not kernels.available():
        pytest.fail("the native kernels did not build (a C++ compiler is part of the set-up)")
    for d in (64, 128):
        gen = torch.Generator().manual_seed(d)
        k = quantize(torch.randn(2, 1, 3, 3 * GROUP + 5, d, generator=gen) * torch.linspace(0.1, 8, d))
        v = quantize(torch.randn(2, 1, 3, 3 * GROUP + 5, d, generator=gen))
        native, reference = PackedKV(k.shape), PackedKV(k.shape)
        native.update(k, v, GROUP + 1)
        native.update(k, v, 3 * GROUP + 2)  # a second call packs the groups after the first's
        reference._pack_in_torch(k, v, 0, 3)
        assert native.groups == 3
        for name in ("keys", "key_stats", "values", "value_stats"):
            assert torch.equal(getattr(native, name), getattr(reference, name)), (d, name)
