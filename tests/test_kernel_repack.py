"""The repacked 4-bit layout (kernels/quant_blocks.h): made in place at load, read by every
dot kernel, and equal to the GGML blocks' arithmetic on each instruction set the kernels
compile for (AVX-512 + VNNI here, AVX2 via TANDEM_KERNEL_ISA, and the portable C++ path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from engine import kernels
from engine.kernels import cpu_flags
from engine.quant_linear import FORMATS, REPACKED, QuantEmbedding, QuantLinear, quantize, quantized_bytes, repack

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_AVX2 = all(f in cpu_flags().split() for f in ("avx2", "fma", "f16c"))
HAS_AVX512 = all(f in cpu_flags().split() for f in ("avx512f", "avx512bw", "avx512vl", "avx512_vnni"))
HAS_AMX = all(f in cpu_flags().split() for f in ("amx_bf16", "avx512_bf16"))


@pytest.fixture(scope="module", autouse=True)
def native_kernels():
    if not kernels.available():
        pytest.fail("the native kernels did not build (a C++ compiler is part of the set-up)")


def test_repacking_rewrites_the_rows_in_place_and_keeps_the_matrix():
    for fmt, size in (("q4_0", 18), ("q4_1", 20)):
        q = quantize(torch.randn(9, 7 * 32, generator=torch.Generator().manual_seed(1)), fmt)
        data, reference = q.data.clone(), q.dequantize()
        pointer = data.data_ptr()
        code = torch.ops.tandem.repack(data, FORMATS[fmt])
        assert code != FORMATS[fmt] and data.data_ptr() == pointer and data.shape == q.data.shape
        assert not torch.equal(data, q.data)
        blocks = q.data.reshape(9, 7, size)
        # the scales' plane follows the 7 blocks' 16-byte nibbles; Q4_1's minimums follow the scales
        assert torch.equal(data[:, 7 * 16 : 7 * 18], blocks[:, :, 0:2].reshape(9, 14))
        if fmt == "q4_1":
            assert torch.equal(data[:, 7 * 18 :], blocks[:, :, 2:4].reshape(9, 14))
        rows = torch.ops.tandem.embedding(torch.arange(9), data, None, code, 7 * 32)
        assert torch.equal(rows, reference)


@pytest.mark.parametrize("fmt", ["q4_0", "q4_1", "q8_0"])
def test_repacking_puts_whole_16_row_tiles_first_and_keeps_the_remaining_rows(fmt):
    """Rows 0..31 go in two tiles (per block: 16 rows' values, then their scales), rows 32..36 as rows."""
    size, values = {"q4_0": (18, 16), "q4_1": (20, 16), "q8_0": (34, 32)}[fmt]
    q = quantize(torch.randn(37, 5 * 32, generator=torch.Generator().manual_seed(3)), fmt)
    data, reference = q.data.clone(), q.dequantize()
    code = torch.ops.tandem.repack(data, FORMATS[fmt])
    assert code != FORMATS[fmt] and data.shape == q.data.shape
    blocks = q.data.reshape(37, 5, size)
    tiles = data[:32].reshape(2, 5, 16 * size)  # tile, block, bytes
    for t in range(2):
        # each block: the 16 rows' values (4 bytes of a row, then the next row's 4), then their 16 scales
        assert torch.equal(tiles[t, :, 16 * values : 16 * values + 32],
                           blocks[16 * t : 16 * t + 16, :, 0:2].transpose(0, 1).reshape(5, 32))
    if fmt == "q8_0":
        assert torch.equal(data[32:], q.data[32:])  # the rows after the last tile stay GGML rows
    rows = torch.ops.tandem.embedding(torch.arange(37), data, None, code, 5 * 32)
    assert torch.equal(rows, reference)


def test_unrepacked_4bit_weights_are_refused_by_the_dot_kernels():
    q = quantize(torch.randn(4, 64), "q4_0")
    with pytest.raises(RuntimeError, match="repack them first"):
        torch.ops.tandem.qlinear(torch.randn(1, 64), q.data, None, FORMATS["q4_0"], 64)
    with pytest.raises(RuntimeError, match="only Q4_0, Q4_1 and Q8_0"):
        torch.ops.tandem.repack(quantize(torch.randn(4, 64), "i8").data, FORMATS["i8"])


def test_a_tied_embedding_and_output_share_one_repacked_buffer():
    """One buffer, repacked once, every module that reads it told so: no second copy."""
    q = quantize(torch.randn(50, 96, generator=torch.Generator().manual_seed(2)), "q4_1")
    reference = q.dequantize()
    model = nn.Module()
    model.emb, model.out = QuantEmbedding(50, 96, "q4_1"), QuantLinear(96, 50, "q4_1", quantize_activations=False)
    model.emb.weight = model.out.weight = q.data
    before = quantized_bytes(model)
    assert repack(model) == 1 and repack(model) == 0
    assert model.emb.code == model.out.code != FORMATS["q4_1"]
    assert quantized_bytes(model) == before and model.emb.weight.data_ptr() == model.out.weight.data_ptr()
    ids = torch.tensor([[0, 49, 7]])
    assert torch.equal(model.emb(ids), reference[ids])
    x = torch.randn(2, 96, dtype=torch.float64)
    want = x @ reference.double().T
    # the output layer's two-level activations: within their bound (quant_blocks.h, Acts)
    amax = x.reshape(2, 3, 32).abs().amax(-1)
    bound = amax @ reference.abs().double().reshape(50, 3, 32).sum(-1).T / (2 * 127 * 254)
    assert bool(((model.out(x.float()) - want).abs() <= bound + 2e-6 * (x.abs() @ reference.abs().double().T)).all())


# The dots, compiled for one ISA: activations built as exact int8 blocks (a +-127 in every block, a
# power-of-two step), so the kernel's only rounding is float32 accumulation, against a float64
# reference over the GGML blocks' dequantized weights. Worst case relative to sum |x||w|: K float32
# additions of terms that are exact (int products below 2^24 times a scale) give <= K * 2^-24; the
# bound is 2e-6 (K <= 2144 here; measured <= 1.4e-7 on every ISA). Both the int8 path (every format)
# and the two-level path (the output layer's, quantize_x=False) run; on these exact blocks the second
# level is zero.
#
# Then the two-level path on ordinary fp32 activations (gaussian, blocks of widely different scale, an
# outlier per row) against its stated bound (quant_blocks.h, Acts): per block, the activations' absmax
# / (2 * 127 * 254) times the sum of the block's |w|, plus float32 rounding (2e-6 of sum |x||w|, as
# above). "two/" is the worst error as a fraction of that bound: at most 1 on every ISA.
#
# Many rows (19: two whole batches of the batched tile dot and a padded third on AVX-512, four and a
# padded fifth on AVX2) of matrices of whole tiles go through the prompt's path: on the exact blocks
# no block stands out, so it is the int8 path above, same bound. Then mixed activations: every block
# of absmax 1 but the first, whose channel 3 is 40 (20x the median block, over kOutlierBlock = 2):
# that block's bound is the two-level one, the others' the one-level one ("mixed/", a fraction of
# that bound, at most 1), and the error is a small part of the one-level path's on the same rows
# (each row alone, as decode runs it: "gain/", mean error mixed / one level).
RUN = """
import json, torch
from engine import kernels
from engine.quant_linear import FORMATS, REPACKED, quantize
ISA_FLAGS
assert kernels.available()
g, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
worst = {}
for fmt in FORMATS:
    for n, k in [(37, 32), (5, 64), (9, 96), (17, 160), (3, 224), (11, 576), (33, 608), (6, 2144)]:
        q = quantize(torch.randn(n, k, generator=g) * 0.05, fmt)
        ref = q.dequantize().double()
        data, code = q.data.clone(), FORMATS[fmt]
        if fmt in REPACKED:
            code = torch.ops.tandem.repack(data, code)
        for rows in (1, 3):
            steps = torch.randint(-127, 128, (rows, k // 32, 32), generator=g)
            steps[:, :, 5] = 127
            x = (steps * 2.0 ** -9).reshape(rows, k)
            want, scale = x.double() @ ref.T, x.double().abs() @ ref.abs().T
            for quantize_x in (True, False):
                got = torch.ops.tandem.qlinear(x, data, q.scales, code, k, quantize_x).double()
                err = float(((got - want).abs() / scale.clamp_min(1e-30)).max())
                key = f"{fmt}/{'int8' if quantize_x else 'int8x2'}"
                worst[key] = max(worst.get(key, 0.0), err)
        for rows in (1, 3):
            x = torch.randn(rows, k, generator=g) * torch.exp(2 * torch.randn(rows, k // 32, 1, generator=g)).repeat_interleave(32, 1).reshape(rows, k)
            x[:, 3] = 40.0
            xd = x.double()
            want = xd @ ref.T
            amax = xd.reshape(rows, k // 32, 32).abs().amax(-1)
            wabs = ref.abs().reshape(-1, k // 32, 32).sum(-1)
            bound = amax @ wabs.T / (2 * 127 * 254) + 2e-6 * (xd.abs() @ ref.abs().T)
            got = torch.ops.tandem.qlinear(x, data, q.scales, code, k, False).double()
            err = float(((got - want).abs() / bound).max())
            worst[f"two/{fmt}"] = max(worst.get(f"two/{fmt}", 0.0), err)
    if fmt not in REPACKED:
        continue
    for n, k in [(16, 64), (32, 576), (48, 2144)]:
        q = quantize(torch.randn(n, k, generator=g2) * 0.05, fmt)
        ref = q.dequantize().double()
        data = q.data.clone()
        code = torch.ops.tandem.repack(data, FORMATS[fmt])
        steps = torch.randint(-127, 128, (19, k // 32, 32), generator=g2)
        steps[:, :, 5] = 127
        x = (steps * 2.0 ** -9).reshape(19, k)
        want, scale = x.double() @ ref.T, x.double().abs() @ ref.abs().T
        got = torch.ops.tandem.qlinear(x, data, q.scales, code, k, True).double()
        if not torch.ops.tandem.tile_gemm():  # AMX: bf16 x, W and y through BLAS (test_quant's bf16 bound)
            bound = 2.0 ** -8 * scale * (1 + 2.0 ** -7) + 2.0 ** -8 * want.abs() + 2e-6 * scale
            worst[f"bf16/{fmt}"] = max(worst.get(f"bf16/{fmt}", 0.0), float(((got - want).abs() / bound).max()))
            continue
        worst[f"{fmt}/int8"] = max(worst[f"{fmt}/int8"], float(((got - want).abs() / scale).max()))
        x = torch.randn(19, k // 32, 32, generator=g2)
        x = x / x.abs().amax(-1, keepdim=True)
        x[:, 0, 3] = 40.0
        x = x.reshape(19, k)
        xd = x.double()
        want = xd @ ref.T
        amax = xd.reshape(19, k // 32, 32).abs().amax(-1)
        wabs = ref.abs().reshape(-1, k // 32, 32).sum(-1)
        levels = torch.where(amax > 2 * amax.median(-1, keepdim=True).values, 2 * 127 * 254, 2 * 127)
        bound = (amax / levels) @ wabs.T + 2e-6 * (xd.abs() @ ref.abs().T)
        got = torch.ops.tandem.qlinear(x, data, q.scales, code, k, True).double()
        one = torch.cat([torch.ops.tandem.qlinear(x[i : i + 1], data, q.scales, code, k, True) for i in range(19)])
        worst[f"mixed/{fmt}"] = max(worst.get(f"mixed/{fmt}", 0.0), float(((got - want).abs() / bound).max()))
        gain = float((got - want).abs().mean() / (one.double() - want).abs().mean())
        worst[f"gain/{fmt}"] = max(worst.get(f"gain/{fmt}", 0.0), gain)
print(json.dumps({"isa": kernels.isa(), "tile_gemm": torch.ops.tandem.tile_gemm(), "worst": worst}))
"""


def run(isa: str) -> dict:
    # "portable" is the plain C++ path of a CPU without AVX2, built here for x86-64 (SSE2) on purpose.
    flags = 'kernels.ISAS["portable"] = (["-march=x86-64"], ())' if isa == "portable" else ""
    env = {**os.environ, "TANDEM_KERNEL_ISA": isa, "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-c", RUN.replace("ISA_FLAGS", flags)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("isa", ["native", "avx512", "avx2", "portable"])
def test_repacked_dots_equal_the_reference_blocks_on_each_isa(isa):
    """On a CPU with AMX the native build sends many rows through bf16 BLAS (held to the bf16
    bound); the avx512 build (AMX off) runs the batched tile dot there, as AVX-512 CPUs without AMX
    do natively (where it would repeat the native run, it is skipped)."""
    if isa == "avx2" and not HAS_AVX2:
        pytest.skip("this CPU has no AVX2/FMA/F16C")
    if isa == "avx512" and not (HAS_AVX512 and HAS_AMX):
        pytest.skip("the avx512 build differs from the native one only on a CPU with AVX-512 and AMX")
    if isa == "portable" and os.uname().machine != "x86_64":
        pytest.skip("the portable build is compiled with -march=x86-64")
    result = run(isa)
    assert result["isa"] == isa
    assert result["tile_gemm"] == (isa != "native" or not HAS_AMX), result
    worst = result["worst"]
    if result["tile_gemm"]:
        assert len(worst) == 3 * len(FORMATS) + 2 * len(REPACKED)
        assert max(err for key, err in worst.items() if key.startswith("gain/")) <= 0.3, result
    else:
        assert len(worst) == 3 * len(FORMATS) + len(REPACKED)
        assert max(err for key, err in worst.items() if key.startswith("bf16/")) <= 1.0, result
    exact = {key: err for key, err in worst.items() if "/int8" in key}
    assert max(exact.values()) <= 2e-6, result
    assert max(err for key, err in worst.items() if key.startswith(("two/", "mixed/", "bf16/"))) <= 1.0, result
