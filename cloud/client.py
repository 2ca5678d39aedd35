"""A thin client for the CloudInference service: channel set-up, requests, and
collecting a stream into one result. The edge SDK builds its transport on it;
tests and the benchmark use it directly. gRPC errors are left as grpc.RpcError:
mapping them to the SDK's error tree is the SDK's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import grpc

from cloud.config import DEFAULT_MAX_MESSAGE_BYTES
from tandem_rpc.v1 import cloud_pb2, cloud_pb2_grpc

DEFAULT_TIMEOUT_S = 60.0
# gRPC's default reconnect back-off grows from 1 s by 1.6x up to 120 s, so a client that saw the
# cloud down for a minute kept failing for tens of seconds after it came back. Capped at 1 s, a
# restarted cloud is reached within about a second; the SDK's breaker cool-down is set from this.
MAX_RECONNECT_BACKOFF_MS = 1000
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ("grpc.keepalive_time_ms", 60_000),  # find a dead connection during a long stream (server permits 30 s)
    ("grpc.keepalive_timeout_ms", 20_000),
)


SESSION_HEADER = "x-tandem-session"  # deploy/envoy.yaml routes on it (a session stays on one gateway replica)


def generate_request(
    token_ids: Sequence[int],
    *,
    session_id: str = "",
    request_id: str = "",
    max_new_tokens: int = 0,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop_strings: Iterable[str] = (),
    escalation_reason: int = cloud_pb2.ESCALATION_REASON_DIRECT,
    escalation_detail: str = "",
) -> cloud_pb2.GenerateRequest:
    sampling = cloud_pb2.Sampling(temperature=temperature, top_k=top_k, top_p=top_p)
    if seed is not None:
        sampling.seed = seed
    return cloud_pb2.GenerateRequest(
        request_id=request_id, session_id=session_id, token_ids=list(token_ids), sampling=sampling,
        max_new_tokens=max_new_tokens, stop_strings=list(stop_strings), escalation_reason=escalation_reason,
        escalation_detail=escalation_detail,
    )


@dataclass
class Completion:
    """A whole Generate stream: the tokens with their signals, and the final result."""

    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    logprobs: list[float] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    result: cloud_pb2.GenerateResult | None = None


def collect(responses: Iterable[cloud_pb2.GenerateResponse]) -> Completion:
    out = Completion()
    texts = []
    for response in responses:
        if response.HasField("chunk"):
            c = response.chunk
            out.token_ids += c.token_ids
            texts.append(c.text)
            out.logprobs += c.logprobs
            out.entropies += c.entropies
            out.margins += c.margins
        else:
            out.result = response.result
    out.text = "".join(texts)
    return out


class CloudClient:
    """One channel to a cloud server. `root_certificates` (PEM) switches to TLS;
    `token` is sent as `authorization: Bearer <token>` on every call."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        root_certificates: bytes | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *CHANNEL_OPTIONS,
        ]
        if root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = cloud_pb2_grpc.CloudInferenceStub(self.channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def _session_metadata(self, request: cloud_pb2.GenerateRequest) -> tuple[tuple[str, str], ...]:
        """The call's metadata, with the session id as a header a load balancer can hash on, so one
        conversation's turns reach the replica that holds its prefix cache."""
        if not request.session_id:
            return self._metadata
        return (*self._metadata, (SESSION_HEADER, request.session_id))

    def info(self, *, timeout: float = DEFAULT_TIMEOUT_S) -> cloud_pb2.InfoResponse:
        return self.stub.Info(cloud_pb2.InfoRequest(), timeout=timeout, metadata=self._metadata)

    def stream(self, request: cloud_pb2.GenerateRequest, *, timeout: float = DEFAULT_TIMEOUT_S):
        """The live call: iterate it for responses, `.cancel()` it to stop the server's work."""
        return self.stub.Generate(request, timeout=timeout, metadata=self._session_metadata(request))

    def generate(self, token_ids: Sequence[int], *, timeout: float = DEFAULT_TIMEOUT_S, **options) -> Completion:
        """Run one Generate to the end; `options` are those of `generate_request`."""
        return collect(self.stream(generate_request(token_ids, **options), timeout=timeout))

    def upload_kv(
        self, token_ids: Sequence[int], frames: Iterable[bytes], *, codec: str, reserve_tokens: int = 0,
        request_id: str = "", timeout: float = DEFAULT_TIMEOUT_S,
    ) -> cloud_pb2.KVUploadResult:
        """Stream a cache's frames (engine.kv.encode_cache) for `token_ids`; returns its handle."""
        def chunks() -> Iterator[cloud_pb2.KVChunk]:
            yield cloud_pb2.KVChunk(start=cloud_pb2.KVStart(
                token_ids=list(token_ids), codec=codec, reserve_tokens=reserve_tokens, request_id=request_id))
            for frame in frames:
                yield cloud_pb2.KVChunk(frame=frame)

        return self.stub.UploadKV(chunks(), timeout=timeout, metadata=self._metadata)

    def resume_stream(self, kv_handle: str, request: cloud_pb2.GenerateRequest, *,
                      timeout: float = DEFAULT_TIMEOUT_S):
        """ResumeFromKV as a live call (iterate it; `.cancel()` stops the server's work)."""
        return self.stub.ResumeFromKV(cloud_pb2.ResumeRequest(kv_handle=kv_handle, generate=request),
                                      timeout=timeout, metadata=self._session_metadata(request))

    def resume(self, kv_handle: str, token_ids: Sequence[int], *, timeout: float = DEFAULT_TIMEOUT_S,
               **options) -> Completion:
        """Run one ResumeFromKV to the end; `options` are those of `generate_request`."""
        return collect(self.resume_stream(kv_handle, generate_request(token_ids, **options), timeout=timeout))

    def prefill_kv(
        self, token_ids: Sequence[int], *, codec: str, receiver: cloud_pb2.ModelFingerprint,
        allow_cross_precision: bool = False, request_id: str = "", timeout: float = DEFAULT_TIMEOUT_S,
    ):
        """PrefillKV as a live call: a KVStart, then frames."""
        request = cloud_pb2.PrefillKVRequest(request_id=request_id, token_ids=list(token_ids), codec=codec,
                                             receiver=receiver, allow_cross_precision=allow_cross_precision)
        return self.stub.PrefillKV(request, timeout=timeout, metadata=self._metadata)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "CloudClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
