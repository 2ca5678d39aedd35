"""GGUF reading: every supported block format decodes exactly like the gguf
reference library, and a llama.cpp-layout file (permuted Q/K rows, rope_freqs)
gives the same logits as the Hugging Face checkpoint it was converted from."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from gguf.quants import dequantize as ref_dequantize
from gguf.quants import quantize

from engine.errors import ModelFormatError
from engine.gguf_file import GGUFFile
from engine.hf_loader import read_config as hf_read_config
from engine.hf_loader import read_tensors
from engine.runtime import LocalModel

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"]


@pytest.mark.parametrize("name", TYPES)
def test_block_formats_decode_like_the_reference(name, tmp_path):
    qtype = gguf.GGMLQuantizationType[name]
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((7, 96)) * 3).astype(np.float32)  # odd row count, 3 blocks per row
    data = x if qtype == gguf.GGMLQuantizationType.F32 else quantize(x, qtype)
    path = tmp_path / "t.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("t", data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ours = GGUFFile(path).dequantize("t")
    assert ours.shape == (7, 96)
    expected = x if qtype == gguf.GGMLQuantizationType.F32 else ref_dequantize(data, qtype)
    np.testing.assert_array_equal(ours.numpy(), expected.reshape(7, 96))


def llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """What llama.cpp's convert_hf_to_gguf.py does to q_proj/k_proj rows."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf_from_hf(folder, out, *, heads, kv_heads, rope_freqs=None):
    """A minimal llama.cpp-style conversion of a random HF checkpoint, F32 tensors."""
    cfg = hf_read_config(folder)
    t = {k: v.float().numpy() for k, v in read_tensors(folder).items()}
    w = gguf.GGUFWriter(out, "llama")
    w.add_block_count(cfg.n_layers)
    w.add_context_length(cfg.max_seq_len)
    w.add_embedding_length(cfg.dim)
    w.add_feed_forward_length(cfg.ffn_dim)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(0)
    w.add_tensor("token_embd.weight", t["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", t["model.norm.weight"])
    if rope_freqs is not None:
        w.add_tensor("rope_freqs.weight", rope_freqs)
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_q.weight", llama_cpp_permute(t[p + "self_attn.q_proj.weight"], heads))
        w.add_tensor(f"blk.{i}.attn_k.weight", llama_cpp_permute(t[p + "self_attn.k_proj.weight"], kv_heads))
        w.add_tensor(f"blk.{i}.attn_v.weight", t[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", t[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", t[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", t[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", t[p + "mlp.down_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_norm.weight", t[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", t[p + "post_attention_layernorm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


LLAMA3_ROPE = {
    "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
}


@pytest.mark.parametrize("scaled", [False, True], ids=["plain_rope", "llama3_rope_freqs"])
def test_gguf_conversion_gives_the_hf_logits(scaled, hf_checkpoint_factory, llama3_tokenizer_path, tmp_path):
    folder = hf_checkpoint_factory(
        f"gguf_src_{scaled}", heads=4, kv_heads=2, rope_scaling=LLAMA3_ROPE if scaled else None,
        max_positions=16384, hidden_size=128,
    )
    hf_model = LocalModel.load(folder, max_context=256)
    rope_freqs = None
    if scaled:
        from engine.model import rope_frequencies

        cfg = hf_model.config
        rope_freqs = (rope_frequencies(cfg.head_dim, cfg.rope_theta, None)
                      / rope_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)).float().numpy()
    path = write_gguf_from_hf(folder, tmp_path / "m.gguf", heads=4, kv_heads=2, rope_freqs=rope_freqs)
    gguf_model = LocalModel.load(path, tokenizer=llama3_tokenizer_path, max_context=256)
    assert gguf_model.config.rope_scaling == hf_model.config.rope_scaling
    assert gguf_model.fingerprint.kv_compatible(hf_model.fingerprint)
    ids = hf_model.tokenizer.encode("Behold, I stand at the door, and knock " * 4)
    with torch.inference_mode():
        a = hf_model.model(torch.tensor([ids]), hf_model.new_cache(len(ids)))
        b = gguf_model.model(torch.tensor([ids]), gguf_model.new_cache(len(ids)))
    assert (a - b).abs().max().item() < 1e-4


def test_truncated_gguf_is_a_clear_error(smollm2_path, tmp_path):
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(smollm2_path.read_bytes()[: 3_000_000])
    with pytest.raises(ModelFormatError, match="truncated or corrupt"):
        LocalModel.load(truncated)


def test_corrupt_header_is_a_clear_error(smollm2_path, tmp_path):
    data = bytearray(smollm2_path.read_bytes()[:200_000])
    data[16:24] = (2**62).to_bytes(8, "little")  # absurd metadata count
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="not a valid GGUF"):
        LocalModel.load(bad)


def write_q4_gguf(out, *, dim=256, heads=4, kv_heads=2, ffn=768, layers=2, vocab=512, qtype="Q4_0"):
    """A small llama-layout GGUF whose matrices are stored in 4-bit blocks (random weights)."""
    kind = gguf.GGMLQuantizationType[qtype]
    rng = np.random.default_rng(1)
    head_dim = dim // heads

    def block(rows, cols):
        return quantize((rng.standard_normal((rows, cols)) * 0.05).astype(np.float32), kind)

    w = gguf.GGUFWriter(out, "llama")
    for add, value in [(w.add_block_count, layers), (w.add_context_length, 256), (w.add_embedding_length, dim),
                       (w.add_feed_forward_length, ffn), (w.add_head_count, heads), (w.add_head_count_kv, kv_heads),
                       (w.add_layer_norm_rms_eps, 1e-5), (w.add_vocab_size, vocab), (w.add_file_type, 2)]:
        add(value)
    w.add_tensor("token_embd.weight", block(vocab, dim), raw_dtype=kind)
    w.add_tensor("output_norm.weight", np.ones(dim, np.float32))
    for i in range(layers):
        shapes = {"attn_q": (dim, dim), "attn_k": (kv_heads * head_dim, dim), "attn_v": (kv_heads * head_dim, dim),
                  "attn_output": (dim, dim), "ffn_gate": (ffn, dim), "ffn_up": (ffn, dim), "ffn_down": (dim, ffn)}
        for name, shape in shapes.items():
            w.add_tensor(f"blk.{i}.{name}.weight", block(*shape), raw_dtype=kind)
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(dim, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(dim, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def mapped_rss(path) -> int:
    """Bytes of `path`'s memory maps resident in this process (/proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        first = line.split(maxsplit=1)[0]
        if "-" in first and not first.endswith(":"):  # a mapping's header line
            inside = line.rstrip().endswith(str(path))
        elif inside and first == "Rss:":
            total += int(line.split()[1]) * 1024
    return total


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1"])
def test_fused_gguf_blocks_leave_no_mapped_copy_behind(qtype, tmp_path):
    """q/k/v and gate/up are fused into new tensors at load; their sources must not stay resident in
    the file's map (which the kept blocks hold open): that copy made a GGUF cost ~400 MB more than
    Tandem's own checkpoint of the same Llama-3.2-1B weights. The fused blocks are the stored ones,
    rows un-permuted, exactly as the float path decodes them."""
    from engine.gguf_loader import load_gguf

    path = write_q4_gguf(tmp_path / "m.gguf", qtype=qtype)
    config, weights, _ = load_gguf(path, keep_quantized=True)
    source = GGUFFile(path)
    fused_names = [f"blk.{i}.{n}.weight" for i in range(config.n_layers)
                   for n in ("attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up")]
    fused_bytes = sum(source.tensors[n].nbytes for n in fused_names)
    del source
    size = path.stat().st_size
    assert fused_bytes > size // 2  # so a resident copy of them could not pass the bound below
    assert mapped_rss(path) <= size - fused_bytes
    _, floats, _ = load_gguf(path, keep_quantized=False)
    for i in range(config.n_layers):
        for name in ("attention.wqkv.weight", "feed_forward.w13.weight"):
            kept = weights[f"layers.{i}.{name}"]
            assert kept.fmt == qtype.lower()
            torch.testing.assert_close(kept.dequantize(), floats[f"layers.{i}.{name}"], rtol=0, atol=0)
