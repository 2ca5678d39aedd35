"""Bearer-token authentication as a server interceptor.

Clients send `authorization: Bearer <token>` metadata. Tokens are compared in
constant time against every configured token (several allow rotation). The
health service stays open: load balancers and Kubernetes gRPC probes do not
send credentials.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Callable, Iterable

import grpc

OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)
_SCHEME = "bearer "


def load_tokens(*, token: str | None = None, token_file: str | Path | None = None) -> list[str]:
    """Tokens from the command line and/or a file (one per line, blank lines and #comments skipped)."""
    tokens = [token.strip()] if token and token.strip() else []
    if token_file is not None:
        for line in Path(token_file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                tokens.append(line)
        if not tokens:
            raise ValueError(f"auth token file {token_file} holds no token")
    return tokens


def check_authorization(header: str | None, tokens: Iterable[bytes]) -> str | None:
    """None if `header` carries one of `tokens`, else the reason it is refused."""
    if header is None:
        return "missing credentials: send metadata 'authorization: Bearer <token>'"
    if not header[: len(_SCHEME)].lower() == _SCHEME:
        return "malformed credentials: the authorization metadata must be 'Bearer <token>'"
    given = header[len(_SCHEME):].strip().encode()
    matched = False
    for token in tokens:  # no early exit: time does not depend on which token matched
        matched |= hmac.compare_digest(given, token)
    return None if matched else "invalid bearer token"


def _refusal(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that only aborts with UNAUTHENTICATED."""

    def abort(request_or_iterator: object, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    kinds: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(
        abort,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class BearerTokenInterceptor(grpc.ServerInterceptor):
    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = [t.encode() for t in tokens]
        if not self._tokens:
            raise ValueError("BearerTokenInterceptor needs at least one token")

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        header = next(
            (value for key, value in handler_call_details.invocation_metadata or () if key == "authorization"),
            None,
        )
        reason = check_authorization(header, self._tokens)
        return handler if reason is None else _refusal(handler, reason)
