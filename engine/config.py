"""Model arguments: one config type for Hugging Face folders and GGUF files alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from engine.errors import UnsupportedModelError


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3.x frequency-dependent RoPE scaling (rope_type "llama3")."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    max_seq_len: int = 2048
    tie_embeddings: bool = False
    head_dim: int = field(default=0)

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        problems = []
        if self.n_heads <= 0 or self.n_kv_heads <= 0 or self.n_heads % self.n_kv_heads:
            problems.append(f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            problems.append(f"head_dim={self.head_dim} must be even for RoPE")
        if min(self.vocab_size, self.dim, self.n_layers, self.ffn_dim, self.max_seq_len) <= 0:
            problems.append("vocab_size, dim, n_layers, ffn_dim and max_seq_len must be positive")
        if problems:
            raise UnsupportedModelError("model config cannot run: " + "; ".join(problems))

    @classmethod
    def from_name(cls, name: str) -> "ModelConfig":
        if name not in transformer_configs:
            raise ValueError(f"unknown config {name!r}; known: {', '.join(sorted(transformer_configs))}")
        return cls(**transformer_configs[name])

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> "ModelConfig":
        """Map a Hugging Face `config.json` (LlamaForCausalLM) to a ModelConfig."""
        arch = cfg.get("model_type")
        if arch != "llama":
            raise UnsupportedModelError(
                f"config.json has model_type={arch!r}; this engine runs Llama-architecture models ('llama')"
            )
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise UnsupportedModelError(f"hidden_act={act!r} is not supported (only 'silu', i.e. SwiGLU)")
        for flag in ("attention_bias", "mlp_bias"):
            if cfg.get(flag):
                raise UnsupportedModelError(f"{flag}=true is not supported (Llama has no biases)")
        n_heads = cfg["num_attention_heads"]
        return cls(
            vocab_size=cfg["vocab_size"],
            dim=cfg["hidden_size"],
            n_layers=cfg["num_hidden_layers"],
            n_heads=n_heads,
            n_kv_heads=cfg.get("num_key_value_heads") or n_heads,
            ffn_dim=cfg["intermediate_size"],
            norm_eps=cfg.get("rms_norm_eps", 1e-5),
            rope_theta=cfg.get("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)),
            rope_scaling=_rope_scaling_from_hf(cfg.get("rope_scaling") or cfg.get("rope_parameters")),
            max_seq_len=cfg.get("max_position_embeddings", 2048),
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // n_heads,
        )

    def to_hf(self) -> dict[str, Any]:
        """The config.json a Hugging Face LlamaForCausalLM needs for these weights."""
        out: dict[str, Any] = {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "intermediate_size": self.ffn_dim,
            "rms_norm_eps": self.norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_seq_len,
            "tie_word_embeddings": self.tie_embeddings,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "attention_bias": False,
            "mlp_bias": False,
            "torch_dtype": "float32",
        }
        if self.rope_scaling is not None:
            out["rope_scaling"] = {"rope_type": "llama3", **asdict(self.rope_scaling)}
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rope_scaling_from_hf(raw: dict[str, Any] | None) -> RopeScaling | None:
    if not raw:
        return None
    kind = raw.get("rope_type", raw.get("type", "default"))
    if kind == "default":
        return None
    if kind != "llama3":
        raise UnsupportedModelError(f"rope_scaling type {kind!r} is not supported (supported: default, llama3)")
    return RopeScaling(
        factor=float(raw["factor"]),
        low_freq_factor=float(raw["low_freq_factor"]),
        high_freq_factor=float(raw["high_freq_factor"]),
        original_max_position_embeddings=int(raw["original_max_position_embeddings"]),
    )


_LLAMA3_ROPE = {"rope_theta": 500000.0, "rope_scaling": RopeScaling(32.0, 1.0, 4.0, 8192)}

transformer_configs: dict[str, dict[str, Any]] = {
    # Tiny shapes for tests: GQA, odd sizes.
    "tiny": dict(vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=160, max_seq_len=256),
    "smollm2-135m": dict(
        vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3, ffn_dim=1536,
        rope_theta=100000.0, max_seq_len=8192, tie_embeddings=True,
    ),
    "llama-3.2-1b": dict(
        vocab_size=128256, dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn_dim=8192,
        max_seq_len=131072, tie_embeddings=True, head_dim=64, **_LLAMA3_ROPE,
    ),
    "llama-3.2-3b": dict(
        vocab_size=128256, dim=3072, n_layers=28, n_heads=24, n_kv_heads=8, ffn_dim=8192,
        max_seq_len=131072, tie_embeddings=True, head_dim=128, **_LLAMA3_ROPE,
    ),
    "llama-3.1-8b": dict(
        vocab_size=128256, dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_dim=14336,
        max_seq_len=131072, tie_embeddings=False, head_dim=128,
        rope_theta=500000.0, rope_scaling=RopeScaling(8.0, 1.0, 4.0, 8192),
    ),
}
