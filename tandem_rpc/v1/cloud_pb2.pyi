from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EscalationReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ESCALATION_REASON_UNSPECIFIED: _ClassVar[EscalationReason]
    ESCALATION_REASON_LOW_CONFIDENCE: _ClassVar[EscalationReason]
    ESCALATION_REASON_CONTEXT_TOO_LONG: _ClassVar[EscalationReason]
    ESCALATION_REASON_POLICY: _ClassVar[EscalationReason]
    ESCALATION_REASON_EDGE_UNAVAILABLE: _ClassVar[EscalationReason]
    ESCALATION_REASON_DIRECT: _ClassVar[EscalationReason]

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
    FINISH_REASON_STOP_STRING: _ClassVar[FinishReason]
ESCALATION_REASON_UNSPECIFIED: EscalationReason
ESCALATION_REASON_LOW_CONFIDENCE: EscalationReason
ESCALATION_REASON_CONTEXT_TOO_LONG: EscalationReason
ESCALATION_REASON_POLICY: EscalationReason
ESCALATION_REASON_EDGE_UNAVAILABLE: EscalationReason
ESCALATION_REASON_DIRECT: EscalationReason
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_STOP_STRING: FinishReason

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelFingerprint(_message.Message):
    __slots__ = ("architecture", "weights_family", "quantization")
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FAMILY_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    architecture: str
    weights_family: str
    quantization: str
    def __init__(self, architecture: _Optional[str] = ..., weights_family: _Optional[str] = ..., quantization: _Optional[str] = ...) -> None: ...

class KVLayout(_message.Message):
    __slots__ = ("n_layers", "n_kv_heads", "head_dim", "dtype", "keys_post_rope", "axis_order")
    N_LAYERS_FIELD_NUMBER: _ClassVar[int]
    N_KV_HEADS_FIELD_NUMBER: _ClassVar[int]
    HEAD_DIM_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    KEYS_POST_ROPE_FIELD_NUMBER: _ClassVar[int]
    AXIS_ORDER_FIELD_NUMBER: _ClassVar[int]
    n_layers: int
    n_kv_heads: int
    head_dim: int
    dtype: str
    keys_post_rope: bool
    axis_order: str
    def __init__(self, n_layers: _Optional[int] = ..., n_kv_heads: _Optional[int] = ..., head_dim: _Optional[int] = ..., dtype: _Optional[str] = ..., keys_post_rope: _Optional[bool] = ..., axis_order: _Optional[str] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_prompt_tokens", "max_new_tokens", "default_new_tokens", "max_message_bytes", "max_concurrency", "max_queue", "max_stop_strings", "max_stop_string_chars")
    MAX_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    MAX_STOP_STRINGS_FIELD_NUMBER: _ClassVar[int]
    MAX_STOP_STRING_CHARS_FIELD_NUMBER: _ClassVar[int]
    max_prompt_tokens: int
    max_new_tokens: int
    default_new_tokens: int
    max_message_bytes: int
    max_concurrency: int
    max_queue: int
    max_stop_strings: int
    max_stop_string_chars: int
    def __init__(self, max_prompt_tokens: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., default_new_tokens: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., max_queue: _Optional[int] = ..., max_stop_strings: _Optional[int] = ..., max_stop_string_chars: _Optional[int] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("model_id", "model_fingerprint", "tokenizer_fingerprint", "max_context", "vocab_size", "stop_token_ids", "kv_layout", "kv_codecs", "limits", "server_version", "capabilities", "kv_limits")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    STOP_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    KV_LAYOUT_FIELD_NUMBER: _ClassVar[int]
    KV_CODECS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    KV_LIMITS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model_fingerprint: ModelFingerprint
    tokenizer_fingerprint: str
    max_context: int
    vocab_size: int
    stop_token_ids: _containers.RepeatedScalarFieldContainer[int]
    kv_layout: KVLayout
    kv_codecs: _containers.RepeatedScalarFieldContainer[str]
    limits: Limits
    server_version: str
    capabilities: Capabilities
    kv_limits: KVLimits
    def __init__(self, model_id: _Optional[str] = ..., model_fingerprint: _Optional[_Union[ModelFingerprint, _Mapping]] = ..., tokenizer_fingerprint: _Optional[str] = ..., max_context: _Optional[int] = ..., vocab_size: _Optional[int] = ..., stop_token_ids: _Optional[_Iterable[int]] = ..., kv_layout: _Optional[_Union[KVLayout, _Mapping]] = ..., kv_codecs: _Optional[_Iterable[str]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., server_version: _Optional[str] = ..., capabilities: _Optional[_Union[Capabilities, _Mapping]] = ..., kv_limits: _Optional[_Union[KVLimits, _Mapping]] = ...) -> None: ...

class Capabilities(_message.Message):
    __slots__ = ("engine", "kv_import", "kv_export", "entropy", "top_k")
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    KV_IMPORT_FIELD_NUMBER: _ClassVar[int]
    KV_EXPORT_FIELD_NUMBER: _ClassVar[int]
    ENTROPY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    engine: str
    kv_import: bool
    kv_export: bool
    entropy: str
    top_k: int
    def __init__(self, engine: _Optional[str] = ..., kv_import: _Optional[bool] = ..., kv_export: _Optional[bool] = ..., entropy: _Optional[str] = ..., top_k: _Optional[int] = ...) -> None: ...

class KVLimits(_message.Message):
    __slots__ = ("max_upload_bytes", "max_frame_bytes", "max_tokens", "handle_ttl_ms", "cross_precision")
    MAX_UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    HANDLE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    CROSS_PRECISION_FIELD_NUMBER: _ClassVar[int]
    max_upload_bytes: int
    max_frame_bytes: int
    max_tokens: int
    handle_ttl_ms: int
    cross_precision: bool
    def __init__(self, max_upload_bytes: _Optional[int] = ..., max_frame_bytes: _Optional[int] = ..., max_tokens: _Optional[int] = ..., handle_ttl_ms: _Optional[int] = ..., cross_precision: _Optional[bool] = ...) -> None: ...

class KVStart(_message.Message):
    __slots__ = ("token_ids", "codec", "reserve_tokens", "request_id", "sender", "prefill_ms")
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    RESERVE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    PREFILL_MS_FIELD_NUMBER: _ClassVar[int]
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    codec: str
    reserve_tokens: int
    request_id: str
    sender: ModelFingerprint
    prefill_ms: float
    def __init__(self, token_ids: _Optional[_Iterable[int]] = ..., codec: _Optional[str] = ..., reserve_tokens: _Optional[int] = ..., request_id: _Optional[str] = ..., sender: _Optional[_Union[ModelFingerprint, _Mapping]] = ..., prefill_ms: _Optional[float] = ...) -> None: ...

class KVChunk(_message.Message):
    __slots__ = ("start", "frame")
    START_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    start: KVStart
    frame: bytes
    def __init__(self, start: _Optional[_Union[KVStart, _Mapping]] = ..., frame: _Optional[bytes] = ...) -> None: ...

class KVUploadResult(_message.Message):
    __slots__ = ("kv_handle", "n_tokens", "frames", "bytes", "decode_ms", "expires_in_ms")
    KV_HANDLE_FIELD_NUMBER: _ClassVar[int]
    N_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_MS_FIELD_NUMBER: _ClassVar[int]
    kv_handle: str
    n_tokens: int
    frames: int
    bytes: int
    decode_ms: float
    expires_in_ms: int
    def __init__(self, kv_handle: _Optional[str] = ..., n_tokens: _Optional[int] = ..., frames: _Optional[int] = ..., bytes: _Optional[int] = ..., decode_ms: _Optional[float] = ..., expires_in_ms: _Optional[int] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("kv_handle", "generate")
    KV_HANDLE_FIELD_NUMBER: _ClassVar[int]
    GENERATE_FIELD_NUMBER: _ClassVar[int]
    kv_handle: str
    generate: GenerateRequest
    def __init__(self, kv_handle: _Optional[str] = ..., generate: _Optional[_Union[GenerateRequest, _Mapping]] = ...) -> None: ...

class PrefillKVRequest(_message.Message):
    __slots__ = ("request_id", "token_ids", "codec", "receiver", "allow_cross_precision")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    ALLOW_CROSS_PRECISION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    codec: str
    receiver: ModelFingerprint
    allow_cross_precision: bool
    def __init__(self, request_id: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., codec: _Optional[str] = ..., receiver: _Optional[_Union[ModelFingerprint, _Mapping]] = ..., allow_cross_precision: _Optional[bool] = ...) -> None: ...

class Sampling(_message.Message):
    __slots__ = ("temperature", "top_k", "top_p", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_k: int
    top_p: float
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("request_id", "session_id", "token_ids", "sampling", "max_new_tokens", "stop_strings", "escalation_reason", "escalation_detail")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STOP_STRINGS_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_REASON_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_DETAIL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    session_id: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    sampling: Sampling
    max_new_tokens: int
    stop_strings: _containers.RepeatedScalarFieldContainer[str]
    escalation_reason: EscalationReason
    escalation_detail: str
    def __init__(self, request_id: _Optional[str] = ..., session_id: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., sampling: _Optional[_Union[Sampling, _Mapping]] = ..., max_new_tokens: _Optional[int] = ..., stop_strings: _Optional[_Iterable[str]] = ..., escalation_reason: _Optional[_Union[EscalationReason, str]] = ..., escalation_detail: _Optional[str] = ...) -> None: ...

class TokenChunk(_message.Message):
    __slots__ = ("token_ids", "text", "logprobs", "entropies", "margins")
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    ENTROPIES_FIELD_NUMBER: _ClassVar[int]
    MARGINS_FIELD_NUMBER: _ClassVar[int]
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    text: str
    logprobs: _containers.RepeatedScalarFieldContainer[float]
    entropies: _containers.RepeatedScalarFieldContainer[float]
    margins: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, token_ids: _Optional[_Iterable[int]] = ..., text: _Optional[str] = ..., logprobs: _Optional[_Iterable[float]] = ..., entropies: _Optional[_Iterable[float]] = ..., margins: _Optional[_Iterable[float]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "cached_prompt_tokens", "generated_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    cached_prompt_tokens: int
    generated_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., cached_prompt_tokens: _Optional[int] = ..., generated_tokens: _Optional[int] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queue_ms", "prefill_ms", "decode_ms", "ttft_ms", "total_ms")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_MS_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    prefill_ms: float
    decode_ms: float
    ttft_ms: float
    total_ms: float
    def __init__(self, queue_ms: _Optional[float] = ..., prefill_ms: _Optional[float] = ..., decode_ms: _Optional[float] = ..., ttft_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class GenerateResult(_message.Message):
    __slots__ = ("finish_reason", "usage", "timings", "request_id", "model_id")
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    request_id: str
    model_id: str
    def __init__(self, finish_reason: _Optional[_Union[FinishReason, str]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., request_id: _Optional[str] = ..., model_id: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("chunk", "result")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    chunk: TokenChunk
    result: GenerateResult
    def __init__(self, chunk: _Optional[_Union[TokenChunk, _Mapping]] = ..., result: _Optional[_Union[GenerateResult, _Mapping]] = ...) -> None: ...
