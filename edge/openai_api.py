"""The OpenAI API as `tandem serve-edge` speaks it: request bodies checked and turned into SDK
options, and Tandem's events turned into OpenAI response objects. No HTTP here (openai_server.py).

Tandem's own inputs, beside the OpenAI fields:

    body field          header                  meaning
    tags: [str] | str   X-Tandem-Tags: a,b      caller privacy tags (the union of both is used)
    session_id: str     X-Tandem-Session-Id     the cloud's per-session prefix cache (the body wins)
    tandem_stream: str  X-Tandem-Stream         "settled" (default) or "draft", see below

Tandem's outputs: a `tandem` object on every response and chunk (tier, route,
reasons, ...) and `X-Tandem-*` response headers. A stream in "settled" mode
never shows text that an escalation later takes back: the device's draft is
held while the request may still escalate, so a client that only appends
`delta.content` always ends with the final answer. "draft" streams the device's
tokens as they come; an escalation then arrives as a chunk with no content and
`tandem.event == "escalation"` whose `keep_chars` says how much of the text
shown so far to keep.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from edge.events import Done, Escalation, Fallback, Text
from engine.generate import TOP_ALTERNATIVES, Sampling
from router import DecisionRecord
from router.decide import caller_tags_checked

Kind = Literal["chat", "text"]
STREAM_MODES = ("settled", "draft")
MAX_STOP_STRINGS = 4
MAX_TOP_LOGPROBS = TOP_ALTERNATIVES  # the device ranks its two most likely tokens; more it does not know
_FINISH = {"stop": "stop", "stop_string": "stop", "length": "length"}
_ROLES = ("system", "developer", "user", "assistant", "tool")


class APIError(Exception):
    """An error answered in the OpenAI shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s  # sent as Retry-After

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


@dataclass
class CompletionCall:
    """One /v1/chat/completions or /v1/completions request, checked."""

    kind: Kind
    model: str
    request: str | list[dict[str, str]]  # messages (chat) or the prompt (text)
    stream: bool = False
    include_usage: bool = False
    max_new_tokens: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    tags: list[str] = field(default_factory=list)
    session_id: str = ""
    stream_mode: str = "settled"
    caller: str | None = None  # whose request, for the device's fair turns (the API key's digest)

    def sdk_options(self) -> dict[str, Any]:
        return {"tags": self.tags, "max_new_tokens": self.max_new_tokens, "sampling": self.sampling,
                "stop": self.stop, "session_id": self.session_id, "caller": self.caller}


def parse_call(kind: Kind, body: Any, headers: dict[str, str]) -> CompletionCall:
    """Check a request body (already JSON-decoded) and the Tandem headers; raise APIError(400) on bad input."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("'model' is required: a model id from GET /v1/models", "model")
    call = CompletionCall(kind=kind, model=model, request=_messages(body) if kind == "chat" else _prompt(body))
    call.stream = _bool(body, "stream")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise invalid("'stream_options' must be an object", "stream_options")
        if not call.stream:
            raise invalid("'stream_options' is only allowed when 'stream' is true", "stream_options")
        call.include_usage = _bool(options, "include_usage", "stream_options.include_usage")
    n = body.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise invalid("only n=1 is supported: one answer per request", "n")
    if kind == "text" and _bool(body, "echo"):
        raise invalid("'echo' is not supported", "echo")
    if kind == "text" and body.get("suffix"):
        raise invalid("'suffix' is not supported", "suffix")
    limit_field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    limit = body.get(limit_field)
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise invalid(f"'{limit_field}' must be a positive integer", limit_field)
        call.max_new_tokens = limit
    call.sampling = _sampling(body)
    call.stop = _stop(body.get("stop"))
    call.logprobs, call.top_logprobs = _logprobs(kind, body)
    call.tags = _tags(body.get("tags"), "tags") + _tags(headers.get("x-tandem-tags"), "X-Tandem-Tags")
    session = body.get("session_id", headers.get("x-tandem-session-id", ""))
    if not isinstance(session, str):
        raise invalid("'session_id' must be a string", "session_id")
    call.session_id = session
    mode = body.get("tandem_stream", headers.get("x-tandem-stream", "settled"))
    if mode not in STREAM_MODES:
        raise invalid(f"'tandem_stream' must be one of {', '.join(STREAM_MODES)}, got {mode!r}", "tandem_stream")
    call.stream_mode = mode
    return call


def _bool(body: dict, name: str, param: str | None = None) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"'{param or name}' must be true or false", param or name)
    return value


def _number(body: dict, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise invalid(f"'{name}' must be a number from {low} to {high}", name)
    return float(value)


def _sampling(body: dict) -> Sampling:
    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p == 0.0:
        raise invalid("'top_p' must be above 0", "top_p")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise invalid("'seed' must be an integer", "seed")
    return Sampling(temperature=0.0 if temperature is None else temperature,
                    top_p=1.0 if top_p is None else top_p, seed=seed)


def _stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise invalid("'stop' must be a non-empty string or a list of them", "stop")
    if len(stops) > MAX_STOP_STRINGS:
        raise invalid(f"'stop' takes at most {MAX_STOP_STRINGS} strings", "stop")
    return tuple(stops)


def _logprobs(kind: Kind, body: dict) -> tuple[bool, int]:
    if kind == "text":  # legacy completions: `logprobs` is the number of alternatives (0-5)
        value = body.get("logprobs")
        if value is None:
            return False, 0
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 5:
            raise invalid("'logprobs' must be an integer from 0 to 5", "logprobs")
        if value > MAX_TOP_LOGPROBS:
            raise invalid(f"'logprobs' is at most {MAX_TOP_LOGPROBS} here: {_TOP_CAP}", "logprobs")
        return True, value
    wanted = _bool(body, "logprobs")
    top = body.get("top_logprobs")
    if top is None:
        return wanted, 0
    if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20:
        raise invalid("'top_logprobs' must be an integer from 0 to 20", "top_logprobs")
    if top > MAX_TOP_LOGPROBS:
        raise invalid(f"'top_logprobs' is at most {MAX_TOP_LOGPROBS} here: {_TOP_CAP}", "top_logprobs")
    if not wanted:
        raise invalid("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    return wanted, top


_TOP_CAP = (f"the device ranks only its {MAX_TOP_LOGPROBS} most likely tokens at each position (and a token "
            "the cloud wrote carries only its own log-prob)")


def _tags(value: Any, param: str) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise invalid(f"'{param}' must be a list of strings (a header: comma-separated)", param)
    tags = [t.strip() for t in items if t.strip()]
    try:
        caller_tags_checked(tags)
    except ValueError as exc:
        raise invalid(f"'{param}': {exc}", param) from None
    return tags


def _content(message: dict, i: int) -> str:
    content = message.get("content")
    if content is None and message.get("role") == "assistant":
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text ones mean something to a text model
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid(f"messages[{i}].content: only text parts are supported", f"messages[{i}].content")
            texts.append(part["text"])
        return "".join(texts)
    raise invalid(f"messages[{i}].content must be a string or a list of text parts", f"messages[{i}].content")


def _messages(body: dict) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty list of {role, content} objects", "messages")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise invalid(f"messages[{i}] needs a 'role', one of {', '.join(_ROLES)}", f"messages[{i}].role")
        role = "system" if message["role"] == "developer" else message["role"]
        out.append({"role": role, "content": _content(message, i)})
    return out


def _prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise invalid("'prompt' must be a non-empty string (one prompt per request)", "prompt")
    return prompt


# --- responses -------------------------------------------------------------------


def routing(record: DecisionRecord) -> dict[str, Any]:
    """The `tandem` extension: who answered and why (the decision record's public part)."""
    return {
        "request_id": record.request_id, "tier": record.tier, "route": record.route, "reasons": list(record.reasons),
        "escalated": bool(record.escalated), "escalation_reason": record.escalation_reason,
        "fallback": record.fallback, "handoff": record.handoff, "policy_version": record.policy_version,
        "tokens": dict(record.tokens), "latencies_ms": dict(record.latencies_ms),
    }


def caller_session(api_key: bytes, session_id: str) -> str:
    """The cloud's name for one API key's session `session_id`. Every caller of a serve-edge reaches
    the cloud as the server's one principal, so the id a caller chose would name the same cloud
    session for all of them: whoever guessed another key's id could evict that conversation's cached
    prefix and time a guess of its text against it. Derived from the key, it names that key's own."""
    digest = hashlib.sha256(b"tandem-edge-session\0" + api_key + b"\0" + session_id.encode()).hexdigest()
    return "s-" + digest[:40]


def header_value(text: str) -> str:
    """`text` as an HTTP header value can carry it (latin-1, no line breaks): anything else %-escaped
    (a caller's tag may be "患者")."""
    return "".join(c if " " <= c <= "~" and c != "%" else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def routing_headers(record: DecisionRecord, *, final: bool) -> dict[str, str]:
    """X-Tandem-* headers; a stream's are sent before the answer, so they carry no tier."""
    headers = {"X-Tandem-Request-Id": record.request_id, "X-Tandem-Route": record.route,
               "X-Tandem-Reasons": header_value(",".join(record.reasons))}
    if final:
        headers["X-Tandem-Tier"] = record.tier or ""
        headers["X-Tandem-Escalated"] = "true" if record.escalated else "false"
        if record.fallback:
            headers["X-Tandem-Fallback"] = record.fallback
    return headers


def usage(record: DecisionRecord) -> dict[str, int]:
    tokens = record.tokens
    completion = tokens.get("edge", 0) + tokens.get("cloud", 0)
    return {"prompt_tokens": tokens.get("prompt", 0), "completion_tokens": completion,
            "total_tokens": tokens.get("prompt", 0) + completion}


class Shaper:
    """Builds one request's OpenAI objects (ids, timestamps and the model name stay fixed)."""

    def __init__(self, call: CompletionCall, record: DecisionRecord, token_text) -> None:
        self.call = call
        self.id = ("chatcmpl-" if call.kind == "chat" else "cmpl-") + record.request_id
        self.created = int(time.time())
        self.token_text = token_text  # token id -> its text
        self.offset = 0  # characters shown so far (legacy logprobs' text_offset)

    @property
    def _object(self) -> str:
        return "chat.completion" if self.call.kind == "chat" else "text_completion"

    def answer(self, done: Done, texts: list[Text]) -> dict[str, Any]:
        """The whole (non-streamed) response."""
        choice: dict[str, Any] = {"index": 0, "finish_reason": _FINISH.get(done.finish_reason, "stop")}
        if self.call.kind == "chat":
            choice["message"] = {"role": "assistant", "content": done.text}
        else:
            choice["text"] = done.text
        choice["logprobs"] = self.logprobs(texts) if self.call.logprobs else None
        return {"id": self.id, "object": self._object, "created": self.created, "model": self.call.model,
                "choices": [choice], "usage": usage(done.record), "tandem": routing(done.record)}

    def chunk(self, *, text: str | None = None, texts: list[Text] = (), role: bool = False,
              finish: str | None = None, tandem: dict[str, Any] | None = None) -> dict[str, Any]:
        """One stream chunk. A chunk without text (role, escalation, fallback, end) is harmless to a
        client that only appends content: its delta has no content."""
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if self.call.kind == "chat":
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        choice["logprobs"] = self.logprobs(texts) if self.call.logprobs and texts else None
        out = {"id": self.id, "object": self._object + ("" if self.call.kind == "text" else ".chunk"),
               "created": self.created, "model": self.call.model, "choices": [choice]}
        if tandem is not None:
            out["tandem"] = tandem
        return out

    def usage_chunk(self, record: DecisionRecord) -> dict[str, Any]:
        chunk = self.chunk()
        chunk["choices"] = []
        chunk["usage"] = usage(record)
        return chunk

    def logprobs(self, texts: list[Text]) -> dict[str, Any]:
        """The log-prob of each token chosen, and up to `top_logprobs` most likely tokens at its
        position: the device's top two; a token the cloud wrote has only itself (the cloud's stream
        reports the chosen token's log-prob, entropy and margin, no alternatives)."""
        k = self.call.top_logprobs
        rows = []  # (token text, log-prob, [(alternative's text, log-prob)])
        for t in texts:
            for j, (i, lp) in enumerate(zip(t.token_ids, t.logprobs)):
                token = self.token_text(i)
                top = t.top_logprobs[j] if j < len(t.top_logprobs) else ()
                alternatives = [(self.token_text(a), alp) for a, alp in top[:k]] if top else [(token, lp)]
                rows.append((token, lp, alternatives if k else []))
        if self.call.kind == "chat":
            content = [{**_entry(token, lp), "top_logprobs": [_entry(a, alp) for a, alp in alternatives]}
                       for token, lp, alternatives in rows]
            return {"content": content, "refusal": None}
        offsets = []
        for token, _, _ in rows:
            offsets.append(self.offset)
            self.offset += len(token)
        return {"tokens": [t for t, _, _ in rows], "token_logprobs": [lp for _, lp, _ in rows],
                "top_logprobs": [dict(alternatives) for _, _, alternatives in rows] if k else None,
                "text_offset": offsets}


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def event_note(event: Escalation | Fallback) -> dict[str, Any]:
    """The `tandem` field of the chunk that tells a stream's reader of a hand-off."""
    if isinstance(event, Escalation):
        return {"event": "escalation", "reason": event.reason, "detail": event.detail,
                "keep_chars": event.keep_chars, "kept_tokens": event.kept_tokens}
    return {"event": "fallback", "reason": event.reason, "detail": event.detail}
