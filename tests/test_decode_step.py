"""The native decode step (one call for every layer) against the model's own modules."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import pytest
import torch

from engine import kernels, packed_kv
from engine.checkpoint import read_checkpoint
from engine.decode_step import NativeDecodeStep
from engine.generate import generate_tokens
from engine.model import KVCache
from engine.quant_linear import FORMATS, quantize
from engine.runtime import build_transformer
from tests.conftest import REPO, relative_error

MATRICES = ("attention.wqkv.weight", "attention.wo.weight", "feed_forward.w13.weight", "feed_forward.w2.weight")


@pytest.fixture(scope="module", autouse=True)
def native_kernels():
    if not kernels.available():
        pytest.fail("the native kernels did not build (a C++ compiler is part of the set-up)")


@pytest.fixture(scope="module")
def tiny(hf_checkpoint_factory):
    """Three random layers with GQA (4 query heads on 2 kv heads) and llama3 RoPE scaling."""
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64}
    folder = hf_checkpoint_factory("decode_step", hidden_size=64, layers=3, heads=4, kv_heads=2, intermediate=160,
                                   rope_scaling=rope, seed=3)
    return read_checkpoint(folder)


def quantized_model(ckpt, fmt: str):
    weights = {name: quantize(w, fmt) if name.endswith(MATRICES) else w for name, w in ckpt.weights.items()}
    return build_transformer(ckpt.config, weights, torch.float32)


@contextmanager
def modules_only(model):
    """Inside the block `model` runs its modules, the native step set aside."""
    step, model.decode_step = model.decode_step, None
    try:
        yield
    finally:
        model.decode_step = step


@torch.inference_mode()
def teacher_forced(model, ids: list[int], n_prompt: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Prefill ids[:n_prompt], then feed the rest one token at a time; the logits of each step."""
    cache = KVCache(model.config, len(ids), dtype=dtype)
    model(torch.tensor([ids[:n_prompt]]), cache)
    return torch.stack([model(torch.tensor([[t]]), cache)[0, -1] for t in ids[n_prompt:]])


@torch.inference_mode()
def paired_steps(model, ids: list[int], n_prompt: int, dtype: torch.dtype):
    """Prefill ids[:n_prompt] (the modules run it either way), then each later token decoded both
    ways from the same cache: (native output, the modules', the native step's cache, the modules'
    cache, the position both appended)."""
    cache = KVCache(model.config, len(ids), dtype=dtype)
    model(torch.tensor([ids[:n_prompt]]), cache)
    for t in ids[n_prompt:]:
        twin, pos = cache.copy_into(KVCache(model.config, len(ids), dtype=dtype)), cache.pos
        got = model(torch.tensor([[t]]), twin)
        with modules_only(model):
            want = model(torch.tensor([[t]]), cache)
        yield got, want, twin, cache, pos


def step_errors(model, ids: list[int], n_prompt: int, dtype: torch.dtype = torch.float32) -> list[float]:
    """Each decode step run both ways from the same cache: the relative error of the
    native step's logits and of the keys and values it appends."""
    return [max(relative_error(got, want),
                relative_error(twin.k[:, :, :, pos].float(), cache.k[:, :, :, pos].float()),
                relative_error(twin.v[:, :, :, pos].float(), cache.v[:, :, :, pos].float()))
            for got, want, twin, cache, pos in paired_steps(model, ids, n_prompt, dtype)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32 cache", "fp16 cache"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_native_step_matches_the_modules(tiny, fmt, dtype):
    """Same arithmetic up to summation order and the exp polynomial, so ~1e-6; but
    an activation that lands within that of an int8 rounding boundary flips by a
    step (~1/127 of its block) on one side only, so a step or two may differ by
    a few 1e-2 (this random model amplifies it: over prompts of seeds 0-3, one step
    in ~4 prompts flips, by up to 3.8e-2; i8 too, at 3.2e-2). 31 steps reach past the SIMD blocks of the attention loops. An
    fp16 cache is read as it is by the step and widened by the modules: the same
    values, and the keys and values the step appends round as torch's .half() does."""
    model = quantized_model(tiny, fmt)
    assert isinstance(model.decode_step, NativeDecodeStep)
    ids = torch.randint(0, tiny.config.vocab_size, (40,), generator=torch.Generator().manual_seed(0)).tolist()
    errors = step_errors(model, ids, 9, dtype)
    assert len(errors) == 31
    assert sum(e < 1e-4 for e in errors) >= 28, errors
    assert max(errors) < 5e-2, errors


@pytest.fixture(scope="module", params=[(384, 6, 2), (512, 4, 1)], ids=["hd64 3 per kv", "hd128 4 per kv"])
def wide(request, hf_checkpoint_factory):
    """Two random layers with the head sizes the SIMD attention kernels take (64: SmolLM2,
    Llama-3.2-1B; 128: Llama 3B/8B) and their groups of query heads per kv head."""
    dim, heads, kv_heads = request.param
    folder = hf_checkpoint_factory(f"decode_step_{dim}", hidden_size=dim, layers=2, heads=heads, kv_heads=kv_heads,
                                   intermediate=256, seed=5)
    return quantized_model(read_checkpoint(folder), "q4_0")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32 cache", "fp16 cache"])
def test_attention_over_many_runs_of_positions_matches_the_modules(wide, dtype):
    """Past a few hundred positions the step's attention is split into runs of positions that
    the threads share out and merges them (kChunk in decode_step.cpp); 300 prompt positions
    and 9 steps cross three runs, the last one partial and growing. Each step within 1e-3 of
    the modules' attention over the whole cache at once (measured <= 2e-4: in these wider layers
    an int8 activation rounding flipped by summation order moves a step by 1e-5-1e-4, and the
    prompt's rounding, bf16 on an AMX CPU, decides how many sit near a boundary), but for a
    bigger flip (a step or two, see test_native_step_matches_the_modules). Runs merged with a
    wrong weight miss by ~1."""
    assert isinstance(wide.decode_step, NativeDecodeStep)
    ids = torch.randint(0, wide.config.vocab_size, (309,), generator=torch.Generator().manual_seed(1)).tolist()
    errors = step_errors(wide, ids, 300, dtype)
    assert len(errors) == 9
    assert sum(e < 1e-3 for e in errors) >= 7, errors
    assert max(errors) < 5e-2, errors


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_the_final_norm_and_output_layer_join_the_step(tiny, fmt):
    """With a quantized output layer (near-fp32 activations, as loaded models have it) the step ends in
    logits: they and the normed hidden state the judge reads match the modules' up to the norm's
    summation order (the output layer's two int8 levels leave ~1e-5 of a block's absmax)."""
    weights = {name: quantize(w, fmt) if name.endswith(MATRICES) or name == "output.weight" else w
               for name, w in tiny.weights.items()}
    if "output.weight" not in weights:
        weights["output.weight"] = quantize(weights["tok_embeddings.weight"], fmt)
    model = build_transformer(dataclasses.replace(tiny.config, tie_embeddings=False), weights, torch.float32)
    assert model.decode_step.head is not None
    ids = torch.randint(0, tiny.config.vocab_size, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    errors = step_errors(model, ids, 9)
    assert sum(e < 1e-4 for e in errors) >= 28, errors
    assert max(errors) < 5e-2, errors
    with torch.inference_mode():
        cache = KVCache(model.config, 16)
        model(torch.tensor([ids[:9]]), cache)
        twin = cache.copy_into(KVCache(model.config, 16))
        logits, hidden = model(torch.tensor([[ids[9]]]), twin, with_hidden=True)
        with modules_only(model):
            want_logits, want_hidden = model(torch.tensor([[ids[9]]]), cache, with_hidden=True)
    assert logits.shape == want_logits.shape and hidden.shape == want_hidden.shape
    assert relative_error(hidden, want_hidden) < 1e-5 and twin.pos == cache.pos == 10


def test_device_tier_decodes_natively_and_answers_the_same(smollm2_device):
    """On the real model int8 activation rounding can amplify ulp-level differences
    after many layers, so the check is the user-visible one: the same greedy text up to its
    end of turn, and logits that agree on the top token at every step of it. (Past it, the
    135M model's babble has near-ties that the prompt's bf16 rounding on an AMX CPU, or the
    int8 cache's query rounding against the modules' fp32 attention, flips (measured: the
    20th token of 32): the logits there are still held to each other.)"""
    model = smollm2_device.model
    assert isinstance(model.decode_step, NativeDecodeStep)
    ids = smollm2_device.encode_prompt("What is the capital of France? Answer in one sentence.")

    def greedy() -> list[int]:
        cache = smollm2_device.new_cache(len(ids) + 32)
        return [t.id for t in generate_tokens(model, cache, ids, max_new_tokens=32)]

    native = greedy()
    answer = next(i for i, t in enumerate(native) if t in smollm2_device.tokenizer.stop_ids) + 1
    with modules_only(model):
        assert greedy()[:answer] == native[:answer]
        by_modules = teacher_forced(model, ids + native, len(ids))
    assert "Paris" in smollm2_device.tokenizer.decode(native[:answer])
    by_native = teacher_forced(model, ids + native, len(ids))
    assert 4 < answer < len(native)
    assert torch.equal(by_native[:answer].argmax(-1), by_modules[:answer].argmax(-1))
    assert relative_error(by_native, by_modules) < 0.1


def test_full_precision_and_batches_run_the_modules(smollm2, smollm2_device):
    assert smollm2.model.decode_step is None  # fp32 layers: nothing native to run
    step = smollm2_device.model.decode_step
    cache = smollm2_device.new_cache(8)
    assert step.runs(torch.tensor([[1]]), cache)
    assert not step.runs(torch.tensor([[1, 2]]), cache)  # prefill
    assert not step.runs(torch.tensor([[1], [2]]), cache)  # a batch


def test_bad_calls_are_refused_with_a_reason(tiny):
    model = quantized_model(tiny, "q4_1")
    step = model.decode_step
    cache = KVCache(model.config, 4)
    x = torch.zeros(1, 1, model.config.dim)
    cache.pos = 4
    with pytest.raises(RuntimeError, match="outside the cache"):
        step(x, cache)
    cache.pos = 0
    with pytest.raises(RuntimeError, match="one token of 64 features"):
        step(torch.zeros(1, 2, model.config.dim), cache)
    with pytest.raises(RuntimeError, match="wqkv, wo, w13, w2"):
        torch.ops.tandem.decode_step(x, step.norms, step.weights[:-1], step.scales[:-1], step.fmts[:-1], cache.k,
                                     cache.v, *step.rope, 0, step.n_heads, step.eps)


@pytest.mark.parametrize("dtype", [torch.float16, torch.int8], ids=["fp16 cache", "int8 cache"])
def test_team_size_and_concurrent_callers_do_not_change_the_result(smollm2_device, dtype):
    """Each output row and each attention item (a kv head's query heads over a run of
    positions) is computed whole by one thread and the runs are merged in a fixed order, so
    the step is bit-identical on one thread, on two, and from two Python threads at once (each
    call forms its own team: a real server decodes sessions from several threads). An item's
    heads share the key and value loads only: each head's sums stay its own."""
    import threading

    model = smollm2_device.model
    ids = smollm2_device.encode_prompt("Name three rivers in Europe. " * 90)  # three runs of positions

    prompt = KVCache(model.config, len(ids) + 8, dtype=dtype)
    with torch.inference_mode():
        model(torch.tensor([ids]), prompt)  # prefilled once: BLAS results may vary with threads

    @torch.inference_mode()
    def steps(out: list | None = None) -> torch.Tensor:
        cache = prompt.copy_into(KVCache(model.config, len(ids) + 8, dtype=dtype))
        logits = torch.stack([model(torch.tensor([[t]]), cache)[0, -1] for t in (11, 22, 33, 44)])
        if out is not None:
            out.append(logits)
        return logits

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = steps()
        torch.set_num_threads(1)
        one = steps()
    finally:
        torch.set_num_threads(threads)
    results: list = []
    workers = [threading.Thread(target=steps, args=(results,)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert torch.equal(one, two)
    assert len(results) == 2 and all(torch.equal(r, two) for r in results)


def test_the_device_tier_keeps_its_kv_cache_in_int8_unless_told(smollm2_path, smollm2_device):
    from engine.runtime import LocalModel

    assert smollm2_device.cache_dtype == torch.int8
    int8 = smollm2_device.new_cache(4)
    assert int8.k.dtype == torch.int8 and int8.v_scale.dtype == torch.float16
    assert (int8.packed is not None) == packed_kv.supported(64)  # 4-bit weights: 4-bit groups where read
    assert smollm2_device.model.decode_step.runs(torch.tensor([[1]]), int8)
    assert dataclasses.replace(smollm2_device, kv_cache="int8").new_cache(4).packed is None
    int4 = dataclasses.replace(smollm2_device, kv_cache="int4").new_cache(4)
    assert int4.k.dtype == torch.int8 and (int4.packed is not None) == packed_kv.supported(64)
    assert dataclasses.replace(smollm2_device, kv_cache="fp16").new_cache(4).k.dtype == torch.float16
    assert dataclasses.replace(smollm2_device, kv_cache="fp32").new_cache(4).k.dtype == torch.float32
    with pytest.raises(ValueError, match="unknown KV cache type 'int2'"):
        LocalModel.load(smollm2_path, precision="device", kv_cache="int2")


def test_an_fp16_cache_changes_the_full_model_by_its_rounding_only(smollm2):
    """Without the int8 activations (the full-precision model, torch attention widening
    the fp16 cache), what fp16 keys and values cost alone: logits within 0.1 of the fp32
    cache's over 128 positions of real text (measured 0.04) and the same top token."""
    ids = smollm2.tokenizer.encode((REPO / "benchmarks" / "data" / "sotu-1995.txt").read_text())[:129]
    exact = teacher_forced(smollm2.model, ids, 1)
    half = teacher_forced(smollm2.model, ids, 1, torch.float16)
    assert float((half - exact).abs().max()) < 0.1
    assert torch.equal(half.argmax(-1), exact.argmax(-1))


def test_the_device_tier_with_an_fp16_cache_keeps_its_quality(smollm2, smollm2_device):
    """Decoded natively over 256 tokens of held-out text against the full-precision twin,
    the fp16 cache scores as the fp32 one does (measured: perplexity +0.23 % vs +0.60 %,
    top-1 agreement 98.4 % vs 98.0 % on an AMX Xeon; -0.51 % vs +0.79 %, 97.7 % vs 97.3 % on a
    Zen 3, where the int8 activations' rounding tips more near-ties): within 2 % perplexity of it
    and >= 95 % agreement."""
    from engine.quality import compare

    ids = smollm2.tokenizer.encode((REPO / "benchmarks" / "data" / "sotu-1995.txt").read_text())[:257]
    half = compare(smollm2_device.model, smollm2.model, ids, cache_dtype=torch.float16)
    full = compare(smollm2_device.model, smollm2.model, ids, cache_dtype=torch.float32)
    assert abs(half.perplexity / full.perplexity - 1) < 0.02, (half, full)
    assert half.top1_agreement >= 0.95, half


def test_int8_attention_over_many_runs_of_positions_matches_the_modules(wide):
    """The int8 cache's kernels at the head sizes their SIMD bodies take (64, 128), over three runs
    of positions, against the modules' fp32 attention over the dequantized cache. The step attends
    the token's own key and value as stored (rounded to int8), the modules as computed, and in
    these random layers that moves the logits by 0.3-5.7 % (mean 1.1 % at hd 64, 2.4 % at hd 128)
    and a later layer's rows by up to 3 int8 steps; a key chunk left out or the heads' weights
    swapped in the kernel moved them by 88-165 % and 190+ steps."""
    ids = torch.randint(0, wide.config.vocab_size, (309,), generator=torch.Generator().manual_seed(1)).tolist()
    logits, steps = [], []
    for got, want, twin, cache, pos in paired_steps(wide, ids, 300, torch.int8):
        logits.append(relative_error(got, want))
        steps += [int((getattr(twin, n)[..., pos, :].int() - getattr(cache, n)[..., pos, :].int()).abs().max())
                  for n in ("k", "v")]
    assert max(logits) < 0.15 and sum(logits) / len(logits) < 0.05, logits
    assert max(steps) <= 8, steps


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_native_step_on_an_int8_cache_matches_the_modules_reading_it_in_fp32(tiny, fmt):
    """The step rounds each token's keys and values as the torch path does (the KV codec's int8
    rows): in the first layer, whose input both share, the same int8 values and fp16 scales bit
    for bit. Its attention takes the int8 keys in integer dot products with the query rounded to
    int16 (2^-16 of its largest value) and widens the values in registers; the modules dequantize
    the cache and attend in fp32. Per step, logits and appended rows (dequantized) agree within
    1e-4 relative where no rounding flips; a key that lands within an ulp of an int8 boundary
    moves by one step (1/127 of its row) and stays in the cache, so from then on a step may
    differ by that: at most 5e-2 (measured 2.7-3.6e-2), and at least a third of the 31 steps
    within 1e-4 (measured 17-24, varying with the prefill's BLAS threads)."""
    model = quantized_model(tiny, fmt)
    ids = torch.randint(0, tiny.config.vocab_size, (40,), generator=torch.Generator().manual_seed(0)).tolist()
    errors = []
    for got, want, twin, cache, pos in paired_steps(model, ids, 9, torch.int8):
        for name in ("k", "v", "k_scale", "v_scale"):
            assert torch.equal(getattr(twin, name)[0, :, :, pos], getattr(cache, name)[0, :, :, pos]), name
        at = (slice(None), slice(None), slice(None), slice(pos, pos + 1))
        rows = [relative_error(a, b) for a, b in zip(twin.read(at, torch.float32), cache.read(at, torch.float32))]
        errors.append(max(relative_error(got, want), *rows))
    assert len(errors) == 31
    assert sum(e < 1e-4 for e in errors) >= 11, errors
    assert max(errors) < 5e-2, errors


def test_an_int8_cache_changes_the_full_model_by_its_rounding_only(smollm2):
    """The torch path (the full-precision model's modules: what runs without the native kernels)
    dequantizing an int8 cache, decoding 128 positions of real text against the fp32 cache: what
    int8 keys and values cost alone, ~13x the fp16 cache's rounding. Logits within 1.0 (measured
    0.54, logits spanning ~20; fp16: 0.04) and the same top token at every position but at most
    two (measured: all but one)."""
    ids = smollm2.tokenizer.encode((REPO / "benchmarks" / "data" / "sotu-1995.txt").read_text())[:129]
    exact = teacher_forced(smollm2.model, ids, 1)
    int8 = teacher_forced(smollm2.model, ids, 1, torch.int8)
    assert float((int8 - exact).abs().max()) < 1.0
    assert int((int8.argmax(-1) != exact.argmax(-1)).sum()) <= 2


def test_the_device_tier_with_an_int8_cache_keeps_its_quality(smollm2, smollm2_device):
    """Decoded natively over 256 tokens of held-out text against the full-precision twin, the int8
    cache scores as the fp32 one does (measured: perplexity +0.14 % vs +0.60 %, top-1 agreement
    98.8 % vs 98.0 %): within 1 % perplexity of it and >= 95 % agreement, the fp16 cache's bounds."""
    from engine.quality import compare

    ids = smollm2.tokenizer.encode((REPO / "benchmarks" / "data" / "sotu-1995.txt").read_text())[:257]
    int8 = compare(smollm2_device.model, smollm2.model, ids, cache_dtype=torch.int8)
    full = compare(smollm2_device.model, smollm2.model, ids, cache_dtype=torch.float32)
    assert abs(int8.perplexity / full.perplexity - 1) < 0.01, (int8, full)
    assert int8.top1_agreement >= 0.95, int8


def test_the_torch_path_generates_from_an_int8_cache_as_the_native_step_does(smollm2_device):
    """Without the native step (TANDEM_NATIVE_KERNELS=0 runs the modules), an int8 cache is
    dequantized by the torch attention: the same answer as the native step's. The two sum the 4-bit
    blocks in different orders (64-byte vectors in the step), so a near-tie late in the answer may
    go the other way: the first 12 tokens are held equal, and both answers name Paris."""
    local = dataclasses.replace(smollm2_device, kv_cache="int8")
    ids = local.encode_prompt("What is the capital of France? Answer in one sentence.")

    def greedy() -> list[int]:
        return [t.id for t in generate_tokens(local.model, local.new_cache(len(ids) + 24), ids, max_new_tokens=24)]

    native = greedy()
    with modules_only(local.model):
        modules = greedy()
    assert modules[:12] == native[:12], (modules, native)
    assert "Paris" in local.tokenizer.decode(native) and "Paris" in local.tokenizer.decode(modules)


def test_without_native_kernels_the_device_tier_answers_from_an_int8_cache():
    """TANDEM_NATIVE_KERNELS=0 (no C++ compiler): the quantized layers dequantize in torch and
    attention reads the int8 cache through the torch path, in a fresh process."""
    import os
    import subprocess
    import sys

    code = (
        "from engine import kernels\n"
        "from engine.runtime import LocalModel\n"
        "m = LocalModel.load('smollm2-135m', precision='device', max_context=128, kv_cache='int8')\n"
        "assert not kernels.available() and m.model.decode_step is None\n"
        "ids = m.encode_prompt('What is the capital of France? Answer in one sentence.')\n"
        "print(m.new_cache(4).k.dtype, ''.join(e.text for e in m.stream(ids, max_new_tokens=12)))\n"
    )
    env = {**os.environ, "TANDEM_NATIVE_KERNELS": "0", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("torch.int8") and "Paris" in proc.stdout, proc.stdout


needs_packed_kernels = pytest.mark.skipif(not packed_kv.supported(64), reason="4-bit cache groups are read by "
                                          "AVX-512 VNNI builds only; on this CPU the device tier keeps int8 rows alone")


def as_floats(cache: KVCache, config, groups: bool = True) -> KVCache:
    """An fp32 cache holding what the step reads from `cache` (int8 rows with 4-bit groups): the
    rows dequantized, with `groups` the groups' values over theirs."""
    pos = cache.pos
    out = KVCache(config, cache.max_seq_len)
    upto = (slice(None), slice(None), slice(None), slice(0, pos))
    out.k[upto], out.v[upto] = cache.read(upto, torch.float32)
    out.pos = pos
    if not groups:
        return out
    packed = cache.packed
    packed.update(cache.keys(), cache.values(), pos)
    g, n = packed.groups, packed.groups * packed_kv.GROUP
    out.k[:, :, :, :n] = packed_kv.unpack_keys(packed.keys[:, :, :, :g], packed.key_stats[:, :, :, :g])
    out.v[:, :, :, :n] = packed_kv.unpack_values(packed.values[:, :, :, :n // 2], packed.value_stats[:, :, :, :g])
    return out


@needs_packed_kernels
def test_native_step_reads_the_4bit_groups_of_an_int8_cache(wide):
    """300 prompt positions: four finished groups (one run of kChunk positions) that the step reads in
    4 bits, then int8 rows. Against the modules over an fp32 cache holding the same values, the step
    differs by its own rounding: the query to int8 per group (the int8 rows' path takes it in int16),
    the weights to int16 and its own row to int8. These random layers amplify roundings: the 4-bit
    format itself (the modules over the groups vs over the int8 rows) moves their logits by 17-108 %
    (means 0.63 at hd 64, 0.46 at hd 128), the step's own by 2-41 % (means 0.11, 0.17; which prompt
    state the layers start from moves these by a few points): on average under 0.2 and under half
    the format's. The groups' nibbles swapped move the logits by over 0.5 more than that: the step
    reads them."""
    ids = torch.randint(0, wide.config.vocab_size, (309,), generator=torch.Generator().manual_seed(1)).tolist()
    cache = KVCache(wide.config, len(ids) + 1, dtype=torch.int8, packed=True)
    errors, format_effect = [], []
    with torch.inference_mode():
        wide(torch.tensor([ids[:300]]), cache)
        for t in ids[300:]:
            groups, rows = as_floats(cache, wide.config), as_floats(cache, wide.config, groups=False)
            with modules_only(wide):
                want, want_rows = wide(torch.tensor([[t]]), groups), wide(torch.tensor([[t]]), rows)
            errors.append(relative_error(wide(torch.tensor([[t]]), cache), want))
            format_effect.append(relative_error(want, want_rows))
        assert cache.packed.groups == 4
        groups = as_floats(cache, wide.config)
        with modules_only(wide):
            want = wide(torch.tensor([[ids[0]]]), groups)
        cache.packed.keys[:] = (cache.packed.keys >> 4) | (cache.packed.keys << 4)
        corrupted = relative_error(wide(torch.tensor([[ids[0]]]), cache), want)
    mean = sum(errors) / len(errors)
    assert mean < 0.2 and mean < sum(format_effect) / len(format_effect) / 2, (errors, format_effect)
    assert corrupted > max(errors) + 0.5, (corrupted, errors)


@needs_packed_kernels
def test_a_rewound_cache_packs_its_groups_again(smollm2_device):
    """A cache that decoded past a group's end (its group packed), rewound into that group and fed other
    tokens, decodes exactly as the same prompt's cache rewound before it ever reached that group: the
    stale 4-bit copy is dropped and rebuilt from the new rows."""
    smollm2_device = dataclasses.replace(smollm2_device, kv_cache="int4")
    ids = smollm2_device.tokenizer.encode((REPO / "benchmarks" / "data" / "kjv-slice.txt").read_text())[:270]
    model = smollm2_device.model
    with torch.inference_mode():
        caches = []
        for detour in (ids[150:210], []):
            cache = smollm2_device.new_cache(300)
            model(torch.tensor([ids[:150]]), cache)
            for t in detour:
                model(torch.tensor([[t]]), cache)
            caches.append(cache)
        assert caches[0].packed.groups == 3 and caches[1].packed.groups == 2  # the prompt's packed in prefill
        for cache in caches:
            cache.truncate(140)
        assert caches[0].packed.groups == caches[1].packed.groups == 2
        logits = [torch.stack([model(torch.tensor([[t]]), cache)[0, -1] for t in ids[210:270]]) for cache in caches]
    assert caches[0].packed.groups == caches[1].packed.groups == 3
    assert torch.equal(logits[0], logits[1])


@needs_packed_kernels
def test_the_device_tier_with_4bit_groups_keeps_its_quality(smollm2, smollm2_device):
    """Decoded natively over 256 tokens of held-out text against the full-precision twin, with the 4-bit
    groups (--kv-cache int4): within 3 % perplexity of the fp32 cache's and >= 92 %
    top-1 agreement (measured on a Zen 4: perplexity -0.04 % vs the twin, agreement 94.9 %; int8 rows
    alone: +0.26 %, 98 %)."""
    from engine.quality import compare

    ids = smollm2.tokenizer.encode((REPO / "benchmarks" / "data" / "sotu-1995.txt").read_text())[:257]
    packed = compare(smollm2_device.model, smollm2.model, ids, cache_dtype=torch.int8, packed=True)
    full = compare(smollm2_device.model, smollm2.model, ids, cache_dtype=torch.float32)
    assert abs(packed.perplexity / full.perplexity - 1) < 0.03, (packed, full)
    assert packed.top1_agreement >= 0.92, packed
