"""The model files the decode benchmark runs both engines on, made once into a cache outside the checkout.

SmolLM2-135M: the shipped GGUF (Q4_1 blocks, Q8_0 embedding), the same file requantized to Q4_0 (each
Q4_1 block decoded and re-rounded by the `gguf` package's reference quantizer, what llama.cpp's own
quantizer computes; everything else copied as is), and Tandem's own checkpoint of it (`tandem quantize`,
q4 recipe: the same Q4_1 and Q8_0 blocks in a memory-mapped safetensors folder).

Llama-3.2-1B shapes (16 layers, dim 2048, 32/8 heads, FFN 8192, 128,256 tokens, tied embeddings, Llama 3
rope scaling): random weights (seeded) written as GGUFs in the same layout as the shipped SmolLM2 file
(matrices Q4_0 or Q4_1, embedding Q8_0, norms F32, llama.cpp's Q/K row order and rope_freqs) with the real
Llama 3 tokenizer in the metadata, plus `tandem quantize` of the Q4_1 one. Speed and memory only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
from gguf.quants import dequantize, quantize

REPO = Path(__file__).resolve().parents[1]
LLAMA_1B = dict(vocab=128256, dim=2048, layers=16, heads=32, kv_heads=8, ffn=8192, eps=1e-5, theta=500000.0,
                context=131072, rope_factor=32.0, original_context=8192)
Q = gguf.GGMLQuantizationType


def cache_dir() -> Path:
    if root := os.environ.get("TANDEM_BENCH_CACHE"):
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tandem" / "bench"


def _finish(writer: gguf.GGUFWriter, path: Path) -> Path:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def requantized(src: Path, dst: Path, kind: Q) -> Path:
    """`src` with every Q4_0/Q4_1 tensor re-rounded to `kind`; metadata and other tensors copied."""
    if dst.is_file():
        return dst
    reader = gguf.GGUFReader(src)
    tmp = dst.with_suffix(".tmp")
    writer = gguf.GGUFWriter(tmp, reader.fields["general.architecture"].contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = {Q.Q4_0: 2, Q.Q4_1: 3}[kind] if key == "general.file_type" else field.contents()
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, field.types[0], sub_type=sub_type)
    for t in reader.tensors:
        data, stored = np.asarray(t.data), Q(t.tensor_type)
        if stored in (Q.Q4_0, Q.Q4_1) and stored != kind:
            data, stored = quantize(dequantize(data, stored), kind), kind
        writer.add_tensor(t.name, data, raw_dtype=stored)
    _finish(writer, tmp).rename(dst)
    return dst


def tandem_checkpoint(src: Path, dst: Path, tokenizer: str | None = None) -> Path:
    """`tandem quantize SRC DST --recipe q4` (the CLI itself, so the benchmark loads what users get)."""
    if (dst / "model.safetensors").is_file():
        return dst
    cmd = [sys.executable, "-m", "tandem.cli", "quantize", str(src), str(dst), "--recipe", "q4"]
    if tokenizer:
        cmd += ["--tokenizer", tokenizer]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, text=True)
    return dst


def smollm2_files(root: Path) -> dict[str, Path]:
    from engine.registry import resolve

    shipped = resolve("smollm2-135m")
    folder = root / "smollm2-135m"
    folder.mkdir(parents=True, exist_ok=True)
    return {"Q4_0": requantized(shipped, folder / "smollm2-135m.Q4_0.gguf", Q.Q4_0), "Q4_1": shipped,
            "tandem q4": tandem_checkpoint(shipped, folder / "tandem-q4")}


def _merge(ranks: dict[bytes, int], token: bytes) -> tuple[bytes, bytes] | None:
    """The merge that makes `token`: BPE with only the merges ranked before it (tiktoken's rule) leaves
    two parts; where it leaves more, the split into two vocabulary entries of the lowest ranks."""
    parts = _bpe_parts(ranks, token)
    if len(parts) == 2:
        return parts[0], parts[1]
    splits = [(max(ranks[token[:i]], ranks[token[i:]]), i) for i in range(1, len(token))
              if token[:i] in ranks and token[i:] in ranks]
    return (token[: min(splits)[1]], token[min(splits)[1] :]) if splits else None


def _bpe_parts(ranks: dict[bytes, int], token: bytes) -> list[bytes]:
    """`token` split by BPE with only the merges ranked before it."""
    parts = [bytes([b]) for b in token]
    limit = ranks[token]
    while len(parts) > 1:
        best = min(((ranks.get(parts[i] + parts[i + 1], limit), i) for i in range(len(parts) - 1)))
        if best[0] >= limit:
            break
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def llama3_tokenizer_metadata(writer: gguf.GGUFWriter) -> None:
    """The Llama 3 tokenizer (llama-models' tiktoken file) as GGUF byte-level BPE metadata."""
    from tiktoken.load import load_tiktoken_bpe

    from engine.registry import resolve
    from engine.tokenizer import _byte_decoder, load_tokenizer

    tok = load_tokenizer(resolve("llama3-tokenizer"))
    ranks = load_tiktoken_bpe(str(tok.source))
    spell = {b: c for c, b in _byte_decoder().items()}
    by_id = sorted(ranks.items(), key=lambda kv: kv[1])
    tokens = ["".join(spell[b] for b in t) for t, _ in by_id]
    types = [1] * len(tokens)
    for name, idx in sorted(tok.specials.items(), key=lambda kv: kv[1]):
        assert idx == len(tokens)
        tokens.append(name)
        types.append(3)
    merges = []
    for token, _ in by_id:
        if len(token) > 1 and (pair := _merge(ranks, token)):
            a, b = pair
            merges.append("".join(spell[x] for x in a) + " " + "".join(spell[x] for x in b))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tok.specials["<|begin_of_text|>"])
    writer.add_eos_token_id(tok.specials["<|eot_id|>"])
    writer.add_add_bos_token(True)


def _llama_cpp_order(w: np.ndarray, heads: int) -> np.ndarray:
    """Q/K rows in llama.cpp's interleaved-RoPE order (what its converter writes)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, w.shape[1]).swapaxes(1, 2).reshape(w.shape)


def write_llama_1b_gguf(path: Path, kind: Q, seed: int = 0) -> Path:
    """Random weights with Llama-3.2-1B's config, matrices in `kind` blocks (see the module docstring)."""
    if path.is_file():
        return path
    import torch

    from engine.model import rope_frequencies
    from engine.config import RopeScaling

    c = LLAMA_1B
    head_dim = c["dim"] // c["heads"]
    gen = torch.Generator().manual_seed(seed)
    tmp = path.with_suffix(".tmp")
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_name("Llama-3.2-1B shapes (random weights)")
    w.add_block_count(c["layers"])
    w.add_context_length(c["context"])
    w.add_embedding_length(c["dim"])
    w.add_feed_forward_length(c["ffn"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv(c["kv_heads"])
    w.add_rope_freq_base(c["theta"])
    w.add_layer_norm_rms_eps(c["eps"])
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(c["vocab"])
    w.add_file_type({Q.Q4_0: 2, Q.Q4_1: 3}[kind])
    w.add_uint32("llama.rope.scaling.original_context_length", c["original_context"])
    llama3_tokenizer_metadata(w)

    def matrix(rows: int, cols: int, as_kind: Q = kind, heads: int | None = None) -> np.ndarray:
        x = (torch.randn(rows, cols, generator=gen) * 0.02).numpy()
        x = _llama_cpp_order(x, heads) if heads else x
        step = 8192  # rows at a time: the embedding in float32 alone is 1 GiB
        return np.concatenate([quantize(x[i : i + step], as_kind) for i in range(0, rows, step)])

    scaling = RopeScaling(factor=c["rope_factor"], original_max_position_embeddings=c["original_context"])
    freqs = rope_frequencies(head_dim, c["theta"], None) / rope_frequencies(head_dim, c["theta"], scaling)
    ones = np.ones(c["dim"], np.float32)
    w.add_tensor("token_embd.weight", matrix(c["vocab"], c["dim"], Q.Q8_0), raw_dtype=Q.Q8_0)
    w.add_tensor("rope_freqs.weight", freqs.float().numpy())
    w.add_tensor("output_norm.weight", ones)
    kv = c["kv_heads"] * head_dim
    for i in range(c["layers"]):
        for name, shape, heads in [("attn_q", (c["dim"], c["dim"]), c["heads"]), ("attn_k", (kv, c["dim"]), c["kv_heads"]),
                                   ("attn_v", (kv, c["dim"]), None), ("attn_output", (c["dim"], c["dim"]), None),
                                   ("ffn_gate", (c["ffn"], c["dim"]), None), ("ffn_up", (c["ffn"], c["dim"]), None),
                                   ("ffn_down", (c["dim"], c["ffn"]), None)]:
            w.add_tensor(f"blk.{i}.{name}.weight", matrix(*shape, heads=heads), raw_dtype=kind)
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
    _finish(w, tmp).rename(path)
    return path


def llama_1b_files(root: Path) -> dict[str, Path]:
    folder = root / "llama-3.2-1b-shapes"
    folder.mkdir(parents=True, exist_ok=True)
    q4_1 = write_llama_1b_gguf(folder / "llama-1b-shapes.Q4_1.gguf", Q.Q4_1)
    return {"Q4_0": write_llama_1b_gguf(folder / "llama-1b-shapes.Q4_0.gguf", Q.Q4_0), "Q4_1": q4_1,
            "tandem q4": tandem_checkpoint(q4_1, folder / "tandem-q4")}
