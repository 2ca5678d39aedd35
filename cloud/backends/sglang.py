"""A backend on SGLang's native POST /generate: token IDs in, token IDs and their top-k log-probs out.

Each request sends `input_ids` (never text) with `return_logprob`,
`top_logprobs_num: k` and `logprob_start_len: -1` (output positions only);
each streamed chunk carries `output_ids` and `meta_info` with
`output_token_logprobs` and `output_top_logprobs` as [logprob, token_id, text]
triples, so nothing is re-tokenized on the way back. By default SGLang sends
each chunk with everything so far; started with `--incremental-streaming-output`
it sends only the new part. `meta_info.completion_tokens` (the count so far)
tells the new tokens apart in both modes: they are the last
`completion_tokens - received` entries.

Log-probs: at temperature 0 SGLang reports the model's own distribution; when
sampling, SGLang reports the distribution after temperature unless the server
runs with SGLANG_RETURN_ORIGINAL_LOGPROB=1 (then it is the model's own, like
Tandem's signals). The entropy is the top-k estimate of
cloud.backends.http_engine. `cache_salt` (a hash of the caller's principal)
keeps one tenant's prefix cache from answering another's. Closing the HTTP
stream aborts the request in SGLang. The server's facts (health, context
length, tokenizer check through its OpenAI-compatible /tokenize) are read as
for vLLM (cloud.backends.openai_compat).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from cloud.backends.base import Generation
from cloud.backends.http_engine import token_info, unavailable
from cloud.backends.openai_compat import CompletionGeneration, OpenAICompatBackend, cache_salt
from cloud.contract import GenerationPlan
from engine.generate import TokenInfo


class SGLangBackend(OpenAICompatBackend):
    engine_name = "sglang"

    def generate(self, plan: GenerationPlan, *, principal: str, should_stop: Callable[[], bool],
                 seed: object | None = None) -> Generation:
        return _SGLangGeneration(self, plan, should_stop, principal)

    def request_body(self, plan: GenerationPlan, principal: str) -> dict[str, Any]:
        """Token IDs, Tandem's sampling (no penalties, special tokens kept), top-k log-probs of the output
        positions, the tenant's cache salt."""
        s = plan.sampling
        sampling: dict[str, Any] = {
            "max_new_tokens": plan.max_new_tokens, "temperature": s.temperature, "top_p": s.top_p,
            "top_k": s.top_k or -1, "min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0,
            "frequency_penalty": 0.0, "skip_special_tokens": False,
        }
        if s.seed is not None:
            sampling["sampling_seed"] = s.seed
        return {
            "input_ids": plan.token_ids, "sampling_params": sampling, "stream": True, "return_logprob": True,
            "top_logprobs_num": self.top_k, "logprob_start_len": -1, "cache_salt": cache_salt(principal),
        }


class _SGLangGeneration(CompletionGeneration):
    backend: SGLangBackend
    path = "/generate"

    def tokens_of(self, event: dict[str, Any]) -> Iterator[TokenInfo]:
        meta = event.get("meta_info") or {}
        ids = event.get("output_ids") or []
        new = int(meta.get("completion_tokens", len(ids))) - self.received
        if new > len(ids):
            raise RuntimeError(f"sglang reported {self.received + new} tokens but sent {len(ids)} IDs in a chunk "
                               f"after {self.received}: neither its cumulative nor its incremental stream")
        chosen = _last(meta.get("output_token_logprobs"), new)
        tops = _last(meta.get("output_top_logprobs"), new)
        for i, token_id in enumerate(ids[len(ids) - new:] if new > 0 else ()):
            self.received += 1
            entry = chosen[i] if i < len(chosen) else None
            if entry is None or entry[0] is None:  # no log-prob for this position: no uncertainty known
                yield TokenInfo(int(token_id), 0.0, 0.0, 1.0)
                continue
            top = [(t[1], t[0]) for t in (tops[i] if i < len(tops) and tops[i] else ())]
            yield token_info(int(token_id), float(entry[0]), top, self.backend.top_k)
        self._finish(meta.get("finish_reason"))

    def _finish(self, reason: Any) -> None:
        """SGLang's finish reason: {"type": "stop" | "length" | "abort", ...} once the engine ended."""
        if not reason:
            return
        detail = reason if isinstance(reason, dict) else {"type": str(reason)}
        if detail.get("type") == "abort":  # the engine dropped it (overload, shutdown) or refused it (status < 500)
            code = detail.get("status_code")
            message = f"sglang aborted the request after {self.received} tokens: {detail.get('message', '')}"
            if isinstance(code, int) and code < 500:
                raise RuntimeError(message)
            raise unavailable(message)
        self.engine_stop = "length" if detail.get("type") == "length" else "stop"


def _last(values: list[Any] | None, n: int) -> list[Any]:
    """The last `n` entries (the new positions in a cumulative or an incremental chunk)."""
    if not values or n <= 0:
        return []
    return values[-n:]
