"""Read Hugging Face checkpoint folders (config.json + one or sharded *.safetensors).

A folder laid out like meta-llama/Llama-3.2-1B-Instruct loads as is. Tensors are
mapped to the engine's names here, at load time, so `model.py` never sees HF names.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from engine.config import ModelConfig
from engine.errors import ModelFormatError

INDEX_FILE = "model.safetensors.index.json"


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def read_config(folder: Path) -> ModelConfig:
    try:
        raw = json.loads((folder / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{folder / 'config.json'} is not valid JSON: {exc}") from exc
    try:
        return ModelConfig.from_hf(raw)
    except KeyError as exc:
        raise ModelFormatError(f"{folder / 'config.json'} lacks the field {exc.args[0]!r}") from exc


def safetensors_files(folder: Path) -> list[Path]:
    """The weight files of a folder: those named by the shard index, else every *.safetensors."""
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise ModelFormatError(f"{index} is not a valid shard index: {exc}") from exc
        files = [folder / name for name in sorted(set(weight_map.values()))]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ModelFormatError(f"shards named in {index} are missing: {', '.join(missing)}")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelFormatError(f"{folder} has a config.json but no *.safetensors weights")
    return files


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's safetensors files, by its HF name (memory-mapped)."""
    tensors: dict[str, torch.Tensor] = {}
    for path in safetensors_files(folder):
        try:
            with safe_open(path, framework="pt") as f:
                for name in f.keys():
                    tensors[name] = f.get_tensor(name)
        except (SafetensorError, OSError) as exc:
            raise ModelFormatError(f"{path} is not a readable safetensors file: {exc}") from exc
    return tensors


def to_engine_names(hf: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Map HF Llama tensor names to the engine's, fusing q/k/v and gate/up."""

    def take(name: str) -> torch.Tensor:
        try:
            return hf[name]
        except KeyError:
            raise ModelFormatError(f"checkpoint lacks tensor {name!r}") from None

    out = {
        "tok_embeddings.weight": take("model.embed_tokens.weight"),
        "norm.weight": take("model.norm.weight"),
    }
    if not config.tie_embeddings:
        out["output.weight"] = take("lm_head.weight")
    for i in range(config.n_layers):
        p = f"model.layers.{i}."
        q = f"layers.{i}."
        out[q + "attention.wqkv.weight"] = torch.cat(
            [take(p + f"self_attn.{n}_proj.weight") for n in ("q", "k", "v")]
        )
        out[q + "attention.wo.weight"] = take(p + "self_attn.o_proj.weight")
        out[q + "feed_forward.w13.weight"] = torch.cat(
            [take(p + "mlp.gate_proj.weight"), take(p + "mlp.up_proj.weight")]
        )
        out[q + "feed_forward.w2.weight"] = take(p + "mlp.down_proj.weight")
        out[q + "attention_norm.weight"] = take(p + "input_layernorm.weight")
        out[q + "ffn_norm.weight"] = take(p + "post_attention_layernorm.weight")
    return out


def load_hf_folder(folder: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    config = read_config(folder)
    return config, to_engine_names(read_tensors(folder), config)
