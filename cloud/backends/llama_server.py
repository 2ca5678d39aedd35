"""A backend on llama.cpp's llama-server: token IDs in, token IDs and their probabilities out.

Each request is one streamed POST /completion whose `prompt` is the token IDs
(never text), with `return_tokens` (the IDs of each chunk) and `n_probs` (the
engine's top-k, from the model's temperature-1 distribution before sampling,
over the whole vocabulary: the chosen token's log-prob is exact). The text
layer, stops and failures are cloud.backends.http_engine's.

llama-server sends no chunk for a token that leaves an incomplete UTF-8
character (the first bytes of an emoji or a CJK character); the next chunk
carries the text of all of them and a `tokens_predicted` count higher than the
tokens seen. Such tokens are recovered from that text and the gateway's
vocabulary (the entries whose bytes make exactly the missing bytes) and carry
the signals of the token that completed the character.

`cache_prompt` is asked only for requests with a session id (a conversation's
next turn reuses the slot's prefix), and only while one caller (principal) has
used the engine: its prompt cache is shared by every caller, so with two a
prefill's time would tell one whether the other sent a prompt it guesses (a
right guess took 53 ms, a wrong one 5,868 ms). From the second caller on it is
off for good (vLLM and SGLang salt their caches per caller instead).
`cached_prompt_tokens` stays 0 for the same reason (a resume from the caller's
own upload reports what it reused).

With a slot directory shared with the engine, KV import is on: uploads are
restored into the engine's slots (cloud.backends.llama_slots).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from cloud.backends.base import ENTROPY_TOP_K, BackendFacts, Capabilities, Generation
from cloud.backends.http_engine import (
    DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S, DEFAULT_TOP_K, EngineUnavailableError, HTTPEngineBackend,
    HTTPGeneration, NotReady, token_info, top_k_entropy,
)
from cloud.backends.llama_slot_file import CACHE_TYPES
from cloud.backends.llama_slots import LlamaSlotKV, Seed, ServedModel, probe_format
from cloud.config import ServerConfig
from cloud.contract import GenerationPlan
from engine.generate import TokenInfo
from engine.tokenizer import Tokenizer

log = logging.getLogger(__name__)

__all__ = ["EngineUnavailableError", "LlamaServerBackend", "top_k_entropy"]


class LlamaServerBackend(HTTPEngineBackend):
    engine_name = "llama-server"

    def __init__(
        self,
        url: str,
        tokenizer: Tokenizer,
        *,
        max_context: int | None = None,
        top_k: int = DEFAULT_TOP_K,
        model_id: str | None = None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        start_wait_s: float = 0.0,
        max_connections: int = 64,
        slot_dir: Path | None = None,
        served_model: Path | None = None,
        kv_config: ServerConfig | None = None,
    ) -> None:
        """Connect to the engine at `url`, read its context size and verify its tokenizer against
        `tokenizer` (TokenizerMismatchError on a difference). The engine may still be loading its model:
        the gateway waits up to `start_wait_s` for it (EngineUnavailableError past it).

        With `slot_dir` (the engine's --slot-save-path, writable here) and `served_model` (the GGUF file the
        engine serves, read for its fingerprint only), KV import is on through slot restore; the engine is
        probed first and SlotHandoffError says why it cannot be."""
        super().__init__(url, tokenizer, top_k=top_k, connect_timeout_s=connect_timeout_s,
                         read_timeout_s=read_timeout_s, max_connections=max_connections)
        props, engine_context = self.start(self._props, start_wait_s, f"llama-server at {self.url}")
        self.slots = int(props.get("total_slots", 1))
        self._only_caller: str | None = None  # the one principal served so far
        self.shared = False  # a second principal has been served: the engine's prompt cache is off
        self._callers_lock = threading.Lock()
        engine_model = str(props.get("model_path", "")).replace("\\", "/").rsplit("/", 1)[-1]
        self.facts = BackendFacts(tokenizer=tokenizer, max_context=min(max_context or engine_context, engine_context),
                                  vocab_size=tokenizer.vocab_size, fingerprint=None,
                                  default_model_id=model_id or engine_model or "llama-server")
        self.kv: LlamaSlotKV | None = None
        if slot_dir is not None:
            try:
                self.kv = self._slot_kv(Path(slot_dir), served_model, kv_config or ServerConfig())
            except BaseException:
                self.close()
                raise
        self.capabilities = Capabilities(engine="llama-server", entropy=ENTROPY_TOP_K, top_k=top_k,
                                         kv_import=self.kv is not None)
        log.info("llama-server at %s: %d slots of %d positions, tokenizer verified", self.url, self.slots,
                 engine_context)

    def _slot_kv(self, slot_dir: Path, served_model: Path | None, config: ServerConfig) -> LlamaSlotKV:
        from engine.gguf_loader import gguf_fingerprint, is_gguf_file

        if served_model is None or not is_gguf_file(Path(served_model)):
            raise ValueError("the slot KV hand-off needs the GGUF file the engine serves (--model), for its "
                             "fingerprint and cache layout")
        model_config, fingerprint = gguf_fingerprint(Path(served_model))
        served = ServedModel(model_config, fingerprint, self.facts.max_context)
        self.facts = BackendFacts(tokenizer=self.facts.tokenizer, max_context=self.facts.max_context,
                                  vocab_size=self.facts.vocab_size, fingerprint=fingerprint,
                                  default_model_id=self.facts.default_model_id)
        fmt = probe_format(self, slot_dir, served, self.tokenizer.encode("Hi")[0])
        log.info("llama-server slot KV hand-off through %s: state version %d, %s cache, v_trans %d", slot_dir,
                 fmt.version, CACHE_TYPES[fmt.k_type][0], fmt.v_trans)
        return LlamaSlotKV(self, served, config, slot_dir, fmt)

    def _props(self) -> tuple[dict[str, Any], int]:
        """The engine's /props and context size once /health says it is ready (503 while it loads its model)."""
        health = self.client.get("/health")
        if health.status_code != 200:
            raise NotReady(f"/health answered {health.status_code}")
        reply = self.client.get("/props")
        reply.raise_for_status()
        props = reply.json()
        return props, int(props["default_generation_settings"]["n_ctx"])

    def tokenize(self, text: str) -> list[int]:
        """The engine's token IDs for `text` (special-token strings parsed, no BOS added)."""
        reply = self.client.post("/tokenize", json={"content": text, "add_special": False, "parse_special": True})
        reply.raise_for_status()
        return [int(t) for t in reply.json()["tokens"]]

    def generate(self, plan: GenerationPlan, *, principal: str, should_stop: Callable[[], bool],
                 seed: object | None = None) -> Generation:
        with self._callers_lock:
            if self._only_caller is None:
                self._only_caller = principal
            self.shared = self.shared or principal != self._only_caller
        return _LlamaGeneration(self, plan, should_stop, seed if isinstance(seed, Seed) else None)

    def cache_stats(self) -> tuple[int, int]:
        return (self.kv.store.nbytes, len(self.kv.store)) if self.kv is not None else (0, 0)

    def close(self) -> None:
        if self.kv is not None:
            self.kv.store.clear()
        super().close()

    def request_body(self, plan: GenerationPlan) -> dict[str, Any]:
        """The /completion request: token IDs, Tandem's sampling and none of llama.cpp's other samplers
        (penalties, min-p, typical, DRY, XTC off), so both engines sample the same distribution."""
        s = plan.sampling
        return {
            "prompt": plan.token_ids, "n_predict": plan.max_new_tokens, "stream": True, "return_tokens": True,
            "n_probs": self.top_k, "post_sampling_probs": False,
            # the engine's prefix cache, for a conversation's next turn, while no other caller can time it
            "cache_prompt": bool(plan.session_id) and not self.shared,
            "temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p,
            "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0, "presence_penalty": 0.0,
            "frequency_penalty": 0.0, "dry_multiplier": 0.0, "xtc_probability": 0.0,
            "samplers": ["top_k", "top_p", "temperature"],
            "seed": s.seed if s.seed is not None else -1,
        }


class _LlamaGeneration(HTTPGeneration):
    backend: LlamaServerBackend

    def __init__(self, backend: LlamaServerBackend, plan: GenerationPlan, should_stop: Callable[[], bool],
                 seed: Seed | None) -> None:
        super().__init__(backend, plan, should_stop)
        self.seed = seed
        self.slot: int | None = None           # the leased slot an upload was restored into
        self.timings: dict[str, Any] = {}      # the engine's, from its last event

    def request(self) -> tuple[str, dict[str, Any]]:
        body = self.backend.request_body(self.plan)
        if self.seed is not None and self.backend.kv is not None:
            self.slot = self.backend.kv.restore(self.seed, self.plan)
            if self.slot is not None:  # the engine finds the restored tokens and evaluates the rest only
                body.update(id_slot=self.slot, cache_prompt=True, timings_per_token=True)
                self.cached_tokens = self.seed.reused
        return "/completion", body

    def close(self) -> None:
        super().close()
        if self.slot is not None and self.backend.kv is not None:
            self.backend.kv.release(self.slot)
            self.slot = None

    def tokens_of(self, event: dict[str, Any]) -> Iterator[TokenInfo]:
        ids = [int(t) for t in event.get("tokens") or ()]
        probs = event.get("completion_probabilities") or ()
        missed = int(event.get("tokens_predicted", self.received + len(ids))) - self.received - len(ids)
        if ids and missed > 0:  # tokens the engine held back inside an incomplete UTF-8 character
            completing = self._info(ids[0], probs[0] if probs else None)
            for token_id in _recover(self.backend.tokenizer, event.get("content", ""), ids[0], missed):
                self.received += 1
                yield TokenInfo(token_id, completing.logprob, completing.entropy, completing.margin)
        for i, token_id in enumerate(ids):
            self.received += 1
            yield self._info(token_id, probs[i] if i < len(probs) else None)
        if event.get("timings"):
            self.timings = event["timings"]
        if event.get("stop"):
            self.engine_stop = "length" if event.get("stop_type") == "limit" else "stop"

    def _info(self, token_id: int, entry: dict[str, Any] | None) -> TokenInfo:
        if entry is None:  # no probabilities (n_probs 0): no uncertainty known
            return TokenInfo(token_id, 0.0, 0.0, 1.0)
        top = [(t["id"], t["logprob"]) for t in entry.get("top_logprobs") or ()]
        return token_info(token_id, entry["logprob"], top, self.backend.top_k)


def _recover(tokenizer: Tokenizer, content: str, current: int, missed: int) -> list[int]:
    """The `missed` token IDs before `current` whose bytes, with current's, make `content`.

    The split of those bytes into `missed` vocabulary entries is usually unique; where several fit,
    the one taking the longest entries first is chosen (as byte-level BPE merges would)."""
    data, tail = content.encode("utf-8"), tokenizer.piece(current)
    found = _splits(tokenizer, data[: len(data) - len(tail)], missed) if tail and data.endswith(tail) else []
    if not found:
        raise RuntimeError(f"llama-server skipped {missed} tokens inside a character that the gateway cannot "
                           f"recover (chunk text {content!r}, next token {current})")
    if len(found) > 1:
        log.debug("llama-server skipped %d tokens; %d splits of %r fit, took %s", missed, len(found), content,
                  found[0])
    return found[0]


def _splits(tokenizer: Tokenizer, data: bytes, parts: int, limit: int = 2) -> list[list[int]]:
    """Up to `limit` ways to cut `data` into exactly `parts` vocabulary entries, longest entries first."""
    if parts == 0:
        return [[]] if not data else []
    found: list[list[int]] = []
    for cut in range(len(data) - parts + 1, 0, -1):
        head = tokenizer.token_id(data[:cut])
        if head is None:
            continue
        for rest in _splits(tokenizer, data[cut:], parts - 1, limit - len(found)):
            found.append([head, *rest])
            if len(found) >= limit:
                return found
    return found
