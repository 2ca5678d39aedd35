"""Bearer-token authentication as a server interceptor, and who a caller is.

Clients send `authorization: Bearer <token>` metadata. Tokens are compared in
constant time against every configured token (several allow rotation). The
health service stays open: load balancers and Kubernetes gRPC probes do not
send credentials. A refused call is logged (method, peer, reason, never the
token) and counted in `tandem_cloud_auth_failures`.

The principal owns what the server caches for a caller (session prefixes,
uploaded KV caches). With auth it is the token the caller proved (as a hash);
without auth it is the caller's network address without the port, so callers
on different hosts never share caches (callers behind one NAT or proxy do:
configure tokens to tell them apart).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path
from typing import Awaitable, Callable, Iterable, Sequence

import grpc

log = logging.getLogger(__name__)

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


def bearer_token(header: str) -> bytes:
    """The token of an 'authorization: Bearer <token>' value."""
    return header[len(_SCHEME):].strip().encode()


def check_authorization(header: str | None, tokens: Iterable[bytes]) -> str | None:
    """None if `header` carries one of `tokens`, else the reason it is refused."""
    if header is None:
        return "missing credentials: send metadata 'authorization: Bearer <token>'"
    if not header[: len(_SCHEME)].lower() == _SCHEME:
        return "malformed credentials: the authorization metadata must be 'Bearer <token>'"
    given = bearer_token(header)
    matched = False
    for token in tokens:  # no early exit: time does not depend on which token matched
        matched |= hmac.compare_digest(given, token)
    return None if matched else "invalid bearer token"


def _bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    return next((str(value) for key, value in metadata or () if key == "authorization"), None)


def principal_of(metadata: Sequence[tuple[str, str | bytes]] | None, peer: str, *, authenticated: bool) -> str:
    """Who owns what this call caches: `token:<hash>` with auth, else `peer:<address without port>`."""
    header = _bearer(metadata) if authenticated else None
    if header is not None:
        return "token:" + hashlib.sha256(bearer_token(header)).hexdigest()[:24]
    kind, _, address = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        address = address.rpartition(":")[0] or address  # "[::1]:5000" -> "[::1]", "1.2.3.4:5000" -> "1.2.3.4"
    return f"peer:{kind}:{address}"


def _refusal(handler: grpc.RpcMethodHandler, reason: str, method: str,
             on_refused: Callable[[str], None]) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that logs, counts and aborts with UNAUTHENTICATED."""

    async def abort(request_or_iterator: object, context: grpc.aio.ServicerContext) -> None:
        log.warning("refused %s from %s: %s", method, context.peer(), reason)
        on_refused(reason.partition(":")[0])
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

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


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """`on_refused(reason)` is called for every refused call ('missing credentials', 'invalid bearer token', ...)."""

    def __init__(self, tokens: Iterable[str], on_refused: Callable[[str], None] = lambda reason: None) -> None:
        self._tokens = [t.encode() for t in tokens]
        self._on_refused = on_refused
        if not self._tokens:
            raise ValueError("BearerTokenInterceptor needs at least one token")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        reason = check_authorization(_bearer(handler_call_details.invocation_metadata), self._tokens)
        return handler if reason is None else _refusal(handler, reason, method, self._on_refused)
