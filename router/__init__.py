"""Tandem's router: policy files, privacy detectors, routing decisions, the
confidence monitor and decision records. Pure Python; never imports torch.

    policy = load_policy("policies/default.yaml")
    decision = decide(messages, caller_tags=["health"], token_count=812, policy=policy)
    monitor = StreamMonitor(policy.confidence, may_escalate=decision.may_escalate)
"""

from router.audit import AuditLog, DecisionRecord
from router.decide import Decision, Reason, Route, decide
from router.detectors import DETECTORS, Finding, detect
from router.errors import PolicyError, Problem
from router.handoff import HandoffChoice, KVOffer, PrefillSpeeds, choose_continuation, choose_prefill
from router.loader import load_policy, parse_policy
from router.monitor import MonitorVerdict, StreamMonitor
from router.policy import (
    BUILTIN_DETECTORS,
    AuditSettings,
    CloudRules,
    ConfidenceRule,
    CustomDetector,
    EdgeLimits,
    EscalationAction,
    Fallback,
    KVHandoffRules,
    Policy,
    PrivacyRules,
    Signal,
    TagAction,
)
from router.redact import Redaction, Restorer
from router.schema import SCHEMA

__all__ = [
    "AuditLog",
    "AuditSettings",
    "BUILTIN_DETECTORS",
    "CloudRules",
    "ConfidenceRule",
    "CustomDetector",
    "DETECTORS",
    "Decision",
    "DecisionRecord",
    "EdgeLimits",
    "EscalationAction",
    "Fallback",
    "Finding",
    "HandoffChoice",
    "KVHandoffRules",
    "KVOffer",
    "MonitorVerdict",
    "Policy",
    "PolicyError",
    "PrefillSpeeds",
    "PrivacyRules",
    "Problem",
    "Reason",
    "Redaction",
    "Restorer",
    "Route",
    "SCHEMA",
    "Signal",
    "StreamMonitor",
    "TagAction",
    "choose_continuation",
    "choose_prefill",
    "decide",
    "detect",
    "load_policy",
    "parse_policy",
]
