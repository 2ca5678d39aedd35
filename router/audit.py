"""Decision records: one JSON object per request, appended to a JSONL log.

A record says what was decided and why (route, reason codes, policy version
and hash), what was found (kinds and counts, the tags and their actions), how
confident the device was (the monitor's summary), and what happened next
(fields the SDK fills in: the tier that answered, escalation, fallback, bytes
sent, latencies, tokens). It is built only from a `Decision`'s counts and
codes, never from the request's text or spans, so the log can be shipped to a
place the private data may not go.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from router.decide import Decision
from router.policy import Policy


@dataclass
class DecisionRecord:
    request_id: str
    timestamp: str
    route: str
    reasons: list[str]
    policy_version: str
    policy_hash: str
    findings: dict[str, int]
    tags: dict[str, str]
    may_escalate: bool
    over_device_budget: bool
    redactions: int
    signals: dict[str, Any] | None = None
    tier: str | None = None
    escalated: bool | None = None
    escalation_reason: str | None = None
    fallback: str | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None  # a KV cache the cloud shipped down (prefill offload)
    handoff: str | None = None  # how the tiers met: token_ids | kv:<codec> | kv_prefill:<codec> | local_prefill
    handoff_reason: str | None = None
    handoff_costs_ms: dict[str, float] = field(default_factory=dict)  # the estimate behind the choice
    # How the cloud's per-token entropies were computed: "exact", or "top_k_estimate" from an engine
    # that reports only its top-k probabilities (Info.capabilities.entropy).
    cloud_entropy: str | None = None
    latencies_ms: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_decision(cls, decision: Decision, *, request_id: str | None = None) -> DecisionRecord:
        """A record of `decision`, stamped now (UTC); the SDK fills in the rest as the request runs."""
        return cls(
            request_id=request_id or uuid.uuid4().hex,
            timestamp=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            route=decision.route.value,
            reasons=decision.codes,
            policy_version=decision.policy_version,
            policy_hash=decision.policy_hash,
            findings=dict(decision.findings),
            tags={tag: action.value for tag, action in sorted(decision.tags.items())},
            may_escalate=decision.may_escalate,
            over_device_budget=decision.over_device_budget,
            redactions=len(decision.redaction),
        )

    def to_json(self) -> str:
        """One line of JSON, keys in field order."""
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class AuditLog:
    """Appends records to a JSONL file, one whole line per write, safe across threads.

    Each write opens the file in append mode, writes one line and flushes, so
    log rotation needs no signal and a crash never leaves half a record.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @classmethod
    def from_policy(cls, policy: Policy) -> AuditLog | None:
        """The policy's audit log, or None when it has none."""
        if not policy.audit.enabled or not policy.audit.path:
            return None
        return cls(policy.audit.path)

    def write(self, record: DecisionRecord) -> None:
        line = record.to_json() + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
