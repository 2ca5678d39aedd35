"""Quantized weights for the edge tier: kernels against a dequantized reference,
checkpoints written by `tandem quantize`, the tier choice, and quality bounds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from engine import kernels
from engine.errors import ModelFormatError
from engine.quant_linear import FORMATS, QTensor, QuantEmbedding, QuantLinear, quantize, quantized_bytes, repack
from tests.conftest import REPO, relative_error

# y = x W^T against x @ dequantize(W)^T. With int8 activations (the decode path)
# x is rounded per block of 32 to steps of amax/127, so each output may be off by
# at most sum over blocks of (step / 2) * sum |W| in that block: the test asserts
# that bound (plus float slack). The output layer's two-level activations
# (quantize_activations=False, up to 8 rows) have a 254x finer last step, so the
# same bound with step amax / (127 * 254). fp32 activations (the BLAS path)
# differ only by summation order: 1e-5 of max |y|. The dequantize + BLAS prefill path is fp32 too, or,
# where the CPU has bf16 dot products, rounds x, W and y to bf16 (8 significant
# bits): then each output may be off by 2^-8 sum |x||W| (inputs) + 2^-8 |y|.
FP32_TOL = 1e-5

SHAPES = [(1, 32), (7, 96), (33, 160), (5, 224), (96, 576)]  # (out, in): odd row counts, 1 to 18 blocks
ROWS = [1, 3, 8, 9, 33]  # the kernel switches from int8 dot products to dequantize + BLAS above 8 rows


def int8_activation_bound(x: torch.Tensor, w: torch.Tensor, steps: int = 127) -> torch.Tensor:
    """Largest |error| per output that rounding x per block of 32 to amax / steps can cause."""
    k = x.shape[-1]
    half_step = x.reshape(-1, k // 32, 32).abs().amax(-1) / steps / 2  # [M, B]
    block_l1 = w.abs().reshape(w.shape[0], k // 32, 32).sum(-1)  # [N, B]
    return half_step @ block_l1.T * (1 + 1e-4) + 1e-5 * w.abs().sum(-1)


def bf16_bound(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Largest |error| per output of a bf16 matmul with fp32 accumulation and bf16 output."""
    x = x.reshape(-1, x.shape[-1])
    return 2**-8 * (x.abs() @ w.abs().T) * (1 + 2**-7) + 2**-8 * (x @ w.T).abs() + 1e-5 * w.abs().sum(-1)


def assert_close(got: torch.Tensor, x: torch.Tensor, w: torch.Tensor, rounding: str = "fp32") -> None:
    """`rounding` of the activations: "int8" blocks (decode), "two-level" int8 blocks (the output
    layer's decode), "bf16" (prefill on bf16 CPUs) or "fp32"."""
    want = x @ w.T
    if rounding == "fp32":
        assert relative_error(got, want) <= FP32_TOL
        return
    if rounding == "bf16":
        bound = bf16_bound(x, w)
    else:
        bound = int8_activation_bound(x, w, 127 if rounding == "int8" else 127 * 254)
    excess = (got - want).abs().reshape(-1, w.shape[0]) - bound
    assert float(excess.max()) <= 0, float(excess.max())


def activation_rounding(quantize_activations: bool, rows: int, out_features: int) -> str:
    """How the kernel rounds `rows` rows of activations for a repacked matrix of `out_features` rows:
    past 8 rows a matrix of whole 16-row tiles takes the int8 tile dot where the CPU has no AMX (its
    outlier blocks get a second int8 level, so the int8 bound holds), else BLAS in bf16 or fp32."""
    if rows <= 8:
        return "int8" if quantize_activations else "two-level"
    if not quantize_activations:
        return "fp32"
    if torch.ops.tandem.tile_gemm() and out_features % 16 == 0:
        return "int8"
    return "bf16" if torch.ops.tandem.bf16_gemm() else "fp32"


@pytest.fixture(scope="module", autouse=True)
def native_kernels():
    if not kernels.available():
        pytest.fail("the native kernels did not build (a C++ compiler is part of the set-up)")


def layer(fmt: str, n: int, k: int, *, quantize_activations: bool = True, seed: int = 0) -> QuantLinear:
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 0.05
    q = quantize(w, fmt)
    mod = QuantLinear(k, n, fmt, quantize_activations=quantize_activations)
    mod.weight, mod.scales = q.data, q.scales
    repack(mod)  # as a loaded model is: the 4-bit formats in the kernels' layout
    return mod


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("n,k", SHAPES)
def test_quantized_linear_matches_the_dequantized_reference(fmt, n, k):
    for quantize_activations in (True, False):
        mod = layer(fmt, n, k, quantize_activations=quantize_activations)
        reference = mod.dequantized()
        for m in ROWS:
            x = torch.randn(1, m, k, generator=torch.Generator().manual_seed(m))
            got = mod(x)
            assert got.shape == (1, m, n)
            assert_close(got, x, reference, activation_rounding(quantize_activations, m, n))


def test_the_torch_fallback_computes_the_same_layer(monkeypatch):
    mod = layer("q4_1", 33, 160)
    x = torch.randn(2, 160)
    assert_close(mod(x), x, mod.dequantized(), "int8")
    monkeypatch.setattr(kernels, "available", lambda: False)
    assert_close(mod(x), x, mod.dequantized(), "fp32")


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_quantize_rounds_each_weight_to_within_half_a_step(fmt):
    """Round to nearest; Q4_0 alone may be off by a whole step, on the side opposite the
    block's extreme (which maps to -8, so +8 clamps to +7: llama.cpp's scheme)."""
    w = torch.randn(37, 128, generator=torch.Generator().manual_seed(3))
    w[0, :32] = 0.0  # an all-zero block must not divide by zero
    err = (quantize(w, fmt).dequantize() - w).abs()
    if fmt == "i8":
        step = w.abs().amax(1, keepdim=True) / 127
    else:
        blocks = w.reshape(37, 4, 32)
        span = blocks.amax(-1, keepdim=True) - blocks.amin(-1, keepdim=True)
        amax = blocks.abs().amax(-1, keepdim=True)
        step = {"q4_0": amax / 8, "q4_1": span / 15, "q8_0": amax / 127}[fmt]
        step = step.expand(-1, -1, 32).reshape(37, 128)
    if fmt == "q4_0":
        step = step * 2
    # half a step, plus the fp16 rounding of the block scale (and of Q4_1's minimum)
    assert bool((err <= step * 0.5 * (1 + 2e-3) + 1e-3 * w.abs().amax()).all()), float(err.max())
    assert float(err[0, :32].max()) == 0.0


def test_quantized_embedding_looks_up_dequantized_rows():
    w = torch.randn(50, 64)
    for fmt in FORMATS:
        q = quantize(w, fmt)
        emb = QuantEmbedding(50, 64, fmt)
        emb.weight, emb.scales = q.data, q.scales
        ids = torch.tensor([[0, 49, 7], [7, 7, 1]])
        assert torch.equal(emb(ids), F.embedding(ids, q.dequantize()))
    with pytest.raises(RuntimeError, match="outside the vocabulary"):
        emb(torch.tensor([[50]]))


def test_malformed_quantized_tensors_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize(torch.randn(4, 48), "q4_0")
    with pytest.raises(ValueError, match="unknown quantized format"):
        quantize(torch.randn(4, 32), "q3_k")
    with pytest.raises(ValueError, match="does not hold a 4x64 matrix"):
        QTensor(torch.zeros(4, 20, dtype=torch.uint8), "q4_1", (4, 64))
    with pytest.raises(ValueError, match="per-channel scales"):
        QTensor(torch.zeros(4, 32, dtype=torch.uint8), "i8", (4, 32))


# ---- the real model ---------------------------------------------------------------


def test_gguf_blocks_stay_quantized_on_the_device_tier(smollm2, smollm2_device):
    layers = [m for m in smollm2_device.model.modules() if isinstance(m, QuantLinear)]
    assert len(layers) == 4 * 30 + 1  # wqkv, wo, w13, w2 per layer, and the (tied) output
    assert {m.fmt for m in layers} == {"q4_1", "q8_0"}  # the file's own block types
    assert isinstance(smollm2_device.model.tok_embeddings, QuantEmbedding)
    device, full = quantized_bytes(smollm2_device.model), quantized_bytes(smollm2.model)
    assert device < 0.2 * full, (device, full)
    assert smollm2_device.fingerprint.weights_family == smollm2.fingerprint.weights_family
    assert smollm2_device.fingerprint.quantization != smollm2.fingerprint.quantization


def test_device_tier_answers_like_the_full_precision_twin(smollm2, smollm2_device):
    ids = smollm2.encode_prompt("What is the capital of France? Answer in one sentence.")
    answers = []
    for model in (smollm2, smollm2_device):
        events = model.stream(ids, max_new_tokens=12)
        answers.append("".join(e.text for e in events))
    assert "Paris" in answers[1], answers
    assert answers[0] == answers[1]


def test_quality_on_held_out_text_stays_within_the_bounds(smollm2, smollm2_path):
    """int8 <= +1 % perplexity, 4-bit <= +5 %, through both paths (decode: int8
    activations; prefill: bf16 matmuls where the CPU has them) and with the KV cache
    each tier runs (int8 rows on the native decode path) against the full-precision
    twin, on a short held-out slice."""
    from engine.quality import compare
    from engine.runtime import LocalModel

    text = (REPO / "benchmarks" / "data" / "sotu-1995.txt").read_text()
    ids = smollm2.tokenizer.encode(text)[:129]
    bounds = {"device": 0.05, "q4": 0.05, "int8": 0.01}
    for precision, bound in bounds.items():
        model = LocalModel.load(smollm2_path, precision=precision, max_context=256)
        for path in ("decode", "prefill"):
            q = compare(model.model, smollm2.model, ids, path=path, cache_dtype=model.cache_dtype)
            assert q.tokens == 128
            assert q.perplexity_increase <= bound, (precision, path, q)
            assert q.top1_agreement >= 0.9, (precision, path, q)


# ---- tandem quantize ------------------------------------------------------------------


def run_tandem(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tandem", *args], capture_output=True, text=True, cwd=REPO)


def test_quantize_writes_a_checkpoint_whose_matrices_load_into_huge_pages(hf_checkpoint_factory, tmp_path):
    from safetensors import safe_open

    from engine.quantize import RECIPE_KEY
    from engine.runtime import LocalModel

    src = hf_checkpoint_factory("to_quantize", hidden_size=64, layers=2, heads=4, kv_heads=2, seed=5)
    dst = tmp_path / "q4"
    proc = run_tandem("quantize", str(src), str(dst), "--recipe", "q4")
    assert proc.returncode == 0, proc.stderr
    assert "quantizing (q4)" in proc.stderr  # the progress bar
    with safe_open(dst / "model.safetensors", framework="pt") as f:
        meta = f.metadata()
    assert meta[RECIPE_KEY] == "q4"
    assert json.loads(meta["tandem.formats"])["layers.0.feed_forward.w13.weight"] == "q4_1"

    loaded = LocalModel.load(dst, precision="device")
    in_memory = LocalModel.load(src, precision="q4")
    assert loaded.quantization == in_memory.quantization == "q4"
    assert loaded.tokenizer.fingerprint == in_memory.tokenizer.fingerprint
    ids = loaded.tokenizer.encode("The quantized checkpoint holds the same weights.")
    for m in (loaded, in_memory):
        m.logits = m.model(torch.tensor([ids]), m.new_cache(64))
    assert torch.equal(loaded.logits, in_memory.logits)

    # The matrices the decode step streams leave the file's memory map when they are repacked: they
    # go into an anonymous map advised for huge pages (VmFlags "hg"), one copy, no file behind it.
    maps = Path("/proc/self/smaps").read_text().splitlines()
    heads = [i for i, line in enumerate(maps) if _contains_any(line)]
    address = loaded.model.layers[0].feed_forward.w13.weight.data_ptr()
    start = next(i for i in heads if _contains(maps[i], address))
    vma = maps[start:next((i for i in heads if i > start), len(maps))]
    flags = next(line for line in vma if line.startswith("VmFlags:")).split()
    assert vma[0].split()[3:5] == ["00:00", "0"] and "hg" in flags, vma
    # ... and the file's pages they were copied from are not held besides (the map stays open for the
    # norms, which are views of it): what stays resident of it is a small part of the file
    path = str((dst / "model.safetensors").resolve())
    resident = 0
    for i in heads:
        if maps[i].endswith(path):
            end = next((j for j in heads if j > i), len(maps))
            resident += next(int(line.split()[1]) for line in maps[i:end] if line.startswith("Rss:")) * 1024
    assert resident < 0.2 * (dst / "model.safetensors").stat().st_size, resident

    cloud = LocalModel.load(dst, precision="full")
    assert not any(isinstance(m, QuantLinear) for m in cloud.model.modules())


def _contains_any(line: str) -> bool:
    """Whether a /proc/self/smaps line opens a mapping (an address range), not a field."""
    lo, _, hi = line.partition(" ")[0].partition("-")
    return bool(hi) and all(c in "0123456789abcdef" for c in lo + hi)


def _contains(maps_line: str, address: int) -> bool:
    lo, hi = (int(x, 16) for x in maps_line.split()[0].split("-"))
    return lo <= address < hi


def test_quantize_gives_clear_errors_on_bad_input(tmp_path, smollm2_path):
    proc = run_tandem("quantize", str(tmp_path / "missing"), str(tmp_path / "out"))
    assert proc.returncode == 1 and "no model at" in proc.stderr

    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\x00" * 10)
    proc = run_tandem("quantize", str(junk), str(tmp_path / "out"))
    assert proc.returncode == 1 and "tandem quantize: error:" in proc.stderr

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    proc = run_tandem("quantize", str(smollm2_path), str(taken))
    assert proc.returncode == 1 and "--force" in proc.stderr
    assert (taken / "keep.txt").read_text() == "mine"


def test_a_corrupt_quantized_checkpoint_is_a_clear_error(hf_checkpoint_factory, tmp_path):
    from engine.runtime import LocalModel

    src = hf_checkpoint_factory("to_corrupt", hidden_size=64, layers=1, heads=4, kv_heads=2, seed=6)
    dst = tmp_path / "q"
    assert run_tandem("quantize", str(src), str(dst), "--recipe", "int8").returncode == 0
    weights = dst / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError):
        LocalModel.load(dst)


def test_quantizing_the_gguf_keeps_its_blocks_and_answers_like_the_device_tier(smollm2_path, smollm2_device, tmp_path):
    """`tandem quantize smollm2-135m DIR` once answered nonsense: it re-quantized the
    GGUF's q8_0 embeddings per channel, and the native path flipped near-ties. Blocks
    already in the recipe's format are kept, so DIR is the device tier, bit for bit."""
    from engine.runtime import LocalModel

    dst = tmp_path / "q4"
    proc = run_tandem("quantize", str(smollm2_path), str(dst))
    assert proc.returncode == 0, proc.stderr
    loaded = LocalModel.load(dst, precision="device", max_context=256)
    ids = torch.tensor([loaded.encode_prompt("What is the capital of France? Answer in one sentence.")])
    got = loaded.model(ids, loaded.new_cache(64))
    want = smollm2_device.model(ids, smollm2_device.new_cache(64))
    assert torch.equal(got, want)
    answer = "".join(e.text for e in loaded.stream(ids[0].tolist(), max_new_tokens=12))
    assert "Paris" in answer, answer


def test_quantize_writes_files_readable_by_all_less_the_umask(hf_checkpoint_factory, tmp_path):
    src = hf_checkpoint_factory("to_chmod", hidden_size=64, layers=1, heads=4, kv_heads=2, seed=7)
    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        dst = tmp_path / f"q{umask:o}"
        proc = subprocess.run([sys.executable, "-c", f"import os, sys; os.umask({umask}); "
                               "from tandem.cli import main; sys.exit(main(sys.argv[1:]))",
                               "quantize", str(src), str(dst)], capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        assert {f.name: f.stat().st_mode & 0o777 for f in dst.iterdir()} == dict.fromkeys(
            ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"), mode)
