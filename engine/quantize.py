"""Quantization recipes for the device tier, and quantized checkpoints on disk.

    int8   linear layers, embeddings and output int8 in groups of 32 with an fp16
           scale (q8_0, 8.5 bits)
    q4     linear layers 4-bit in groups of 32 with a zero point (q4_1); embeddings
           and output q8_0

Why groups for int8: one scale per output channel (format i8) cost +2.0 %
perplexity on held-out text against +0.35 % for groups of 32, at the same speed
(benchmarks/quality.py on SmolLM2; its reference is itself on a 4-bit grid whose
block scales vary along a row, which per-channel scales cannot follow). The
embeddings and output follow the same rule: with them per channel, `tandem
quantize smollm2-135m` halved the logit margins the router reads and flipped
near-ties into nonsense ("L'Étoile, la Marseillaise, ..." for the capital of
France), while the file's own q8_0 blocks answer "Paris".

A tensor already stored in the recipe's format (a GGUF's Q4_1 or Q8_0 blocks)
is kept as it is: quantizing it again can only lose precision.

Kernels were chosen by measurement (benchmarks/kernels.py, 2 threads, one
decode token, weight GB/s for SmolLM2's / Llama-3.2-1B's w13). On a 2-core
AMD EPYC (Zen 4) VM, read bandwidth 46.5 GB/s in the same run: Tandem's i8
37.9 / 41.9, q8_0 37.9 / 42.8, q4_1 28.9 / 36.9; fbgemm's dynamic int8
30.1 / 40.5; torch's int4pack (bf16 activations, its own packing) 28.2 / 42.9;
fp32 matmul 15.8 / 21.0 (those figures predate the repacked 4-bit layout).
Tandem's kernels store GGUF blocks as they are and rewrite the Q4/Q8 ones in
place at load into the layout their dot products stream (same bytes; see
quant_linear.repack), and they are what the native decode step
(kernels/decode_step.cpp) calls.

A checkpoint written by `tandem quantize` is a Hugging Face-style
folder (config.json, tokenizer, model.safetensors) whose safetensors metadata
names the recipe and each tensor's format; it loads by memory map.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from engine.config import ModelConfig
from engine.errors import ModelFormatError
from engine.quant_linear import BLOCK_BYTES, FORMATS, GROUP, QTensor, Weights, quantize
from engine.recipes import DEVICE_RECIPE, PRECISIONS, RECIPES  # noqa: F401 (the runtime imports them from here)
from engine.tokenizer import Tokenizer

RECIPE_KEY = "tandem.recipe"
FORMATS_KEY = "tandem.formats"
WEIGHTS_FILE = "model.safetensors"


def role(name: str) -> str | None:
    """Which part of a recipe a tensor follows, or None when it stays in float (norms)."""
    if name == "tok_embeddings.weight":
        return "embedding"
    if name == "output.weight":
        return "output"
    if name.endswith((".wqkv.weight", ".wo.weight", ".w13.weight", ".w2.weight")):
        return "linear"
    return None


def quantize_weights(
    weights: Weights, recipe: str, *, progress: Callable[[Iterable], Iterable] = lambda it: it
) -> Weights:
    """Weights -> the recipe's formats, one tensor at a time. A tensor already in its
    format is kept; other quantized ones are dequantized first."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown quantization recipe {recipe!r}; known: {', '.join(RECIPES)}")
    formats = RECIPES[recipe]
    out: Weights = {}
    for name in progress(list(weights)):
        value = weights[name]
        part = role(name)
        if part is None:
            out[name] = value
            continue
        if isinstance(value, QTensor):
            if value.fmt == formats[part]:
                out[name] = value
                continue
            value = value.dequantize()
        if value.dim() != 2 or value.shape[1] % GROUP:
            raise ModelFormatError(f"{name} of shape {tuple(value.shape)} cannot be quantized in groups of {GROUP}")
        out[name] = quantize(value.float(), formats[part])
    return out


def dequantize_weights(weights: Weights) -> dict[str, torch.Tensor]:
    """Every quantized tensor back to float32 (the full-precision twin of a quantized model)."""
    return {name: v.dequantize() if isinstance(v, QTensor) else v for name, v in weights.items()}


def save_quantized(folder: Path, config: ModelConfig, weights: Weights, tokenizer: Tokenizer, recipe: str) -> Path:
    """Write a quantized checkpoint folder that `LocalModel.load` maps back without copying."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    formats: dict[str, str] = {}
    for name, value in weights.items():
        if name == "output.weight" and config.tie_embeddings:
            continue
        if isinstance(value, QTensor):
            formats[name] = value.fmt
            tensors[name] = value.data.contiguous()
            if value.scales is not None:
                tensors[name.removesuffix(".weight") + ".scales"] = value.scales.contiguous()
        else:
            tensors[name] = value.contiguous()
    metadata = {RECIPE_KEY: recipe, FORMATS_KEY: json.dumps(formats, sort_keys=True)}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata=metadata)
    readable_by_all(folder / WEIGHTS_FILE)
    (folder / "config.json").write_text(json.dumps(config.to_hf(), indent=2) + "\n")
    tokenizer.save(folder)
    return folder


def readable_by_all(path: Path) -> None:
    """safetensors writes through a private temporary file (mode 0600); give the file the
    mode every other file gets (0666 less the umask), so a service account can read it."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def is_quantized_folder(folder: Path) -> bool:
    path = folder / WEIGHTS_FILE
    if not (folder.is_dir() and path.is_file()):
        return False
    try:
        with safe_open(path, framework="pt") as f:
            return RECIPE_KEY in (f.metadata() or {})
    except (SafetensorError, OSError):
        return False


def load_quantized(folder: Path, config: ModelConfig) -> tuple[Weights, str]:
    """Engine-named weights (QTensors over the memory-mapped file) and the recipe name."""
    path = folder / WEIGHTS_FILE
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            raw = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise ModelFormatError(f"{path} is not a readable safetensors file: {exc}") from exc
    try:
        recipe = meta[RECIPE_KEY]
        formats: dict[str, str] = json.loads(meta[FORMATS_KEY])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path}: quantization metadata is missing or corrupt: {exc}") from exc
    weights: Weights = {}
    for name, tensor in raw.items():
        if name.endswith(".scales"):
            continue
        fmt = formats.get(name)
        if fmt is None:
            weights[name] = tensor
            continue
        if fmt not in FORMATS:
            raise ModelFormatError(f"{path}: tensor {name} has unknown format {fmt!r}")
        scales = raw.get(name.removesuffix(".weight") + ".scales")
        k = tensor.shape[1] // BLOCK_BYTES[fmt] * GROUP
        try:
            weights[name] = QTensor(tensor, fmt, (tensor.shape[0], k), scales)
        except ValueError as exc:
            raise ModelFormatError(f"{path}: tensor {name}: {exc}") from exc
    if config.tie_embeddings and "tok_embeddings.weight" in weights:
        weights["output.weight"] = weights["tok_embeddings.weight"]
    return weights, recipe
