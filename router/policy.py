"""What a policy says, as frozen values: limits, the confidence rule, privacy
actions, cloud access and the audit log.

A `Policy` is only ever built by the loader (`router.loader`), after the file
has passed the JSON Schema and the semantic checks, so code holding one can
trust every field. Its `content_hash` is the SHA-256 of the canonical JSON of
the *effective* policy (defaults filled in): formatting, comments, key order
and spelling out a default never change it; a change of meaning always does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from router.linear_regex import compile_linear
from router.judge import Judge, OperatingPoint

# Built-in detectors: name -> what it finds. A detector's findings carry its name
# as their tag, so `privacy.local_only: [card]` pins any request with a card number.
BUILTIN_DETECTORS: dict[str, str] = {
    "email": "e-mail addresses",
    "phone": "phone numbers valid in the national numbering plans of 22 countries, or in international +CC form",
    "card": "payment card numbers (known issuer prefix, 13-19 digits, Luhn check digit)",
    "iban": "IBANs (country length and structure, mod-97 check digits)",
    "national_id": "national identifiers of 33 countries (US, UK, DE, FR, ES, IT, NL, BE, PT, PL, SE, DK, NO, FI, CH, "
    "IE, CA, BR, MX, IN, CN, AU, ZA, TR, KR, RO, IL, ID, MY, JP, VN, SA, KE; check digits where the format has them), and "
    "passport and driving licence numbers after a word naming them",
    "bank_account": "bank account numbers after a word naming them (account number, acct, checking account, "
    "Kontonummer, numéro de compte, ...)",
    "birth_date": "dates of birth after a word naming them (date of birth, DOB, born on, Geburtsdatum, né le, ...)",
    "address": "street addresses: a house number next to a street (221B Baker Street, Hauptstraße 5, 12 rue de la "
    "Paix, Calle Mayor 10), with the flat before it and the town and postcode after it",
    "person_name": "people's names where the text marks them as one: after an honorific (Mr., Dr, Frau, Mme), an "
    "introduction (my name is, je m'appelle, me llamo), a form field (Name:, \"first_name\":) or a salutation "
    "(Dear Anna,)",
    "ip_address": "IPv4 and IPv6 addresses",
    "secret": "private key blocks, vendor API keys and tokens, JWTs, auth headers, command-line and URL credentials, "
    "passwords and keys after a keyword in seven languages, session cookies, keys in a URL's query, wallet recovery "
    "phrases (BIP-39 words)",
    "health": "a health condition, medicine or patient record number the text ties to a person (diagnosed with ..., "
    "my dad has Parkinson's, my mum takes 20 mg of atorvastatin, Diagnosis: ..., MRN ...), not one a question asks about",
    "special_category": "a person's sexual orientation or gender identity, religion, political opinion or trade-union "
    "membership, where the text ties it to them (my brother is gay, she is an Orthodox Jew, he voted for the Green "
    "Party, I'm in the union), not a question about one",
    "employment": "employee numbers after a word naming them (employee ID, EID, Personalnummer, matricule) or in such a "
    "column, and someone else's pay (her salary is ..., Karim earns ..., a salary column beside names)",
}


class Signal(StrEnum):
    """Per-window confidence statistic; all but `entropy` fire when BELOW the threshold.
    `calibrated` is the judge fitted by `tandem calibrate` (router.judge)."""

    MIN_PROB = "min_prob"
    QUANTILE_PROB = "quantile_prob"
    MEAN_LOGPROB = "mean_logprob"
    ENTROPY = "entropy"
    CALIBRATED = "calibrated"


class EscalationAction(StrEnum):
    """What the SDK does when the rule fires: start over in the cloud, or keep the
    local tokens before the low-confidence window and let the cloud continue."""

    ESCALATE_RESTART = "escalate_restart"
    ESCALATE_CONTINUE = "escalate_continue"


class TagAction(StrEnum):
    LOCAL_ONLY = "local_only"
    REDACT = "redact"
    ALLOW = "allow"


# Stricter first: when a request carries several tags, the first action here wins.
ACTION_STRICTNESS = (TagAction.LOCAL_ONLY, TagAction.REDACT, TagAction.ALLOW)


class Fallback(StrEnum):
    ANSWER_LOCAL = "answer_local"
    FAIL = "fail"


@dataclass(frozen=True)
class EdgeLimits:
    max_context_tokens: int
    max_new_tokens: int


@dataclass(frozen=True)
class Calibration:
    """A calibrated judge and the operating point the policy's target picks from its curve."""

    path: str  # resolved; the content hash reads the file's SHA-256 instead
    judge: Judge = field(compare=False, repr=False)
    point: OperatingPoint
    target_escalation: float | None = None
    target_kept_accuracy: float | None = None
    prefill_probe: bool = True
    min_p_correct: float | None = None


@dataclass(frozen=True)
class ConfidenceRule:
    """For `calibrated`, threshold and window come from the calibration (judge threshold, the
    judge's window) and min_tokens is 1: the judge gives its verdict at the window or at the
    answer's end, whichever comes first. `hold_tokens` text is held back until judged."""

    signal: Signal
    threshold: float
    window: int
    min_tokens: int
    action: EscalationAction
    quantile: float = 0.1
    hold_tokens: int = 0
    calibration: Calibration | None = None


@dataclass(frozen=True)
class CustomDetector:
    """A policy-defined regex; its matches are findings of kind `name` tagged `tag`."""

    name: str
    pattern: str
    tag: str
    ignore_case: bool = False
    regex: Any = field(init=False, repr=False, compare=False)  # RE2: linear time (router.linear_regex)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", compile_linear(self.pattern, ignore_case=self.ignore_case))


@dataclass(frozen=True)
class PrivacyRules:
    detectors: frozenset[str]
    custom: tuple[CustomDetector, ...]
    actions: dict[str, TagAction]
    default_action: TagAction

    def action_for(self, tag: str) -> TagAction:
        """The action for a tag, whether a detector or the caller supplied it."""
        return self.actions.get(tag, self.default_action)


@dataclass(frozen=True)
class CloudRules:
    allowed: bool
    on_unreachable: Fallback


KV_CODECS = ("fp16", "int8", "q4")  # engine.kv's codecs (router/ never imports the engine)
AUTO_CODEC = "auto"
# What `auto` weighs per hand-off: the codecs that meet the fidelity goal (>= 99 % mean, >= 98 %
# worst-text top-1 agreement on the report texts, README). q4 meets it only with the receiver
# prefilling its last positions, which the edge -> cloud continuation does and the cloud's
# prefill shipped down does not, so a download weighs int8 alone.
AUTO_CODECS = {"up": ("int8", "q4"), "down": ("int8",)}


@dataclass(frozen=True)
class KVHandoffRules:
    """When a hand-off may carry a KV cache instead of token IDs, and the figures the cost
    estimate starts from (the SDK refines the prefill speeds by measuring)."""

    enabled: bool = False
    codec: str = AUTO_CODEC  # one of KV_CODECS, or auto: the cheapest of AUTO_CODECS by the estimate
    cross_precision: bool = False
    prefill_offload: bool = False
    min_offload_tokens: int = 1024
    link_mbps: float = 50.0
    rtt_ms: float = 40.0
    edge_prefill_tokens_per_s: float = 400.0
    cloud_prefill_tokens_per_s: float = 2000.0

    def codecs(self, direction: str = "up") -> tuple[str, ...]:
        """The codecs a hand-off in this direction ("up": edge -> cloud, "down": the cloud's
        prefill shipped down) may use: the policy's one, or what `auto` weighs."""
        return AUTO_CODECS[direction] if self.codec == AUTO_CODEC else (self.codec,)


@dataclass(frozen=True)
class AuditSettings:
    enabled: bool
    path: str | None


@dataclass(frozen=True)
class Policy:
    version: str
    edge: EdgeLimits
    confidence: ConfidenceRule | None
    privacy: PrivacyRules
    cloud: CloudRules
    audit: AuditSettings
    kv_handoff: KVHandoffRules = KVHandoffRules()
    source: str = field(default="<string>", compare=False)
    content_hash: str = field(init=False)

    def __post_init__(self) -> None:
        data = self.to_dict()
        if self.confidence is not None and self.confidence.calibration is not None:
            # The judge's meaning is its content, wherever the file lives.
            data["confidence"]["calibration"] = "sha256:" + self.confidence.calibration.judge.sha256
        object.__setattr__(self, "content_hash", content_hash(data))

    def to_dict(self) -> dict[str, Any]:
        """The effective policy as plain JSON data, in the file format (defaults filled in)."""
        lists: dict[str, list[str]] = {a.value: [] for a in TagAction}
        for tag, action in sorted(self.privacy.actions.items()):
            lists[action.value].append(tag)
        data: dict[str, Any] = {
            "version": self.version,
            "edge": {
                "max_context_tokens": self.edge.max_context_tokens,
                "max_new_tokens": self.edge.max_new_tokens,
            },
            "privacy": {
                "detectors": {name: name in self.privacy.detectors for name in BUILTIN_DETECTORS},
                "custom": [
                    {"name": c.name, "pattern": c.pattern, "tag": c.tag, "ignore_case": c.ignore_case}
                    for c in self.privacy.custom
                ],
                **lists,
                "default_action": self.privacy.default_action.value,
            },
            "cloud": {"allowed": self.cloud.allowed, "on_unreachable": self.cloud.on_unreachable.value},
            "audit": {"enabled": self.audit.enabled, **({"path": self.audit.path} if self.audit.path else {})},
            "kv_handoff": asdict(self.kv_handoff),
        }
        if self.confidence is not None:
            data["confidence"] = _confidence_dict(self.confidence)
        return data


def _confidence_dict(rule: ConfidenceRule) -> dict[str, Any]:
    common = {"action": rule.action.value, "hold_tokens": rule.hold_tokens}
    cal = rule.calibration
    if cal is not None:
        target = ({"target_escalation": cal.target_escalation} if cal.target_escalation is not None
                  else {"target_kept_accuracy": cal.target_kept_accuracy} if cal.target_kept_accuracy is not None
                  else {"min_p_correct": cal.min_p_correct})
        return {"signal": rule.signal.value, "calibration": cal.path, **target,
                "prefill_probe": cal.prefill_probe, **common}
    return {
        "signal": rule.signal.value,
        "threshold": rule.threshold,
        "window": rule.window,
        "min_tokens": rule.min_tokens,
        **common,
        **({"quantile": rule.quantile} if rule.signal is Signal.QUANTILE_PROB else {}),
    }


def content_hash(data: Any) -> str:
    """SHA-256 hex of canonical JSON (sorted keys, no whitespace, UTF-8)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
