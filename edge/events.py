"""What a Tandem stream yields: text as it is decided, hand-offs, and one final record.

A caller that only wants text appends every `Text.text`; when an `Escalation`
arrives it first cuts what it has shown to `keep_chars` characters (the local
draft that the cloud replaces). `Done.text` is always the whole answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from router import DecisionRecord

Tier = Literal["edge", "cloud"]


@dataclass(frozen=True)
class Text:
    """Newly decided text (restored, if the request was redacted), the token IDs that produced it
    and, where the tier reported them, each token's log-prob (nats) and its most likely alternatives
    as (token ID, log-prob) pairs (the device reports its top two; the cloud none)."""

    text: str
    token_ids: tuple[int, ...]
    tier: Tier
    logprobs: tuple[float, ...] = ()
    top_logprobs: tuple[tuple[tuple[int, float], ...], ...] = ()


@dataclass(frozen=True)
class Escalation:
    """The cloud takes over: keep the first `keep_chars` characters shown so far, drop the rest."""

    reason: str
    detail: str
    keep_chars: int
    kept_tokens: int


@dataclass(frozen=True)
class Fallback:
    """The cloud could not be used; the device answers (the policy's `answer_local`)."""

    reason: str
    detail: str


@dataclass(frozen=True)
class Done:
    """The end of a stream: the whole answer, who finished it, and the decision record."""

    text: str
    tier: Tier
    finish_reason: str
    record: DecisionRecord


Event = Text | Escalation | Fallback | Done


@dataclass(frozen=True)
class Answer:
    """What the blocking calls return."""

    text: str
    tier: Tier
    finish_reason: str
    record: DecisionRecord
