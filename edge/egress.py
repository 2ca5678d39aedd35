"""The one gate every outgoing request message passes before it leaves the device.

`router.decide` says what a request may send; this filter makes sure that is
all that is sent, field by field, whatever the field. Each string, bytes and
token-ID field of every message the SDK sends to the cloud has a rule in
`FIELD_RULES`; a field without one is refused at run time (and a test fails
the moment a field is added to the proto without one):

- `text`: free text (stop strings, request and session ids, the escalation
  detail, fingerprint names): the detectors run on it; a local_only finding
  refuses the message, a redact finding becomes the request's placeholder.
  A request id the SDK issued itself (the random one it makes up when the
  caller gives none) holds nothing of the request and passes as it is in the
  request_id fields: random hex can look like a checksummed ID to a detector,
  and a request must not fail by the luck of its id;
- `token_ids` (the prompt and the kept draft, already built from the redacted
  request): decoded and checked the same way; anything left to redact refuses them;
- `kv_frame`: a compressed KV cache can be neither read nor redacted, so it
  may leave only when what it encodes is exactly the request as it may leave;
- `codec` and `handle`: closed vocabularies (a codec name, a server-issued handle).

A refusal raises `EgressRefusedError`; nothing of the message has been sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from edge.errors import PolicyDeniedError
from router import Policy, TagAction, detect
from router.policy import KV_CODECS
from router.redact import Redaction

_PACKAGE = "tandem.rpc.v1."
FIELD_RULES: dict[str, str] = {
    f"{_PACKAGE}{name}": rule
    for name, rule in {
        "GenerateRequest.request_id": "text",
        "GenerateRequest.session_id": "text",
        "GenerateRequest.token_ids": "token_ids",
        "GenerateRequest.stop_strings": "text",
        "GenerateRequest.escalation_detail": "text",
        "ResumeRequest.kv_handle": "handle",
        "KVStart.token_ids": "token_ids",
        "KVStart.codec": "codec",
        "KVStart.request_id": "text",
        "KVChunk.frame": "kv_frame",
        "PrefillKVRequest.request_id": "text",
        "PrefillKVRequest.token_ids": "token_ids",
        "PrefillKVRequest.codec": "codec",
        "ModelFingerprint.architecture": "text",
        "ModelFingerprint.weights_family": "text",
        "ModelFingerprint.quantization": "text",
    }.items()
}
_HANDLE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class EgressRefusedError(PolicyDeniedError):
    """A field of an outgoing message holds what the policy keeps on the device."""


def needs_rule(field: FieldDescriptor) -> bool:
    """Fields that can carry a request's content: strings, bytes and repeated integers (token IDs)."""
    if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return True
    integer = field.cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64,
                                 FieldDescriptor.CPPTYPE_UINT32, FieldDescriptor.CPPTYPE_UINT64)
    return integer and field.is_repeated


class EgressFilter:
    """The filter for one request: its policy, its redaction (placeholders stay
    consistent with the prompt's), and the tokenizer that reads its token IDs."""

    def __init__(
        self,
        policy: Policy,
        redaction: Redaction,
        *,
        decode: Callable[[Sequence[int]], str],
        redact_all: bool = False,
        frames_allowed: bool = False,
        issued: frozenset[str] = frozenset(),
    ) -> None:
        self.policy = policy
        self.issued = issued
        self.redaction = redaction
        self.decode = decode
        self.redact_all = redact_all
        self.frames_allowed = frames_allowed

    def message(self, message: Message) -> Message:
        """A copy of `message` fit to leave the device, or EgressRefusedError."""
        out = type(message)()
        out.CopyFrom(message)
        self._filter(out)
        return out

    def frame(self, frame: bytes) -> bytes:
        """A KV frame, allowed only when the cache encodes exactly what may leave."""
        if not self.frames_allowed:
            raise EgressRefusedError("a KV cache of this request may not leave the device: it encodes text the "
                                     "policy redacts or keeps local")
        return frame

    def text(self, text: str, where: str = "text") -> str:
        """`text` with what the policy redacts replaced; refused when it holds something local_only."""
        if text in self.issued and where.endswith(".request_id"):
            return text
        privacy = self.policy.privacy
        spans = []
        for finding in detect(text, privacy):
            action = privacy.action_for(finding.tag)
            if action is TagAction.LOCAL_ONLY:
                raise EgressRefusedError(f"{where} holds a {finding.kind} the policy keeps on the device")
            if action is TagAction.REDACT or self.redact_all:
                spans.append((finding.start, finding.end, finding.kind))
        for placeholder in self.redaction.placeholders:  # values redacted elsewhere in this request
            value = self.redaction.original(placeholder)
            start = text.find(value)
            while start >= 0:
                spans.append((start, start + len(value), "redacted"))
                start = text.find(value, start + 1)
        return self.redaction.apply(text, spans) if spans else text

    def token_ids(self, ids: Sequence[int], where: str) -> None:
        """Token IDs leave as they are or not at all: re-encoding a templated prompt could
        change its special tokens, so a span found here that `decide` did not redact refuses them."""
        text = self.decode(list(ids))
        if self.text(text, where) != text:
            raise EgressRefusedError(f"{where} holds text the policy redacts")

    def _filter(self, message: Message) -> None:
        for field, value in message.ListFields():
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in value if field.is_repeated else [value]:
                    self._filter(item)
                continue
            if not needs_rule(field):
                continue
            rule = FIELD_RULES.get(field.full_name)
            if rule is None:
                raise EgressRefusedError(f"{field.full_name} has no egress rule, so it may not leave the device")
            self._apply(message, field, rule, value)

    def _apply(self, message: Message, field: FieldDescriptor, rule: str, value) -> None:
        name = field.name
        if rule == "text":
            if field.is_repeated:
                filtered = [self.text(v, field.full_name) for v in value]
                del getattr(message, name)[:]
                getattr(message, name).extend(filtered)
            else:
                setattr(message, name, self.text(value, field.full_name))
        elif rule == "token_ids":
            self.token_ids(value, field.full_name)
        elif rule == "kv_frame":
            self.frame(value)
        elif rule == "codec":
            if value not in KV_CODECS:
                raise EgressRefusedError(f"{field.full_name}: unknown codec {value!r}")
        elif rule == "handle":
            if not _HANDLE.fullmatch(value):
                raise EgressRefusedError(f"{field.full_name}: not a handle the server issued")
        else:
            raise EgressRefusedError(f"{field.full_name}: unknown egress rule {rule!r}")
