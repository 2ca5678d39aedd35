"""Model fingerprints: may one tier's KV cache seed another tier's model?

A cache is reusable only between models with the same architecture (layers,
heads, head dim, RoPE) and the same weights family. The family is a hash of the
RMSNorm weights rounded to bf16: no quantization recipe touches the norms, so a
4-bit edge model and its full-precision cloud twin share a family while
unrelated checkpoints of the same shape do not. The quantization recipe is
recorded beside it, for the policy to weigh (bit-identical weights are not
required, measured agreement is).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Mapping

import torch

from engine.config import ModelConfig


@dataclass(frozen=True)
class ModelFingerprint:
    architecture: str
    weights_family: str
    quantization: str

    def kv_compatible(self, other: "ModelFingerprint") -> bool:
        return self.architecture == other.architecture and self.weights_family == other.weights_family

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.architecture}/{self.weights_family}/{self.quantization}"


def architecture_hash(config: ModelConfig) -> str:
    fields = {
        "n_layers": config.n_layers, "n_heads": config.n_heads, "n_kv_heads": config.n_kv_heads,
        "head_dim": config.head_dim, "dim": config.dim, "vocab_size": config.vocab_size,
        "rope_theta": config.rope_theta,
        "rope_scaling": asdict(config.rope_scaling) if config.rope_scaling else None,
    }
    return "arch-" + hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def weights_family_hash(model: torch.nn.Module) -> str:
    return weights_family_of(model.state_dict())


def weights_family_of(tensors: Mapping[str, torch.Tensor]) -> str:
    """The family hash of engine-named tensors (only the norms count; others may be left out)."""
    h = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        if name.endswith("norm.weight"):
            h.update(name.encode())
            h.update(tensor.detach().to(torch.bfloat16).view(torch.int16).cpu().numpy().tobytes())
    return "fam-" + h.hexdigest()[:16]


def fingerprint(config: ModelConfig, model: torch.nn.Module, quantization: str) -> ModelFingerprint:
    return ModelFingerprint(architecture_hash(config), weights_family_hash(model), quantization)
