"""The cloud tier's address as the edge dials it: HOST:PORT, checked before the first call.

gRPC takes many target forms and reports a malformed one only as "unavailable"
at the first call; a user who writes `http://host:50051` or forgets the port
deserves to hear so when the client is built. Imports nothing heavy.
"""

from __future__ import annotations

import socket

SCHEME_HINT = "gRPC addresses have no scheme"
MAX_PORT = 65535


def split_address(text: str) -> tuple[str, int]:
    """HOST:PORT (or [IPv6]:PORT) -> (host, port); ValueError saying what is wrong and what to write."""
    example = "e.g. 127.0.0.1:50051 or gpu-host:50051"
    if "://" in text or text.startswith(("dns:", "unix:", "ipv4:", "ipv6:")):
        scheme = text.split(":", 1)[0]
        hint = "; for TLS add --tls-ca (SDK: root_certificates)" if scheme in ("https", "grpcs") else ""
        raise ValueError(f"{text!r}: {SCHEME_HINT} ({scheme}:); write HOST:PORT, {example}{hint}")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{text!r} is not [IPv6]:PORT, e.g. [::1]:50051")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r} has no port: write HOST:PORT, {example}")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:50051")
    if not host or any(c.isspace() for c in host) or "/" in host:
        raise ValueError(f"{text!r} has no valid host: write HOST:PORT, {example}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= MAX_PORT:
        raise ValueError(f"{text!r}: the port must be 1-{MAX_PORT}, {example}")
    return host, int(port_text)


def check_resolvable(text: str) -> str | None:
    """None when HOST:PORT's host resolves, else a sentence saying it does not."""
    host, number = split_address(text)
    try:
        socket.getaddrinfo(host, number, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return f"cannot resolve the host {host!r} of {text!r} ({exc.args[-1]}); check the name or use an IP address"
    return None
