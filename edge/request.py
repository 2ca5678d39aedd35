"""One request's journey through the edge: route, decode on the device, escalate, fall back.

`TandemClient.chat` / `generate` build a `Request` and return its `run()`
stream. The request owns everything that lives for one call (the decision, the
monitor, what the caller was shown, the decision record); the client owns
what lives across calls (model, policy, transport, audit log, speeds).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cloud.client import generate_request
from cloud.contract import fingerprint_message
from edge import kv_handoff
from edge.egress import EgressFilter, EgressRefusedError
from edge.errors import CloudError, CloudUnavailableError, PolicyDeniedError
from edge.events import Done, Escalation, Event, Fallback, Text, Tier
from engine.errors import ContextLengthError
from engine.generate import Sampling, TokenInfo
from engine.kv import KVError
from engine.model import KVCache
from router import (
    DecisionRecord,
    EscalationAction,
    HandoffChoice,
    MonitorVerdict,
    Route,
    StreamMonitor,
    TagAction,
    choose_continuation,
    choose_prefill,
    decide,
    detect,
)
from router import Fallback as FallbackRule
from tandem_rpc.v1 import cloud_pb2

if TYPE_CHECKING:
    from edge.client import TandemClient

Messages = Sequence[Mapping[str, Any]]


@dataclass
class _Progress:
    """What the caller has been shown so far, and when."""

    start: float
    visible: str = ""
    first_text_at: float | None = None
    edge_tokens: int = 0
    cloud_tokens: int = 0
    bytes_sent: int = 0
    tier: Tier = "edge"
    finish_reason: str = "length"
    latencies: dict[str, float] = field(default_factory=dict)

    def text(self, text: str, ids: Sequence[int], tier: Tier, logprobs: Sequence[float] = (),
             top: Sequence[tuple[tuple[int, float], ...]] = ()) -> Text:
        if text and self.first_text_at is None:
            self.first_text_at = time.monotonic()
        self.visible += text
        if tier == "edge":
            self.edge_tokens += len(ids)
        else:
            self.cloud_tokens += len(ids)
        self.tier = tier
        return Text(text, tuple(ids), tier, tuple(logprobs), tuple(top))


@dataclass
class _Held:
    """Device text not shown yet (the policy's hold_tokens): the tokens that gave text, with
    their IDs, log-probs and alternatives, and a count of those that gave none (a stop or end token)."""

    text: str = ""
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[tuple[tuple[int, float], ...]] = field(default_factory=list)
    silent: int = 0

    def add(self, released: bool, text: str, token: TokenInfo) -> None:
        if not released:
            self.silent += 1
            return
        self.text += text
        self.ids.append(token.id)
        self.logprobs.append(token.logprob)
        self.top.append(token.top)

    def release(self, progress: _Progress) -> Iterator[Text]:
        if self.ids:
            yield progress.text(self.text, self.ids, "edge", self.logprobs, self.top)
        progress.edge_tokens += self.silent
        self.text, self.ids, self.logprobs, self.top, self.silent = "", [], [], [], 0


class Request:
    """One request's journey; `run()` is the event stream."""

    def __init__(
        self,
        client: TandemClient,
        request: str | Messages,
        prompt_ids: list[int],
        *,
        chat: bool,
        tags: Iterable[str],
        max_new_tokens: int | None,
        sampling: Sampling,
        stop: tuple[str, ...],
        session_id: str,
        request_id: str | None,
        caller: str | None,
    ) -> None:
        self.client = client
        self.local = client.local
        self.policy = client.policy
        self.request = request
        self.chat = chat
        tags = [tags] if isinstance(tags, str) else list(tags)
        self.caller_tags = {t.strip().lower() for t in tags if isinstance(t, str)}
        self.prompt_ids = prompt_ids
        self.sampling = sampling
        self.stop = stop
        self.session_id = session_id
        self.caller = caller
        self.decision = decide(request, caller_tags=tags, token_count=len(prompt_ids), policy=self.policy,
                               new_tokens=max_new_tokens)
        self.max_new_tokens = self.policy.edge.max_new_tokens if max_new_tokens is None else max_new_tokens
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        self.record = DecisionRecord.from_decision(self.decision, request_id=request_id)
        self.monitor = StreamMonitor(self.policy.confidence,
                                     may_escalate=self.decision.may_escalate and client.transport is not None)
        self.progress = _Progress(start=time.monotonic())
        self.deadline = self.progress.start + client.deadline_s
        self.restorer = self.decision.redaction.restorer()
        self.egress = EgressFilter(
            self.policy, self.decision.redaction, decode=self.local.tokenizer.decode,
            redact_all=any(self.decision.tags.get(t) is TagAction.REDACT for t in self.caller_tags),
            frames_allowed=self.decision.may_escalate and self.decision.egress == request,
            issued=frozenset() if request_id else frozenset({self.record.request_id}),
        )

    def run(self) -> Iterator[Event]:
        decision = self.decision
        try:
            if decision.route is Route.LOCAL_ONLY and decision.over_device_budget:
                raise PolicyDeniedError(
                    f"{len(self.prompt_ids)} prompt tokens plus {self.max_new_tokens} new ones exceed the device's "
                    f"budget of {self.policy.edge.max_context_tokens}, and the policy does not let this request "
                    f"leave the device ({', '.join(decision.codes)}); shorten it"
                )
            if decision.route is Route.CLOUD:
                yield from self._cloud_first()
            else:
                if len(self.prompt_ids) + self.max_new_tokens > self.local.max_context:
                    raise ContextLengthError(len(self.prompt_ids) + self.max_new_tokens, self.local.max_context,
                                             "prompt plus max_new_tokens")
                cache = self._offloaded_prefill()
                yield from self._local(self.prompt_ids, self.max_new_tokens, cache=cache)
        except GeneratorExit:  # the caller stopped reading; the cloud call (if any) is cancelled on the way out
            self.record.fallback = "abandoned_by_caller"
            self._finish_record(failed=True)
            raise
        except Exception as exc:
            self.record.fallback = f"fail:{getattr(exc, 'code', None) or type(exc).__name__}"
            self._finish_record(failed=True)
            raise
        self._finish_record()
        yield Done(self.progress.visible, self.progress.tier, self.progress.finish_reason, self.record)

    # --- the device ---------------------------------------------------------

    def _local(self, context_ids: list[int], max_new: int, *, cache: KVCache | None = None) -> Iterator[Event]:
        """Decode on the device after `context_ids`, escalating when the monitor says so.

        `cache` may already hold a prefix of `context_ids` (a prefill done in the cloud).
        The policy's `hold_tokens` first tokens are held back until the monitor has judged
        them (or the answer ends); a prompt the calibrated judge rejects right after the
        prefill goes to the cloud before any decode step and before any text is shown.
        """
        self._check_fits_device(len(context_ids), max_new)
        cache = cache or self.local.new_cache(len(context_ids) + max_new)
        cached = cache.pos
        tokens: list[TokenInfo] = []
        held = _Held()
        hold = self.policy.confidence.hold_tokens if self.policy.confidence else 0
        started = time.monotonic()
        stream = self.local.stream(context_ids[cached:], max_new_tokens=max_new, sampling=self.sampling,
                                   stop_strings=self.stop, cache=cache, hidden_tokens=self.monitor.hidden_tokens,
                                   caller=self.caller)
        try:
            for event in stream:
                token = event.token
                if not tokens:
                    self.client.speeds.observe("edge", len(context_ids) - cached, time.monotonic() - started)
                tokens.append(token)
                held.add(bool(event.text), self.restorer.feed(event.text) if event.text else "", token)
                final = event.finish_reason is not None
                verdict = self.monitor.observe(token.logprob, token.entropy, token.margin, token.hidden, final=final)
                if verdict.escalate:
                    handed_off = yield from self._escalate(verdict, tokens, context_ids, cache)
                    if handed_off:
                        return
                if final or verdict.fired or len(tokens) >= hold or self.monitor.judged:
                    yield from held.release(self.progress)
                if final:
                    self.progress.finish_reason = event.finish_reason
                    break
        finally:
            stream.close()
        yield from held.release(self.progress)
        if tail := self.restorer.flush():
            yield self.progress.text(tail, (), "edge")
        self.progress.tier = "edge"

    def _check_fits_device(self, n_context: int, max_new: int) -> None:
        if n_context + max_new > self.local.max_context:
            raise CloudUnavailableError(
                f"the cloud could not be used and {n_context} context tokens plus {max_new} new ones do not fit "
                f"the device model's context of {self.local.max_context}; nothing was answered",
                code="DEVICE_CONTEXT", retryable=False,
            )

    # --- hand-offs ------------------------------------------------------------

    def _escalate(
        self, verdict: MonitorVerdict, tokens: list[TokenInfo], context_ids: list[int], cache: KVCache
    ) -> Iterator[Event]:
        """Try to hand the rest of the answer to the cloud; returns False when the device goes on.

        The hand-off carries the device's KV cache when the estimate prefers it and
        what the cache encodes is exactly what may leave the device (no redaction).
        """
        keep = tokens[: verdict.window_start] if verdict.action is EscalationAction.ESCALATE_CONTINUE else []
        keep, draft_ids = self._egress_draft(keep)
        kept_ids = [t.id for t in keep]
        self.record.escalated = True
        self.record.escalation_reason = verdict.code
        egress_ids = self._egress_prompt_ids() + draft_ids
        request = self._cloud_request(egress_ids, self.max_new_tokens - len(keep),
                                      cloud_pb2.ESCALATION_REASON_LOW_CONFIDENCE, verdict.detail)
        try:
            same_tokens = egress_ids == context_ids + kept_ids
            n_cached = min(len(egress_ids), cache.pos)
            if same_tokens and n_cached > 0:
                responses = self._open_kv(request, cache, n_cached)
            else:
                self._record_handoff(HandoffChoice("token_ids", "redacted" if not same_tokens else "nothing_cached"))
                responses = self._open(request)
        except CloudUnavailableError as exc:
            yield from self._fall_back(exc)
            return False
        except EgressRefusedError as exc:  # a field would carry what must stay: the device goes on
            self._record_handoff(HandoffChoice("none", f"egress_refused: {exc}"))
            self.monitor.may_escalate = False
            return False
        keep_text = self.local.tokenizer.decode(kept_ids)
        keep_chars = _common_prefix(self.progress.visible, keep_text)
        yield Escalation(verdict.code, verdict.detail, keep_chars, len(keep))
        self.progress.visible = self.progress.visible[:keep_chars]
        self.progress.edge_tokens = len(keep)
        self.restorer = self.decision.redaction.restorer()
        if keep_text[keep_chars:]:
            yield self.progress.text(keep_text[keep_chars:], (), "edge")
        yield from self._stream_cloud(responses, context_ids + kept_ids, self.max_new_tokens - len(keep))
        return True

    def _cloud_first(self) -> Iterator[Event]:
        """The request is over the device's budget: the cloud answers it from the start."""
        code = next((c for c in self.decision.codes if c.endswith("over_device_budget")), "policy")
        self.record.escalated = True
        self.record.escalation_reason = code
        reason = (cloud_pb2.ESCALATION_REASON_CONTEXT_TOO_LONG if code.startswith("context")
                  else cloud_pb2.ESCALATION_REASON_POLICY)
        self._record_handoff(HandoffChoice("token_ids", "nothing_cached"))
        request = self._cloud_request(self._egress_prompt_ids(), self.max_new_tokens, reason, code)
        try:
            responses = self._open(request)
        except CloudUnavailableError as exc:
            yield from self._fall_back(exc)
            self.monitor.may_escalate = False  # the cloud just failed; the device finishes alone
            yield from self._local(self.prompt_ids, self.max_new_tokens)
            return
        yield from self._stream_cloud(responses, self.prompt_ids, self.max_new_tokens)

    def _open_kv(
        self, request: cloud_pb2.GenerateRequest, cache: KVCache, n_cached: int
    ) -> Iterator[cloud_pb2.GenerateResponse]:
        """Continue in the cloud from the device's cache, or by token IDs where the estimate, the
        fingerprints or the cloud say so (a refused upload falls back to token IDs)."""
        rules = self.policy.kv_handoff
        choice = HandoffChoice("token_ids", "kv_disabled")
        if rules.enabled:
            info = self._info()
            reason = kv_handoff.ineligible(self.local, info, rules)
            choice = choose_continuation(
                n_cached=n_cached, offers=[] if reason else kv_handoff.offers(self.local, info, rules, n_cached),
                rules=rules, speeds=self.client.speeds, ineligible=reason,
            )
        self._record_handoff(choice)
        if not choice.by_kv:
            return self._open(request)
        codec = choice.codec
        n_sent = kv_handoff.sent_tokens(self.local, n_cached, codec)
        transport = self.client.transport
        ids = list(request.token_ids)
        t0 = time.monotonic()
        try:
            start = self.egress.message(cloud_pb2.KVStart(token_ids=ids[:n_sent], codec=codec,
                                                          request_id=self.record.request_id))
            upload = transport.upload_kv(
                list(start.token_ids),
                lambda: map(self.egress.frame, kv_handoff.frames_of(self.local, cache, n_sent, codec)),
                codec=start.codec, reserve_tokens=request.max_new_tokens + len(ids) - n_sent,
                request_id=start.request_id, deadline=self.deadline,
            )
            self.progress.bytes_sent += upload.bytes + start.ByteSize()
            self.progress.latencies["kv_upload_ms"] = _ms(t0)
            info = self._info()
            self.record.cloud_entropy = info.capabilities.entropy or "exact"
            self._limit_new_tokens(request, info)
            resume = self.egress.message(cloud_pb2.ResumeRequest(kv_handle=upload.kv_handle, generate=request))
            self.progress.bytes_sent += resume.generate.ByteSize()
            return transport.resume(resume.kv_handle, resume.generate, deadline=self.deadline)
        except EgressRefusedError as exc:  # the cache may not leave; token IDs may
            self._record_handoff(HandoffChoice("token_ids", f"kv_egress_refused: {exc}", choice.costs_ms))
            return self._open(request)
        except CloudUnavailableError:
            raise
        except CloudError as exc:  # refused (mismatch, limits, expired handle): token IDs still work
            self._record_handoff(HandoffChoice("token_ids", f"kv_refused:{exc.code}", choice.costs_ms))
            return self._open(request)

    def _offloaded_prefill(self) -> KVCache | None:
        """For a long prompt that may leave the device as it is: the cloud's prefill, shipped down
        as a compressed cache, when the estimate says that is faster than prefilling here."""
        rules = self.policy.kv_handoff
        transport = self.client.transport
        n_prompt = len(self.prompt_ids)
        if transport is None or not (rules.enabled and rules.prefill_offload) or n_prompt < rules.min_offload_tokens:
            return None
        try:
            info = self._info() if self.egress.frames_allowed else None  # the request may leave as it is
        except CloudError as exc:
            self._record_handoff(HandoffChoice("local_prefill", f"cloud_unavailable:{exc.code}"))
            return None
        reason = ("redacted_or_local_only" if info is None
                  else kv_handoff.ineligible(self.local, info, rules, direction="down"))
        choice = choose_prefill(
            n_prompt=n_prompt, offers=[] if reason else kv_handoff.offers(self.local, info, rules, n_prompt,
                                                                          direction="down"),
            rules=rules, speeds=self.client.speeds, ineligible=reason,
        )
        self._record_handoff(choice)
        if not choice.by_kv:
            return None
        ids = self.prompt_ids[:-1]  # the device feeds the last prompt token: its logits pick the first new one
        t0 = time.monotonic()
        try:
            prefill = self.egress.message(cloud_pb2.PrefillKVRequest(
                request_id=self.record.request_id, token_ids=ids, codec=choice.codec,
                receiver=fingerprint_message(self.local.fingerprint), allow_cross_precision=rules.cross_precision,
            ))
            chunks = transport.prefill_kv(
                list(prefill.token_ids), codec=prefill.codec, receiver=prefill.receiver,
                allow_cross_precision=prefill.allow_cross_precision, request_id=prefill.request_id,
                deadline=self.deadline,
            )
            self.progress.bytes_sent += prefill.ByteSize()
            received, start = kv_handoff.receive_prefill(
                self.local, chunks, expect_tokens=ids, room=1 + self.max_new_tokens,
                allow_cross_precision=rules.cross_precision,
            )
        except (CloudError, KVError, EgressRefusedError) as exc:
            code = getattr(exc, "code", None) or type(exc).__name__
            self._record_handoff(HandoffChoice("local_prefill", f"kv_prefill_failed:{code}", choice.costs_ms))
            return None
        self.client.speeds.observe("cloud", len(ids), start.prefill_ms / 1000)
        self.progress.latencies["kv_prefill_ms"] = _ms(t0)
        self.record.bytes_received = received.nbytes
        return received.cache

    def _info(self) -> cloud_pb2.InfoResponse:
        tok = self.local.tokenizer
        return self.client.transport.check_handoff(tok.fingerprint, tok.vocab_size, deadline=self.deadline)

    def _record_handoff(self, choice: HandoffChoice) -> None:
        self.record.handoff = f"{choice.kind}:{choice.codec}" if choice.by_kv else choice.kind
        self.record.handoff_reason = choice.reason
        self.record.handoff_costs_ms = dict(choice.costs_ms)

    @staticmethod
    def _limit_new_tokens(request: cloud_pb2.GenerateRequest, info: cloud_pb2.InfoResponse) -> None:
        if info.limits.max_new_tokens:
            request.max_new_tokens = min(request.max_new_tokens, info.limits.max_new_tokens)

    def _open(self, request: cloud_pb2.GenerateRequest) -> Iterator[cloud_pb2.GenerateResponse]:
        transport = self.client.transport
        if transport is None:
            raise CloudUnavailableError("no cloud is configured for this client", code="NO_CLOUD", retryable=False)
        tok = self.local.tokenizer
        t0 = time.monotonic()
        try:
            info = transport.check_handoff(tok.fingerprint, tok.vocab_size, deadline=self.deadline)
            self.record.cloud_entropy = info.capabilities.entropy or "exact"
            if info.limits.max_new_tokens:
                request.max_new_tokens = min(request.max_new_tokens, info.limits.max_new_tokens)
            request = self.egress.message(request)
            self.progress.bytes_sent += request.ByteSize()
            return transport.generate(request, deadline=self.deadline)
        finally:
            self.progress.latencies["cloud_connect_ms"] = _ms(t0)

    def _stream_cloud(
        self, responses: Iterator[cloud_pb2.GenerateResponse], local_context: list[int], max_new: int
    ) -> Iterator[Event]:
        """Relay the cloud's tokens; if the cloud dies mid-way, the device continues from them."""
        received: list[int] = []
        t0 = time.monotonic()
        try:
            for response in responses:
                if response.HasField("chunk"):
                    chunk = response.chunk
                    received += chunk.token_ids
                    yield self.progress.text(self.restorer.feed(chunk.text), chunk.token_ids, "cloud",
                                             chunk.logprobs)
                else:
                    result = response.result
                    self.progress.finish_reason = _FINISH[result.finish_reason]
                    self.progress.latencies["cloud_prefill_ms"] = result.timings.prefill_ms
                    self.client.speeds.observe("cloud", result.usage.prompt_tokens - result.usage.cached_prompt_tokens,
                                               result.timings.prefill_ms / 1000)
        except CloudUnavailableError as exc:
            self.progress.latencies["cloud_ms"] = _ms(t0)
            if tail := self.restorer.flush():
                yield self.progress.text(tail, (), "cloud")
            yield from self._fall_back(exc, mid_stream=True)
            self.monitor.may_escalate = False
            remaining = max_new - len(received)
            if remaining > 0 and not (received and received[-1] in self.local.tokenizer.stop_ids):
                yield from self._local(local_context + received, remaining)
            return
        finally:
            responses.close()
        self.progress.latencies["cloud_ms"] = _ms(t0)
        if tail := self.restorer.flush():
            yield self.progress.text(tail, (), "cloud")
        self.progress.tier = "cloud"

    def _fall_back(self, exc: CloudUnavailableError, *, mid_stream: bool = False) -> Iterator[Event]:
        """Apply the policy's `on_unreachable`: fail with the cause, or say so and answer on the device."""
        where = "mid-stream" if mid_stream else "before answering"
        if self.policy.cloud.on_unreachable is FallbackRule.FAIL:
            self.record.fallback = f"fail:{exc.code}"
            raise CloudUnavailableError(f"{exc} ({where}; the policy's on_unreachable is fail)",
                                        code=exc.code, retryable=exc.retryable) from exc
        self.record.fallback = f"answer_local:{exc.code}" + (":mid_stream" if mid_stream else "")
        yield Fallback(exc.code or "UNAVAILABLE", f"{exc} ({where}); answering on the device")

    # --- what leaves the device -----------------------------------------------

    def _egress_prompt_ids(self) -> list[int]:
        """Token IDs of exactly `decision.egress`: the request, redacted where the policy says."""
        egress = self.decision.egress
        if egress is None:
            raise PolicyDeniedError("the policy lets nothing of this request leave the device")
        if egress == self.request:
            return self.prompt_ids
        if self.chat:
            return self.local.encode_chat(egress)
        return self.local.encode_prompt(egress, chat=False)

    def _egress_draft(self, keep: list[TokenInfo]) -> tuple[list[TokenInfo], list[int]]:
        """The kept local draft, and its token IDs as they may leave the device.

        The device model saw the unredacted request, so its draft can repeat a
        private value: values redacted in the request get their placeholders,
        detector findings get the request's treatment, a draft that ends inside
        a redacted value is cut back before it, and a local_only finding keeps
        the whole draft on the device (the cloud starts over).
        """
        redaction = self.decision.redaction
        values = [redaction.original(p) for p in redaction.placeholders]
        decode = self.local.tokenizer.decode
        while keep and _ends_inside(decode([t.id for t in keep]), values):
            keep = keep[:-1]
        kept_ids = [t.id for t in keep]
        if not keep:
            return [], []
        text = decode(kept_ids)
        privacy = self.policy.privacy
        redact_all = any(self.decision.tags.get(t) is TagAction.REDACT for t in self.caller_tags)
        spans = []
        for finding in detect(text, privacy):
            action = privacy.action_for(finding.tag)
            if action is TagAction.LOCAL_ONLY:
                return [], []
            if action is TagAction.REDACT or redact_all:
                spans.append((finding.start, finding.end, finding.kind))
        for value in values:
            start = text.find(value)
            while start >= 0:
                spans.append((start, start + len(value), "redacted"))
                start = text.find(value, start + 1)
        if not spans:
            return keep, kept_ids
        return keep, self.local.tokenizer.encode(redaction.apply(text, spans))

    def _cloud_request(self, ids: list[int], max_new: int, reason: int, detail: str) -> cloud_pb2.GenerateRequest:
        s = self.sampling
        return generate_request(
            ids, session_id=self.session_id, request_id=self.record.request_id, max_new_tokens=max_new,
            temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=s.seed, stop_strings=self.stop,
            escalation_reason=reason, escalation_detail=detail,
        )

    def _finish_record(self, *, failed: bool = False) -> None:
        p = self.progress
        record = self.record
        record.tier = None if failed else p.tier
        record.escalated = bool(record.escalated)
        record.signals = self.monitor.summary()
        record.bytes_sent = p.bytes_sent
        record.tokens = {"prompt": len(self.prompt_ids), "edge": p.edge_tokens, "cloud": p.cloud_tokens}
        record.latencies_ms = {k: round(v, 2) for k, v in p.latencies.items()}
        if p.first_text_at is not None:
            record.latencies_ms["ttft_ms"] = round((p.first_text_at - p.start) * 1000, 2)
        record.latencies_ms["total_ms"] = total = _ms(p.start)
        cloud = p.latencies.get("cloud_connect_ms", 0.0) + p.latencies.get("cloud_ms", 0.0)
        record.latencies_ms["edge_ms"] = round(max(0.0, total - cloud), 2)
        if self.client.audit is not None:
            self.client.audit.write(record)


_FINISH = {
    cloud_pb2.FINISH_REASON_STOP: "stop",
    cloud_pb2.FINISH_REASON_LENGTH: "length",
    cloud_pb2.FINISH_REASON_STOP_STRING: "stop_string",
    cloud_pb2.FINISH_REASON_UNSPECIFIED: "length",
}


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 2)


def _ends_inside(text: str, values: list[str]) -> bool:
    """Whether `text` ends with the start (2+ characters, not all) of one of `values`."""
    return any(text.endswith(v[:n]) for v in values for n in range(2, len(v)))


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
