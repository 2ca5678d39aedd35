"""Read any supported checkpoint into engine-named weights, without building a model.

One place knows the formats: a quantized folder written by `tandem quantize`, a
Hugging Face folder, or a GGUF file. `LocalModel.load` builds a model from what
this returns; `tandem quantize` rewrites it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine import gguf_loader, hf_loader
from engine.config import ModelConfig
from engine.errors import ModelFormatError
from engine.quantize import Weights, is_quantized_folder, load_quantized
from engine.registry import resolve
from engine.tokenizer import Tokenizer, load_gguf_tokenizer, load_tokenizer


@dataclass
class Checkpoint:
    path: Path
    config: ModelConfig
    weights: Weights
    tokenizer: Tokenizer
    quantization: str  # "none", a recipe name ("q4", "int8") or a GGUF file type ("gguf-q4_1")


def read_checkpoint(
    name_or_path: str | Path, *, tokenizer: str | Path | None = None, keep_quantized: bool = True
) -> Checkpoint:
    """Config, weights and tokenizer of a short name or path.

    GGUF blocks stay quantized only with `keep_quantized`; a quantized folder's
    weights always come back quantized (memory-mapped QTensors).
    """
    path = resolve(name_or_path)
    if hf_loader.is_hf_folder(path) and is_quantized_folder(path):
        config = hf_loader.read_config(path)
        weights, quantization = load_quantized(path, config)
        tok = load_tokenizer(resolve(tokenizer) if tokenizer else path)
    elif hf_loader.is_hf_folder(path):
        config, weights = hf_loader.load_hf_folder(path)
        quantization = "none"
        tok = load_tokenizer(resolve(tokenizer) if tokenizer else path)
    elif gguf_loader.is_gguf_file(path):
        config, weights, meta = gguf_loader.load_gguf(path, keep_quantized=keep_quantized)
        tok = load_tokenizer(resolve(tokenizer)) if tokenizer else load_gguf_tokenizer(meta, str(path))
        quantization = gguf_loader.file_type(meta)
    elif path.is_dir():
        raise ModelFormatError(f"{path} is a folder without config.json; expected a Hugging Face checkpoint")
    else:
        raise ModelFormatError(f"{path} is neither a GGUF file nor a Hugging Face checkpoint folder")
    if tok.vocab_size > config.vocab_size:
        raise ModelFormatError(f"tokenizer has {tok.vocab_size} tokens but the model only {config.vocab_size}")
    return Checkpoint(path, config, weights, tok, quantization)
