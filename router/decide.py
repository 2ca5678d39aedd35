"""One request in, one routing decision out, with the reasons for it.

The order of the rules is the promise a policy makes:

1. Any tag whose action is local_only (a caller tag, or a detector's finding)
   pins the request to the device: LOCAL_ONLY, nothing may leave, ever.
2. Otherwise, a request the device cannot take (prompt plus the new tokens
   asked for, or the device's max_new_tokens when none are asked for, over
   max_context_tokens; or more new tokens than max_new_tokens) goes to the
   CLOUD when the policy allows the cloud. When it does not, the route is
   LOCAL_ONLY with `over_device_budget` set: the request may not leave, and
   the SDK must refuse or shorten it rather than send it.
3. Otherwise LOCAL, and the request may escalate later when the cloud is
   allowed.

Whenever something may leave (CLOUD, or LOCAL that may escalate), `egress`
holds exactly what would be sent: spans tagged `redact` are replaced by
placeholders (a caller tag whose action is redact also redacts findings whose
own action is allow). The redaction mapping stays in `Decision.redaction`.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from router.detectors import Finding, detect_all
from router.policy import ACTION_STRICTNESS, Policy, TagAction
from router.redact import Redaction

MAX_CALLER_TAGS = 32
MAX_TAG_CHARS = 64

Messages = Sequence[Mapping[str, Any]]


class Route(StrEnum):
    LOCAL = "local"
    CLOUD = "cloud"
    LOCAL_ONLY = "local_only"


@dataclass(frozen=True)
class Reason:
    """A machine-readable `code` (e.g. `tag_local_only:health`) and a sentence for people."""

    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


@dataclass(frozen=True)
class Decision:
    """Where a request runs and what may leave the device.

    `may_escalate` says whether anything may leave the device (for CLOUD it
    already does); `egress` is exactly what would leave, or None. `spans` holds
    the findings of each text (the prompt, or each message) by position,
    `findings` counts them by kind and `tags` gives the action applied to each
    tag seen: none of these three holds any of the request's text.
    """

    route: Route
    may_escalate: bool
    egress: str | list[dict[str, Any]] | None
    redaction: Redaction
    reasons: tuple[Reason, ...]
    spans: tuple[tuple[Finding, ...], ...]
    findings: dict[str, int]
    tags: dict[str, TagAction]
    over_device_budget: bool
    policy_version: str
    policy_hash: str

    @property
    def codes(self) -> list[str]:
        """The reasons' codes, in order."""
        return [r.code for r in self.reasons]


def decide(
    request: str | Messages,
    *,
    caller_tags: Iterable[str] = (),
    token_count: int,
    policy: Policy,
    new_tokens: int | None = None,
) -> Decision:
    """Route a prompt or a list of {role, content} messages under `policy`.

    `token_count` is the prompt's length in the shared tokenizer's tokens;
    `new_tokens` is how many the caller wants generated, if it says.
    """
    texts = _texts(request)
    tags_in = caller_tags_checked(caller_tags)
    for name, value in (("token_count", token_count), ("new_tokens", new_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    privacy = policy.privacy
    found = detect_all(texts, privacy)
    tags, reasons = _tag_actions(tags_in, found, policy)
    route, may_leave, route_reasons = _route(policy, tags, token_count, new_tokens)
    reasons += route_reasons

    redaction = Redaction(avoid=texts)
    egress = None
    if may_leave:
        redact_all = TagAction.REDACT in (tags[t] for t in tags_in)
        hidden = {TagAction.REDACT, TagAction.ALLOW} if redact_all else {TagAction.REDACT}
        redacted = [
            redaction.apply(text, [(f.start, f.end, f.kind) for f in spans if privacy.action_for(f.tag) in hidden])
            for text, spans in zip(texts, found)
        ]
        egress = redacted[0] if isinstance(request, str) else [
            {**message, "content": content} for message, content in zip(request, redacted)
        ]
    return Decision(
        route=route,
        may_escalate=may_leave,
        egress=egress,
        redaction=redaction,
        reasons=tuple(reasons),
        spans=tuple(tuple(spans) for spans in found),
        findings=dict(sorted(Counter(f.kind for spans in found for f in spans).items())),
        tags=tags,
        over_device_budget=_budget(policy, token_count, new_tokens) is not None,
        policy_version=policy.version,
        policy_hash=policy.content_hash,
    )


def _tag_actions(
    tags_in: list[str], found: list[list[Finding]], policy: Policy
) -> tuple[dict[str, TagAction], list[Reason]]:
    """The action for every tag seen (the stricter one where a caller and a detector share a tag)."""
    privacy = policy.privacy
    reasons: list[Reason] = []
    tags: dict[str, TagAction] = {}
    for tag in tags_in:
        action = tags[tag] = privacy.action_for(tag)
        listed = "" if tag in privacy.actions else " (listed nowhere; the policy's default_action)"
        reasons.append(Reason(f"tag_{action.value}:{tag}", f"caller tag '{tag}' is {action.value}{listed}"))
    by_kind = Counter((f.kind, f.tag) for spans in found for f in spans)
    for (kind, tag), count in sorted(by_kind.items()):
        action = privacy.action_for(tag)
        tags[tag] = _stricter(tags.get(tag), action)
        reasons.append(Reason(f"detector:{kind}->{action.value}", f"{count} {kind} span(s), tag '{tag}'"))
    return tags, reasons


def _route(
    policy: Policy, tags: dict[str, TagAction], token_count: int, new_tokens: int | None
) -> tuple[Route, bool, list[Reason]]:
    """Route, whether anything may leave, and the budget and cloud reasons (rules 1-3 above)."""
    budget = _budget(policy, token_count, new_tokens)
    reasons = [budget] if budget else []
    if TagAction.LOCAL_ONLY in tags.values():
        if budget:
            reasons.append(Reason("over_budget_local_only", "the request exceeds the device budget but may not "
                                  "leave the device; refuse or shorten it"))
        return Route.LOCAL_ONLY, False, reasons
    if budget and policy.cloud.allowed:
        return Route.CLOUD, True, reasons
    if budget:
        reasons.append(Reason("cloud_disallowed", "the request exceeds the device budget and the policy does not "
                              "allow the cloud; refuse or shorten it"))
        return Route.LOCAL_ONLY, False, reasons
    reasons.append(Reason("within_device_budget", f"{token_count} prompt + {_reserved(policy, new_tokens)} new "
                          f"tokens fit the device's {policy.edge.max_context_tokens}"))
    if not policy.cloud.allowed:
        reasons.append(Reason("cloud_disallowed", "the policy does not allow the cloud; the request stays local"))
    return Route.LOCAL, policy.cloud.allowed, reasons


def _texts(request: str | Messages) -> list[str]:
    if isinstance(request, str):
        return [request]
    texts = []
    for index, message in enumerate(request):
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, str):
            keys = sorted(map(str, message)) if isinstance(message, Mapping) else None
            raise TypeError(f"message {index} needs string 'content'; got a {type(message).__name__} with keys {keys}")
        texts.append(content)
    return texts


def caller_tags_checked(caller_tags: Iterable[str]) -> list[str]:
    """A caller's tags, stripped, lower-cased and deduplicated; refused (ValueError) past MAX_CALLER_TAGS
    tags, MAX_TAG_CHARS characters, or with control characters: the decision record, the audit log
    and the serve-edge headers repeat them, and a caller must not be able to make those large."""
    if isinstance(caller_tags, str):
        raise TypeError(f"caller_tags is a collection of tags; wrap a single tag in a list: [{caller_tags!r}]")
    tags = []
    for tag in caller_tags:
        if not isinstance(tag, str) or not tag.strip():
            raise ValueError(f"caller tags must be non-empty strings, got {tag!r}")
        tag = tag.strip().lower()
        if len(tag) > MAX_TAG_CHARS or any(unicodedata.category(c)[0] == "C" or c in "\u2028\u2029" for c in tag):
            raise ValueError(f"a caller tag is at most {MAX_TAG_CHARS} characters, without control characters or "
                             f"line breaks, got {tag[:80]!r}")
        if tag not in tags:
            tags.append(tag)
        if len(tags) > MAX_CALLER_TAGS:
            raise ValueError(f"at most {MAX_CALLER_TAGS} caller tags are taken")
    return tags


def _stricter(a: TagAction | None, b: TagAction) -> TagAction:
    return b if a is None else min(a, b, key=ACTION_STRICTNESS.index)


def _reserved(policy: Policy, new_tokens: int | None) -> int:
    return policy.edge.max_new_tokens if new_tokens is None else new_tokens


def _budget(policy: Policy, token_count: int, new_tokens: int | None) -> Reason | None:
    edge = policy.edge
    reserved = _reserved(policy, new_tokens)
    if token_count + reserved > edge.max_context_tokens:
        return Reason("context_over_device_budget",
                      f"{token_count} prompt + {reserved} new tokens exceed the device's {edge.max_context_tokens}")
    if new_tokens is not None and new_tokens > edge.max_new_tokens:
        return Reason("new_tokens_over_device_budget",
                      f"{new_tokens} new tokens asked for; the device generates at most {edge.max_new_tokens}")
    return None
