"""Write any checkpoint the engine reads as a Hugging Face folder that serving engines load.

vLLM and SGLang load Hugging Face folders (config.json, tokenizer.json,
*.safetensors), not Tandem's GGUF or quantized folders. This is the inverse of
engine.hf_loader: the engine's fused q/k/v and gate/up matrices are split
back into Llama's own names, quantized blocks are dequantized to float32 (the
same weights Tandem's full-precision tier runs), and the tokenizer is written
as tokenizer.json with a tokenizer_config.json that names the plain fast
tokenizer class, so `transformers.AutoTokenizer` keeps its byte-level BPE as
it is (a Llama tokenizer class would rebuild it as SentencePiece).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.config import ModelConfig
from engine.quantize import Weights, dequantize_weights, readable_by_all
from engine.tokenizer import Tokenizer

WEIGHTS_FILE = "model.safetensors"


def to_hf_names(weights: Weights, config: ModelConfig) -> dict[str, torch.Tensor]:
    """Engine-named tensors (quantized or not) -> Llama's Hugging Face names in float32, contiguous."""
    w = dequantize_weights(weights)
    q, kv = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    out = {"model.embed_tokens.weight": w["tok_embeddings.weight"], "model.norm.weight": w["norm.weight"]}
    if not config.tie_embeddings:
        out["lm_head.weight"] = w["output.weight"]
    for i in range(config.n_layers):
        e, h = f"layers.{i}.", f"model.layers.{i}."
        wq, wk, wv = torch.split(w[e + "attention.wqkv.weight"], [q, kv, kv])  # [q + 2 kv, dim]
        gate, up = torch.split(w[e + "feed_forward.w13.weight"], config.ffn_dim)  # [2 ffn, dim]
        out.update({
            h + "self_attn.q_proj.weight": wq, h + "self_attn.k_proj.weight": wk, h + "self_attn.v_proj.weight": wv,
            h + "self_attn.o_proj.weight": w[e + "attention.wo.weight"],
            h + "mlp.gate_proj.weight": gate, h + "mlp.up_proj.weight": up,
            h + "mlp.down_proj.weight": w[e + "feed_forward.w2.weight"],
            h + "input_layernorm.weight": w[e + "attention_norm.weight"],
            h + "post_attention_layernorm.weight": w[e + "ffn_norm.weight"],
        })
    return {name: t.float().contiguous() for name, t in out.items()}


def save_hf_folder(folder: Path, config: ModelConfig, weights: Weights, tokenizer: Tokenizer) -> Path:
    """config.json (with the tokenizer's BOS and end-of-turn IDs), model.safetensors in float32, tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(to_hf_names(weights, config), str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    readable_by_all(folder / WEIGHTS_FILE)
    hf = config.to_hf()
    if tokenizer.bos_id is not None:
        hf["bos_token_id"] = tokenizer.bos_id
    if tokenizer.stop_ids:
        hf["eos_token_id"] = tokenizer.stop_ids[0] if len(tokenizer.stop_ids) == 1 else tokenizer.stop_ids
    (folder / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    tokenizer.save(folder)
    cfg_path = folder / "tokenizer_config.json"
    if cfg_path.is_file():  # a tokenizer.json: say which class reads it, and its end-of-turn token
        cfg = json.loads(cfg_path.read_text())
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        if tokenizer.stop_ids:
            cfg["eos_token"] = tokenizer.decode([tokenizer.stop_ids[0]])
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    return folder
