"""Read GGUF files: hyper-parameters, tokenizer metadata and weights.

llama.cpp's converter permutes the rows of Q and K so its RoPE can rotate
adjacent pairs; the engine rotates half-split pairs like Hugging Face, so those
rows are permuted back here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from engine.config import ModelConfig, RopeScaling
from engine.errors import ModelFormatError, UnsupportedModelError
from engine.fingerprint import ModelFingerprint, architecture_hash, weights_family_of
from engine.gguf_file import GGMLType, GGUFFile
from engine.model import rope_frequencies
from engine.quant_linear import BLOCK_BYTES, QTensor, Weights, concat, quantize


def is_gguf_file(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(4) == b"GGUF"


def read_config(meta: dict[str, Any], tensor_names: set[str], path: Path) -> ModelConfig:
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise UnsupportedModelError(f"{path}: architecture {arch!r} is not supported (only 'llama')")

    def get(key: str, default: Any = None) -> Any:
        value = meta.get(f"llama.{key}", default)
        if value is None:
            raise ModelFormatError(f"{path}: metadata lacks 'llama.{key}'")
        return value

    n_heads = int(get("attention.head_count"))
    dim = int(get("embedding_length"))
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = int(meta.get("llama.vocab_size") or (len(tokens) if tokens else 0)) or None
    if vocab is None:
        raise ModelFormatError(f"{path}: cannot tell the vocabulary size")
    return ModelConfig(
        vocab_size=vocab,
        dim=dim,
        n_layers=int(get("block_count")),
        n_heads=n_heads,
        n_kv_heads=int(get("attention.head_count_kv", n_heads)),
        ffn_dim=int(get("feed_forward_length")),
        norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(get("rope.freq_base", 10000.0)),
        max_seq_len=int(get("context_length", 2048)),
        tie_embeddings="output.weight" not in tensor_names,
        head_dim=int(get("rope.dimension_count", dim // n_heads)),
    )


# llama.cpp's `general.file_type` values for the formats the engine reads.
FILE_TYPES = {0: "gguf-f32", 1: "gguf-f16", 2: "gguf-q4_0", 3: "gguf-q4_1", 7: "gguf-q8_0", 32: "gguf-bf16"}


def file_type(meta: dict[str, Any]) -> str:
    """The quantization recipe a GGUF file declares, e.g. 'gguf-q4_1'."""
    value = meta.get("general.file_type")
    return FILE_TYPES.get(value, f"gguf-type{value}") if value is not None else "gguf"


def unpermute_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's Q/K row permutation (interleaved RoPE pairs -> half-split)."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _fit_llama3_scaling(config: ModelConfig, factors: torch.Tensor, meta: dict[str, Any], path: Path) -> RopeScaling:
    """GGUF stores Llama 3 rope scaling as per-frequency factors; recover its parameters."""
    original = int(meta.get("llama.rope.scaling.original_context_length") or 8192)
    candidate = RopeScaling(float(factors.max()), 1.0, 4.0, original)
    base = rope_frequencies(config.head_dim, config.rope_theta, None)
    scaled = rope_frequencies(config.head_dim, config.rope_theta, candidate)
    if not torch.allclose((base / scaled).float(), factors.float(), rtol=1e-3):
        raise UnsupportedModelError(f"{path}: rope_freqs do not match Llama 3 rope scaling")
    return candidate


# GGML block types that stay quantized in memory (engine.quant_linear formats).
KEPT_QUANTIZED = {GGMLType.Q4_0: "q4_0", GGMLType.Q4_1: "q4_1", GGMLType.Q8_0: "q8_0"}


def load_gguf(path: Path, *, keep_quantized: bool = False) -> tuple[ModelConfig, Weights, dict[str, Any]]:
    """Config, engine-named tensors and metadata of a GGUF file.

    With `keep_quantized`, Q4_0/Q4_1/Q8_0 matrices stay as their GGML blocks
    (QTensors over the memory map) instead of being dequantized to float32.
    """
    gguf = GGUFFile(path)
    meta = gguf.metadata
    config = _config_of(gguf, path)

    def info(name: str):
        if name not in gguf.tensors:
            raise ModelFormatError(f"{path}: lacks tensor {name!r}")
        return gguf.tensors[name]

    def take(name: str) -> torch.Tensor:
        info(name)
        return gguf.dequantize(name)

    def matrix(name: str, heads: int | None = None) -> torch.Tensor | QTensor:
        """A weight matrix, quantized if it is stored in a kept block type; Q/K rows un-permuted."""
        t = info(name)
        fmt = KEPT_QUANTIZED.get(t.type)
        if keep_quantized and fmt is not None:
            n, k = t.shape
            q = QTensor(gguf.raw(t).reshape(n, -1), fmt, (n, k))
            return q.rows(unpermute_rows(torch.arange(n), heads)) if heads else q
        w = take(name)
        return unpermute_rows(w, heads) if heads else w

    def fused(parts: list[tuple[str, int | None]]) -> torch.Tensor | QTensor:
        """Matrices stacked along the output dimension (q/k/v, gate/up). Blocks of one kept format
        are read from the file straight into the fused tensor: the fused copy is the only one, no
        mapped page of its sources stays resident (the copy a checkpoint by `tandem quantize`, which
        stores them fused, does not need)."""
        infos = [info(name) for name, _ in parts]
        fmts = {KEPT_QUANTIZED.get(t.type) for t in infos}
        fmt = next(iter(fmts))
        if not keep_quantized or len(fmts) != 1 or fmt is None or len({t.shape[1] for t in infos}) != 1:
            return fuse([matrix(name, heads) for name, heads in parts])
        rows = sum(t.shape[0] for t in infos)
        data = torch.empty(rows, infos[0].nbytes // infos[0].shape[0], dtype=torch.uint8)
        start = 0
        for t, (_, heads) in zip(infos, parts):
            dest = data[start : start + t.shape[0]]
            if heads:
                stored = torch.empty_like(dest)
                gguf.read_into(t, stored)
                torch.index_select(stored, 0, unpermute_rows(torch.arange(t.shape[0]), heads), out=dest)
            else:
                gguf.read_into(t, dest)
            start += t.shape[0]
        return QTensor(data, fmt, (rows, infos[0].shape[1]))

    out: Weights = {"tok_embeddings.weight": matrix("token_embd.weight"), "norm.weight": take("output_norm.weight")}
    if not config.tie_embeddings:
        out["output.weight"] = matrix("output.weight")
    for i in range(config.n_layers):
        b, q = f"blk.{i}.", f"layers.{i}."
        out[q + "attention.wqkv.weight"] = fused([
            (b + "attn_q.weight", config.n_heads), (b + "attn_k.weight", config.n_kv_heads),
            (b + "attn_v.weight", None),
        ])
        out[q + "attention.wo.weight"] = matrix(b + "attn_output.weight")
        out[q + "feed_forward.w13.weight"] = fused([(b + "ffn_gate.weight", None), (b + "ffn_up.weight", None)])
        out[q + "feed_forward.w2.weight"] = matrix(b + "ffn_down.weight")
        out[q + "attention_norm.weight"] = take(b + "attn_norm.weight")
        out[q + "ffn_norm.weight"] = take(b + "ffn_norm.weight")
    return config, out, meta


def _config_of(gguf: GGUFFile, path: Path) -> ModelConfig:
    config = read_config(gguf.metadata, set(gguf.tensors), path)
    if "rope_freqs.weight" in gguf.tensors:
        scaling = _fit_llama3_scaling(config, gguf.dequantize("rope_freqs.weight"), gguf.metadata, path)
        config = dataclasses.replace(config, rope_scaling=scaling)
    return config


def gguf_fingerprint(path: Path) -> tuple[ModelConfig, ModelFingerprint]:
    """The config and fingerprint of a GGUF model from its metadata and norms alone (no matrix is read): what a
    gateway in front of an engine serving that file needs to accept KV caches made for it."""
    gguf = GGUFFile(path)
    config = _config_of(gguf, path)
    norms = {"norm.weight": gguf.dequantize("output_norm.weight")}
    for i in range(config.n_layers):
        norms[f"layers.{i}.attention_norm.weight"] = gguf.dequantize(f"blk.{i}.attn_norm.weight")
        norms[f"layers.{i}.ffn_norm.weight"] = gguf.dequantize(f"blk.{i}.ffn_norm.weight")
    return config, ModelFingerprint(architecture_hash(config), weights_family_of(norms), file_type(gguf.metadata))


def fuse(parts: list[torch.Tensor | QTensor]) -> torch.Tensor | QTensor:
    """Stack matrices along the output dimension. Mixed block types (llama.cpp keeps some
    tensors at higher precision) are brought to the widest of them; floats stay floats."""
    if not any(isinstance(p, QTensor) for p in parts):
        return torch.cat(parts)
    fmts = {p.fmt if isinstance(p, QTensor) else "f" for p in parts}
    if fmts == {next(iter(fmts))}:
        return concat(parts)
    if "f" in fmts:
        return torch.cat([p.dequantize() if isinstance(p, QTensor) else p for p in parts])
    widest = max(fmts, key=BLOCK_BYTES.get)  # bytes per block order the formats by precision
    return concat([p if p.fmt == widest else quantize(p.dequantize(), widest) for p in parts])
