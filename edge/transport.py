"""The edge's connection to the cloud tier: one place where gRPC meets the SDK.

Every call goes through the circuit breaker and, until the first response has
arrived, through the retry policy, all bounded by the request's deadline.
gRPC status codes become the SDK's errors here and nowhere else: transient
ones (the cloud is down, overloaded or too slow) become
`CloudUnavailableError`, which the policy's fallback handles; the rest mean the
cloud refused this request and become `CloudRejectedError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import grpc

from cloud.client import CloudClient
from cloud.servicer import RETRY_AFTER_KEY
from edge.errors import CloudError, CloudRejectedError, CloudUnavailableError, HandoffRefusedError
from edge.resilience import DEFAULT_RETRY, CircuitBreaker, RetryPolicy
from tandem_rpc.v1 import cloud_pb2

# Transient: worth a retry before the first token, and the fallback's business after it.
UNAVAILABLE_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}


def map_rpc_error(exc: grpc.RpcError, target: str) -> CloudError:
    """The SDK error for a failed call, with the server's own message."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    detail = exc.details() if hasattr(exc, "details") else str(exc)
    name = code.name if code else "UNKNOWN"
    if code in UNAVAILABLE_CODES:
        return CloudUnavailableError(f"cloud at {target} unavailable ({name}): {detail}", code=name,
                                     retry_after_s=_retry_after_s(exc))
    return CloudRejectedError(f"cloud at {target} rejected the request ({name}): {detail}", code=name)


def _retry_after_s(exc: grpc.RpcError) -> float | None:
    """The server's `retry-after-ms` trailer (sent with UNAVAILABLE when it is overloaded)."""
    trailers = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == RETRY_AFTER_KEY:
            try:
                return max(0.0, int(value) / 1000)
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class CloudTarget:
    """Where the cloud tier is and how to reach it."""

    address: str
    token: str | None = None
    root_certificates: bytes | None = None


class CloudTransport:
    """Calls to one cloud server with retries, a breaker and deadlines."""

    def __init__(
        self,
        target: CloudTarget,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        breaker: CircuitBreaker | None = None,
        client: CloudClient | None = None,
    ) -> None:
        self.target = target
        self.retry = retry
        self.breaker = breaker or CircuitBreaker()
        # `client` makes the calls: by default a blocking gRPC channel (the async client passes one on grpc.aio).
        self._client = client or CloudClient(target.address, token=target.token,
                                             root_certificates=target.root_certificates)
        self._info: cloud_pb2.InfoResponse | None = None

    def close(self) -> None:
        self._client.close()

    def info(self, *, deadline: float) -> cloud_pb2.InfoResponse:
        """The server's Info, fetched once per transport (model and tokenizer do not change under a server)."""
        if self._info is None:
            self._info = self._call(lambda timeout: self._client.info(timeout=timeout), deadline)
        return self._info

    def check_handoff(self, tokenizer_fingerprint: str, vocab_size: int, *, deadline: float) -> cloud_pb2.InfoResponse:
        """Refuse to hand off token IDs to a cloud whose tokenizer is not ours."""
        info = self.info(deadline=deadline)
        if info.tokenizer_fingerprint != tokenizer_fingerprint:
            raise HandoffRefusedError(
                f"the cloud model {info.model_id!r} at {self.target.address} uses a different tokenizer "
                f"(fingerprint {info.tokenizer_fingerprint[:12]}, ours {tokenizer_fingerprint[:12]}); "
                "token IDs would mean different text, so nothing is handed off. Serve a cloud model that "
                "shares the edge model's tokenizer."
            )
        if info.vocab_size and info.vocab_size < vocab_size:
            raise HandoffRefusedError(
                f"the cloud model accepts token IDs below {info.vocab_size}, the edge tokenizer has {vocab_size}"
            )
        return info

    def generate(
        self, request: cloud_pb2.GenerateRequest, *, deadline: float
    ) -> Iterator[cloud_pb2.GenerateResponse]:
        """Open a Generate stream; retried until its first response arrives, then streamed.

        The returned iterator raises `CloudUnavailableError` if the stream breaks
        mid-way (the server died, the deadline passed) and cancels the call when
        it is closed early, so the server frees its slot.
        """
        def open_stream(timeout: float):
            call = self._client.stream(request, timeout=timeout)
            return call, next(call)

        call, first = self._call(open_stream, deadline)
        return self._rest(call, first)

    def upload_kv(
        self, token_ids: list[int], make_frames: Callable[[], Iterable[bytes]], *, codec: str, reserve_tokens: int,
        request_id: str, deadline: float,
    ) -> cloud_pb2.KVUploadResult:
        """Upload a cache (frames made afresh by `make_frames` on each attempt); returns its handle."""
        return self._call(lambda timeout: self._client.upload_kv(
            token_ids, make_frames(), codec=codec, reserve_tokens=reserve_tokens, request_id=request_id,
            timeout=timeout), deadline)

    def resume(self, kv_handle: str, request: cloud_pb2.GenerateRequest, *, deadline: float
               ) -> Iterator[cloud_pb2.GenerateResponse]:
        """Open a ResumeFromKV stream, like `generate`."""
        def open_stream(timeout: float):
            call = self._client.resume_stream(kv_handle, request, timeout=timeout)
            return call, next(call)

        call, first = self._call(open_stream, deadline)
        return self._rest(call, first)

    def prefill_kv(
        self, token_ids: list[int], *, codec: str, receiver: cloud_pb2.ModelFingerprint, allow_cross_precision: bool,
        request_id: str, deadline: float,
    ) -> Iterator[cloud_pb2.KVChunk]:
        """Open a PrefillKV stream: a KVStart, then frames."""
        def open_stream(timeout: float):
            call = self._client.prefill_kv(token_ids, codec=codec, receiver=receiver,
                                           allow_cross_precision=allow_cross_precision, request_id=request_id,
                                           timeout=timeout)
            return call, next(call)

        call, first = self._call(open_stream, deadline)
        return self._rest(call, first)

    def _rest(self, call, first) -> Iterator:
        try:
            yield first
            for response in call:
                yield response
        except grpc.RpcError as exc:
            self.breaker.record_failure()
            raise map_rpc_error(exc, self.target.address) from None
        finally:
            call.cancel()

    def _call(self, fn, deadline: float):
        """`fn(timeout)` under the breaker and the retry policy, never past `deadline`."""
        failures: list[CloudError] = []

        def attempt():
            if not self.breaker.allow():
                if failures:  # this call's own failures opened it: report the cause, not the breaker
                    raise CloudUnavailableError(str(failures[-1]), code=failures[-1].code, retryable=False)
                raise CloudUnavailableError(
                    f"cloud at {self.target.address} is failing; not trying again for another "
                    f"{self.breaker.remaining_cooldown():.1f} s (circuit breaker open)",
                    code="CIRCUIT_OPEN", retryable=False,
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CloudUnavailableError(f"deadline passed before the cloud at {self.target.address} answered",
                                            code="DEADLINE_EXCEEDED", retryable=False)
            try:
                result = fn(remaining)
            except grpc.RpcError as exc:
                error = map_rpc_error(exc, self.target.address)
                if isinstance(error, CloudUnavailableError):
                    self.breaker.record_failure()
                    failures.append(error)
                raise error from None
            except StopIteration:
                raise CloudUnavailableError(f"cloud at {self.target.address} closed the stream without a response",
                                            code="EMPTY_STREAM") from None
            self.breaker.record_success()
            return result

        return self.retry.run(attempt, deadline=deadline)
