"""What the gateway needs of an engine: its facts, generation from token IDs, optional KV import.

The servicer (cloud.servicer) is written against `Backend` only: it keeps the
wire contract, auth, limits, admission and metrics, and a backend runs the
model, the built-in torch engine (cloud.backends.torch_engine) or a serving
engine over HTTP (cloud.backends.llama_server). A backend that cannot import a
KV cache says so in `Capabilities`; the servicer then answers the KV hand-off
RPCs UNIMPLEMENTED and Info tells the SDK to send token IDs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Iterator

from cloud.contract import GenerationPlan
from engine.fingerprint import ModelFingerprint
from engine.runtime import StreamEvent
from engine.tokenizer import Tokenizer

ENTROPY_EXACT = "exact"
ENTROPY_TOP_K = "top_k_estimate"  # entropy over the engine's top-k probabilities plus the rest as one bucket


@dataclass(frozen=True)
class Capabilities:
    """What this backend offers beyond generation from token IDs (reported in Info)."""

    engine: str                      # "torch" | "llama-server" | ...
    kv_import: bool = False          # UploadKV / ResumeFromKV
    kv_export: bool = False          # PrefillKV
    entropy: str = ENTROPY_EXACT     # how TokenChunk.entropies are computed
    top_k: int = 0                   # alternatives the engine reports per token (0: the full distribution)


@dataclass(frozen=True)
class BackendFacts:
    """The served model as the gateway reports it; the tokenizer is the gateway's own."""

    tokenizer: Tokenizer
    max_context: int
    vocab_size: int
    fingerprint: ModelFingerprint | None  # None: the engine's weights cannot be fingerprinted here
    default_model_id: str


class Generation(ABC):
    """One request's token stream. `cached_tokens` (prompt positions not computed again) is valid once
    the first event came or the stream ended; `finish_reason` is set when the engine ended the stream
    after its last token was sent (no event can carry it then); `close` always runs (it may keep a
    session's cache, or abort the engine's request)."""

    cached_tokens: int = 0
    finish_reason: str | None = None

    @abstractmethod
    def __iter__(self) -> Iterator[StreamEvent]: ...

    def close(self) -> None:
        """Release what the stream holds (an engine request, a cache)."""


class Backend(ABC):
    facts: BackendFacts
    capabilities: Capabilities

    @abstractmethod
    def generate(self, plan: GenerationPlan, *, principal: str, should_stop: Callable[[], bool],
                 seed: object | None = None) -> Generation:
        """Decode after `plan.token_ids`. The stream ends early, without a finish reason, once
        `should_stop()` is true (checked between prefill chunks and tokens). `seed` is what
        `kv.take` returned, for backends with KV import."""

    def cache_stats(self) -> tuple[int, int]:
        """(bytes, sessions) of the per-session caches the gateway itself holds."""
        return 0, 0

    def close(self) -> None:
        """Drop every cache (the server is stopping); nothing here must survive a restart."""
