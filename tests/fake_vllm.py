"""A FAKE vLLM: vLLM's OpenAI-compatible wire format (GET /health, /v1/models, POST /tokenize,
streamed POST /v1/completions with token-ID prompts, `logprobs`, `return_tokens_as_token_ids`,
`return_token_ids`), answered by Tandem's own engine on the real SmolLM2, greedy only.

vLLM itself cannot run in this test suite's time on a CPU; this fake lets the gateway's
OpenAI-compatible backend be tested for what it must do with that format: IDs in, IDs and top-k
log-probs out, stops, a closed stream, a tenant's cache salt. It records every request body.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from engine.generate import decode_one_token, prefill
from engine.runtime import LocalModel


class FakeVLLM:
    def __init__(self, model: LocalModel, *, name: str = "smollm2-fake-vllm", max_model_len: int = 2048) -> None:
        self.model, self.name, self.max_model_len = model, name, max_model_len
        self.requests: list[dict[str, Any]] = []
        self.aborted = 0  # streams whose client closed the connection before the end
        self.lock = threading.Lock()  # one generation at a time: the model's forward is not re-entrant here
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
                    return self._complete(body)
                self.send_error(404)

            def _json(self, value: Any) -> None:
                data = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _complete(self, body: dict[str, Any]) -> None:
                if body.get("temperature", 1.0) != 0:
                    self.send_error(400, "the fake decodes greedily only")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    for chunk in fake.chunks(body):
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
    def chunks(self, body: dict[str, Any]):
        """One chunk a token, as vLLM streams them; finish_reason on the last."""
        m, k = self.model, int(body.get("logprobs") or 0)
        ids = list(body["prompt"])
        cache = m.new_cache(len(ids) + body["max_tokens"])
        with self.lock:
            logits = prefill(m.model, cache, ids)
        stops = set(m.tokenizer.stop_ids)
        for n in range(body["max_tokens"]):
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            top = torch.topk(logprobs, k or 1)
            token = int(top.indices[0])
            finish = "stop" if token in stops else "length" if n + 1 == body["max_tokens"] else None
            yield {"id": "cmpl-fake", "object": "text_completion", "model": self.name, "choices": [{
                "index": 0, "text": m.tokenizer.decode([token]), "token_ids": [token], "finish_reason": finish,
                "logprobs": {"tokens": [f"token_id:{token}"], "token_logprobs": [float(logprobs[token])],
                             "top_logprobs": [{f"token_id:{int(i)}": float(v)
                                               for i, v in zip(top.indices, top.values)}] if k else None},
            }]}
            if finish:
                return
            with self.lock:
                logits = decode_one_token(m.model, cache, token)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
