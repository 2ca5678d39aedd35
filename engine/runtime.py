"""A loaded model ready to generate: weights, tokenizer and the text layer on top.

`LocalModel.load` accepts a short name (`smollm2-135m`), an HF checkpoint folder
or a GGUF file. This is what the CLI, the edge SDK and the cloud server share.
"""

from __future__ import annotations

import ctypes
import dataclasses
import sys
from collections.abc import Hashable
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch

from engine import packed_kv
from engine.chat import Message, render_chat
from engine.checkpoint import read_checkpoint
from engine.config import ModelConfig
from engine.decode_step import NativeDecodeStep
from engine.detokenize import Detokenizer
from engine.errors import ContextLengthError, ModelFormatError
from engine.fingerprint import ModelFingerprint, fingerprint
from engine.generate import GREEDY, Sampling, TokenInfo, generate_tokens
from engine.model import KVCache, Transformer
from engine.quant_linear import QTensor, repack, swap_modules
from engine.quantize import (
    DEVICE_RECIPE,
    PRECISIONS,
    RECIPES,
    Weights,
    dequantize_weights,
    quantize_weights,
)
from engine.recipes import KV_CACHES
from engine.tokenizer import Tokenizer
from engine.turns import DeviceTurns

DEFAULT_MAX_CONTEXT = 8192


def return_freed_heap() -> None:
    """Give the heap pages freed since the last call back to the OS. Loading stages weights
    in copies (read, concatenated, repacked) that glibc keeps after they are freed: 30 MiB
    of resident memory on a 135M model, 70-80 MiB on a 1B one. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # a libc without malloc_trim (musl)
        pass


@dataclass(frozen=True)
class StreamEvent:
    """One generated token and the text it released; `finish_reason` is set on the last."""

    token: TokenInfo
    text: str
    finish_reason: str | None = None  # "stop" | "length" | "stop_string"


def stream_events(
    tokens: Iterable[TokenInfo], tokenizer: Tokenizer, stop_strings: Sequence[str], max_new_tokens: int,
) -> Iterator[StreamEvent]:
    """Each token with the text it releases, ending at a stop token, a stop string or `max_new_tokens`
    (the last event says which): one place for the ends every engine, built-in or served, shares."""
    detok = Detokenizer(tokenizer, tuple(stop_strings))
    stops = set(tokenizer.stop_ids)
    for count, token in enumerate(tokens, start=1):
        if token.id in stops:
            yield StreamEvent(token, detok.flush(), "stop")
            return
        text = detok.push(token.id)
        if detok.stopped:
            yield StreamEvent(token, text, "stop_string")
            return
        if count == max_new_tokens:
            yield StreamEvent(token, text + detok.flush(), "length")
            return
        yield StreamEvent(token, text)


def build_transformer(config: ModelConfig, weights: Weights, dtype: torch.dtype) -> Transformer:
    """Instantiate without random init (meta device) and adopt the loaded tensors.

    Quantized tensors (QTensor) replace their layers by quantized modules; float
    tensors take `dtype`. A tied output shares the embedding's storage either way.
    """
    with torch.device("meta"):
        model = Transformer(config)
    weights = {k: v if isinstance(v, QTensor) else v.to(dtype) for k, v in weights.items()}
    if config.tie_embeddings:
        weights["output.weight"] = weights["tok_embeddings.weight"]
    try:
        state = swap_modules(model, weights)
        model.load_state_dict(state, strict=True, assign=True)
    except (RuntimeError, ValueError) as exc:
        raise ModelFormatError(f"weights do not fit the config: {exc}") from exc
    if config.tie_embeddings and not isinstance(weights["output.weight"], QTensor):
        model.output.weight = model.tok_embeddings.weight
    repack(model)
    model.decode_step = NativeDecodeStep.build(model)
    return model.eval()


@dataclass
class LocalModel:
    config: ModelConfig
    model: Transformer
    tokenizer: Tokenizer
    source: str
    max_context: int
    quantization: str = "none"
    kv_cache: str = "auto"
    turns: DeviceTurns = field(default_factory=DeviceTurns, repr=False, compare=False)  # shared by its requests

    @classmethod
    def load(
        cls,
        name_or_path: str | Path,
        *,
        tokenizer: str | Path | None = None,
        dtype: torch.dtype = torch.float32,
        max_context: int = DEFAULT_MAX_CONTEXT,
        precision: str = "stored",
        kv_cache: str = "auto",
    ) -> "LocalModel":
        """Load a model at a tier's precision: "stored" keeps what the file holds (GGUF
        blocks stay quantized), "full" dequantizes to `dtype` (the cloud tier), "device"
        keeps quantized weights and quantizes float ones with the q4 recipe (the edge
        tier), and a recipe name ("int8", "q4") quantizes whatever is stored. `kv_cache`
        is one of KV_CACHES."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if kv_cache not in KV_CACHES:
            raise ValueError(f"unknown KV cache type {kv_cache!r}; choose one of {', '.join(KV_CACHES)}")
        ckpt = read_checkpoint(name_or_path, tokenizer=tokenizer, keep_quantized=precision in ("stored", "device"))
        config, weights, tok, quantization = ckpt.config, ckpt.weights, ckpt.tokenizer, ckpt.quantization
        if precision == "full" and quantization.removeprefix("gguf-") in ("q4_0", "q4_1", "q8_0", *RECIPES):
            weights, quantization = dequantize_weights(weights), f"dequantized-{quantization}"
        elif precision == "device" and not any(isinstance(v, QTensor) for v in weights.values()):
            weights, quantization = quantize_weights(weights, DEVICE_RECIPE), DEVICE_RECIPE
        elif precision in RECIPES:
            weights, quantization = quantize_weights(weights, precision), precision
        context = min(config.max_seq_len, max_context)
        config = dataclasses.replace(config, max_seq_len=context)
        model = build_transformer(config, weights, dtype)
        path = str(ckpt.path)
        del ckpt, weights  # the staging copies: freed before the heap is trimmed
        return_freed_heap()
        return cls(config, model, tok, path, context, quantization, kv_cache)

    @cached_property
    def fingerprint(self) -> ModelFingerprint:
        return fingerprint(self.config, self.model, self.quantization)

    def encode_chat(self, messages: Sequence[Message]) -> list[int]:
        return render_chat(self.tokenizer, messages)

    def encode_prompt(self, prompt: str, *, chat: bool = True) -> list[int]:
        """A single user turn through the chat template, or raw text when `chat` is False."""
        if chat:
            return self.encode_chat([{"role": "user", "content": prompt}])
        return self.tokenizer.encode(prompt, bos=self.tokenizer.add_bos)

    @property
    def cache_dtype(self) -> torch.dtype:
        if self.kv_cache == "auto":
            native = self.model.decode_step is not None
            return torch.int8 if native else self.model.norm.weight.dtype
        return {"fp16": torch.float16, "fp32": torch.float32, "int8": torch.int8, "int4": torch.int8}[self.kv_cache]

    @property
    def packs_cache(self) -> bool:
        """Whether new caches keep 4-bit groups (KV_CACHES: "int4", or "auto" with 4-bit weights), where the
        native decode step runs and reads them."""
        wanted = self.kv_cache == "int4" or (self.kv_cache == "auto" and self.quantization != "int8")
        return (wanted and self.cache_dtype == torch.int8 and self.model.decode_step is not None
                and self.model.norm.weight.device.type == "cpu" and packed_kv.supported(self.config.head_dim))

    def new_cache(self, n_positions: int | None = None) -> KVCache:
        return KVCache(self.config, n_positions or self.max_context, dtype=self.cache_dtype,
                       device=self.model.norm.weight.device, packed=self.packs_cache)

    def check_length(self, n_prompt: int, max_new_tokens: int) -> None:
        if n_prompt == 0:
            raise ValueError("prompt is empty")
        if n_prompt + max_new_tokens > self.max_context:
            raise ContextLengthError(n_prompt + max_new_tokens, self.max_context, "prompt plus max_new_tokens")

    def stream(
        self,
        prompt_ids: list[int],
        *,
        max_new_tokens: int = 256,
        sampling: Sampling = GREEDY,
        stop_strings: tuple[str, ...] = (),
        cache: KVCache | None = None,
        hidden_tokens: int = 0,
        caller: Hashable | None = None,
    ) -> Iterator[StreamEvent]:
        """Generate after `prompt_ids`, yielding each token with the text it releases
        (the first `hidden_tokens` with the hidden state a learned judge reads). Concurrent
        streams share the device fairly between callers (engine/turns.py): `caller` names
        whose request this is (an API key, a user); None counts the stream as a caller of its own."""
        self.check_length(len(prompt_ids) + (cache.pos if cache else 0), max_new_tokens)
        cache = cache or self.new_cache(len(prompt_ids) + max_new_tokens)
        tokens = generate_tokens(
            self.model, cache, prompt_ids, max_new_tokens=max_new_tokens, sampling=sampling,
            stop_ids=set(self.tokenizer.stop_ids), hidden_tokens=hidden_tokens,
            turn=partial(self.turns.turn, object() if caller is None else caller),
        )
        yield from stream_events(tokens, self.tokenizer, stop_strings, max_new_tokens)
