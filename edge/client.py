"""The edge SDK: one call that routes, decodes on the device, escalates and falls back.

    client = TandemClient("smollm2-135m", cloud="gpu-host:50051", policy="default")
    for event in client.chat([{"role": "user", "content": "..."}], tags=["health"]):
        ...
    answer = client.complete("What is the capital of France? Answer in one sentence.")

Every request follows DESIGN.md's data flow: the shared tokenizer encodes it
once, `router.decide` routes it, the device decodes with the stream monitor
watching each token, and anything sent to the cloud is token IDs of the
policy's egress (redacted where the policy says so). The caller always gets
one stream and one decision record, whatever the cloud does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from edge.address import split_address
from edge.errors import (
    CloudUnavailableError,
    InvalidCalibrationError,
    InvalidCloudAddressError,
    InvalidPolicyError,
    ModelLoadError,
)
from edge.events import Answer, Done, Event
from edge.request import Messages, Request
from edge.resilience import DEFAULT_RETRY, CircuitBreaker, RetryPolicy
from edge.transport import CloudTarget, CloudTransport
from engine.errors import EngineError
from engine.generate import GREEDY, Sampling
from engine.runtime import LocalModel
from router.judge import JudgeError
from router import (
    AuditLog,
    Policy,
    PolicyError,
    PrefillSpeeds,
    load_policy,
)
from tandem_rpc.v1 import cloud_pb2

POLICIES = Path(__file__).resolve().parents[1] / "policies"
DEFAULT_POLICY = POLICIES / "default.yaml"
DEFAULT_DEADLINE_S = 30.0
POLICY_AUDIT = "policy"  # audit_log default: wherever the policy's audit section says


def policy_path(policy: str | Path) -> Path:
    """A packaged policy's name ("default", "strict-privacy", ...) or a path to a file.

    A bare name means the policy shipped with Tandem, wherever the caller runs;
    anything else is a path, relative to the working directory as usual.
    """
    text = str(policy)
    packaged = POLICIES / f"{text}.yaml"
    if isinstance(policy, str) and text and "/" not in text and "." not in text and packaged.is_file():
        return packaged
    return Path(text).expanduser()


def packaged_policies() -> list[str]:
    return sorted(p.stem for p in POLICIES.glob("*.yaml"))


def open_policy(policy: str | Path) -> Policy:
    """load_policy by name or path, its errors in the SDK's tree (InvalidPolicyError is a PolicyError too)."""
    path = policy_path(policy)
    try:
        return load_policy(path)
    except PolicyError as exc:
        problems = list(exc.problems)
        if not path.is_file():
            where = path if path.is_absolute() else f"{path} (relative to {Path.cwd()})"
            hint = (f"no policy file at {where}; give a path that exists, or the name of a packaged "
                    f"policy: {', '.join(packaged_policies())}")
            problems = [dataclasses.replace(problems[0], message=hint)]
        raise InvalidPolicyError(problems) from exc


class TandemClient:
    """A device model, an optional cloud tier and the policy that governs both.

    `model` is a loaded LocalModel or anything LocalModel.load accepts (loaded at
    the device tier's precision: quantized). `cloud`
    is a "host:port" (with `token` and, for TLS, `root_certificates` in PEM), a
    ready CloudTransport (then `retry` and `breaker` are its own), or None for a
    device-only client. `policy` is a Policy, a packaged policy's name
    ("default", "strict-privacy", ...) or a file. `deadline_s` bounds the cloud's
    part of each request; past it the policy's fallback applies.

    What cannot be built raises a ConfigurationError (edge.errors), policy first,
    then the address, then the model, so a typo costs no model load.
    """

    def __init__(
        self,
        model: LocalModel | str | Path = "smollm2-135m",
        *,
        cloud: str | CloudTarget | CloudTransport | None = None,
        token: str | None = None,
        root_certificates: bytes | None = None,
        policy: Policy | str | Path = DEFAULT_POLICY,
        audit_log: AuditLog | str | Path | None = POLICY_AUDIT,
        retry: RetryPolicy = DEFAULT_RETRY,
        breaker: CircuitBreaker | None = None,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> None:
        self.policy = policy if isinstance(policy, Policy) else open_policy(policy)
        if isinstance(cloud, str):
            try:
                split_address(cloud)
            except ValueError as exc:
                raise InvalidCloudAddressError(f"cloud address {exc}") from None
        try:
            self.local = model if isinstance(model, LocalModel) else LocalModel.load(model, precision="device")
        except EngineError as exc:
            raise ModelLoadError(str(exc)) from exc
        calibration = self.policy.confidence.calibration if self.policy.confidence is not None else None
        if calibration is not None:
            try:
                calibration.judge.check_model(self.local.fingerprint.to_dict(), self.local.tokenizer.fingerprint)
            except JudgeError as exc:
                raise InvalidCalibrationError(str(exc)) from None
        if audit_log == POLICY_AUDIT:
            self.audit = AuditLog.from_policy(self.policy)
        else:
            self.audit = audit_log if isinstance(audit_log, AuditLog) or audit_log is None else AuditLog(audit_log)
        if isinstance(cloud, str):
            cloud = CloudTarget(cloud, token=token, root_certificates=root_certificates)
        if isinstance(cloud, CloudTarget):
            cloud = CloudTransport(cloud, retry=retry, breaker=breaker)
        self.transport = cloud
        self.deadline_s = deadline_s
        self.speeds = PrefillSpeeds.from_rules(self.policy.kv_handoff)  # refined by every prefill measured

    def close(self) -> None:
        if self.transport:
            self.transport.close()

    def __enter__(self) -> TandemClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def connect(self) -> cloud_pb2.InfoResponse:
        """Reach the cloud now and check that it shares our tokenizer (otherwise it happens on first use)."""
        if self.transport is None:
            raise CloudUnavailableError("this client has no cloud configured", code="NO_CLOUD", retryable=False)
        tok = self.local.tokenizer
        return self.transport.check_handoff(tok.fingerprint, tok.vocab_size,
                                            deadline=time.monotonic() + self.deadline_s)

    def chat(
        self,
        messages: Messages,
        *,
        tags: Iterable[str] = (),
        max_new_tokens: int | None = None,
        sampling: Sampling = GREEDY,
        stop: Sequence[str] = (),
        session_id: str = "",
        request_id: str | None = None,
        caller: str | None = None,
    ) -> Iterator[Event]:
        """Stream the assistant's next turn after `messages` ({role, content} dicts).

        `tags` are caller tags for the policy (e.g. "health"); `session_id`
        lets the cloud keep this conversation's prefix cache between turns; `caller` names
        whose request this is (a user, an API key): concurrent requests share the device
        fairly between callers, not streams (None: the request counts as a caller of its own).
        """
        return self.journey([dict(m) for m in messages], chat=True, tags=tags, max_new_tokens=max_new_tokens,
                            sampling=sampling, stop=stop, session_id=session_id, request_id=request_id,
                            caller=caller).run()

    def generate(
        self,
        prompt: str,
        *,
        chat: bool = True,
        tags: Iterable[str] = (),
        max_new_tokens: int | None = None,
        sampling: Sampling = GREEDY,
        stop: Sequence[str] = (),
        session_id: str = "",
        request_id: str | None = None,
        caller: str | None = None,
    ) -> Iterator[Event]:
        """Stream an answer to one user turn (`chat=False`: continue raw text instead)."""
        if chat:
            return self.chat([{"role": "user", "content": prompt}], tags=tags, max_new_tokens=max_new_tokens,
                             sampling=sampling, stop=stop, session_id=session_id, request_id=request_id,
                             caller=caller)
        return self.journey(prompt, chat=False, tags=tags, max_new_tokens=max_new_tokens, sampling=sampling,
                            stop=stop, session_id=session_id, request_id=request_id, caller=caller).run()

    def journey(
        self,
        request: str | Messages,
        *,
        chat: bool,
        tags: Iterable[str] = (),
        max_new_tokens: int | None = None,
        sampling: Sampling = GREEDY,
        stop: Sequence[str] = (),
        session_id: str = "",
        request_id: str | None = None,
        caller: str | None = None,
    ) -> Request:
        """The request encoded and routed, not yet run: `chat`/`generate` return its `run()`, and
        AsyncTandemClient drives the same journey from a worker thread (one implementation for both)."""
        ids = self.local.encode_chat(request) if chat else self.local.encode_prompt(request, chat=False)
        return Request(self, request, ids, chat=chat, tags=tags, max_new_tokens=max_new_tokens, sampling=sampling,
                       stop=tuple(stop), session_id=session_id, request_id=request_id, caller=caller)

    def complete(self, prompt_or_messages: str | Messages, **options: Any) -> Answer:
        """The whole answer and its record, blocking."""
        if isinstance(prompt_or_messages, str):
            events = self.generate(prompt_or_messages, **options)
        else:
            events = self.chat(prompt_or_messages, **options)
        for event in events:
            if isinstance(event, Done):
                return Answer(event.text, event.tier, event.finish_reason, event.record)
        raise RuntimeError("the stream ended without a Done event")
