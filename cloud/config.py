"""Server settings as one value object, with the defaults a single host starts from."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_MAX_QUEUE = 16
DEFAULT_MAX_NEW_TOKENS = 2048
DEFAULT_NEW_TOKENS = 256
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # room for later KV chunks of <= 1 MiB plus headers
DEFAULT_SESSION_CACHE_BYTES = 1024 * 1024 * 1024
DEFAULT_MAX_SESSIONS = 1024
DEFAULT_MAX_STOP_STRINGS = 16
DEFAULT_MAX_STOP_STRING_CHARS = 256
DEFAULT_MAX_ID_CHARS = 256
DEFAULT_GRACE_S = 10.0
DEFAULT_PREFILL_CHUNK = 512
DEFAULT_KV_MAX_UPLOAD_BYTES = 512 * 1024 * 1024  # an 8k-token fp16 SmolLM2 cache is ~190 MB
DEFAULT_KV_STORE_BYTES = 1024 * 1024 * 1024     # decoded caches waiting for their ResumeFromKV
DEFAULT_KV_TTL_S = 120.0
DEFAULT_KV_MAX_UPLOADS = 2                        # streams decoding an upload at once
DEFAULT_KV_IDLE_S = 10.0          # an upload that sends nothing this long is dropped
DEFAULT_KV_MAX_UPLOAD_S = 300.0   # nor does any upload take longer (512 MB at ~2 MB/s), dripped or not
DEFAULT_KV_PER_CALLER = 1         # uploads one caller sends at once, and prefilled caches it has not yet read
DEFAULT_STREAM_STALL_S = 30.0     # a stream whose client reads nothing this long is ended
DEFAULT_MAX_STREAM_S = 900.0      # no stream lives longer (2,048 tokens on a slow CPU take a few minutes)
DEFAULT_KEEPALIVE_S = 60.0        # the server pings an idle connection this often to find dead peers
DEFAULT_MAX_CONNECTION_AGE_S = 3600.0  # then a connection is asked to reconnect (its streams get max_stream_s)


@dataclass(frozen=True)
class ServerConfig:
    """What one server admits and keeps; every limit is reported by `Info`."""

    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_queue: int = DEFAULT_MAX_QUEUE
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    default_new_tokens: int = DEFAULT_NEW_TOKENS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    session_cache_bytes: int = DEFAULT_SESSION_CACHE_BYTES
    max_sessions: int = DEFAULT_MAX_SESSIONS
    max_stop_strings: int = DEFAULT_MAX_STOP_STRINGS
    max_stop_string_chars: int = DEFAULT_MAX_STOP_STRING_CHARS
    max_id_chars: int = DEFAULT_MAX_ID_CHARS
    prefill_chunk: int = DEFAULT_PREFILL_CHUNK
    kv_max_upload_bytes: int = DEFAULT_KV_MAX_UPLOAD_BYTES
    kv_store_bytes: int = DEFAULT_KV_STORE_BYTES
    kv_ttl_s: float = DEFAULT_KV_TTL_S
    kv_max_uploads: int = DEFAULT_KV_MAX_UPLOADS
    kv_cross_precision: bool = True  # accept caches from a differently quantized twin (same family)
    kv_idle_s: float = DEFAULT_KV_IDLE_S
    kv_max_upload_s: float = DEFAULT_KV_MAX_UPLOAD_S
    kv_per_caller: int = DEFAULT_KV_PER_CALLER
    stream_stall_s: float = DEFAULT_STREAM_STALL_S
    max_stream_s: float = DEFAULT_MAX_STREAM_S
    keepalive_s: float = DEFAULT_KEEPALIVE_S
    max_connection_age_s: float = DEFAULT_MAX_CONNECTION_AGE_S

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be >= {low} (got {getattr(self, name)})"
            for name, low in (
                ("max_concurrency", 1), ("max_queue", 0), ("max_new_tokens", 1), ("default_new_tokens", 1),
                ("max_message_bytes", 1024), ("session_cache_bytes", 0), ("max_sessions", 0),
                ("max_stop_strings", 0), ("max_stop_string_chars", 1), ("max_id_chars", 1), ("prefill_chunk", 16),
                ("kv_max_upload_bytes", 0), ("kv_store_bytes", 0), ("kv_ttl_s", 0.001), ("kv_max_uploads", 0),
                ("kv_idle_s", 0.01), ("kv_max_upload_s", 0.01), ("kv_per_caller", 1), ("stream_stall_s", 0.01),
                ("max_stream_s", 0.01), ("keepalive_s", 1.0),
                ("max_connection_age_s", 1.0),
            )
            if getattr(self, name) < low
        ]
        if problems:
            raise ValueError("invalid server config: " + "; ".join(problems))

    @property
    def worker_threads(self) -> int:
        """Threads for the blocking part of RPCs (cloud.streams): every admitted and queued stream and
        every upload holds one while it runs, plus room for refusing overload promptly. Health and Info
        need none, and a client that stops reading frees its thread (it holds only its messages)."""
        return self.max_concurrency + self.max_queue + self.kv_max_uploads + 4
