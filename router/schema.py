"""The policy file's JSON Schema (draft 2020-12), published as
policies/policy.schema.json so editors validate and complete policy files.

The schema lives here, in code, so the loader never depends on a file beside
the package; `tandem policy schema > policies/policy.schema.json` rewrites the
published copy and a test fails when that copy is stale. The schema checks shape; what it cannot say
(regexes compile, rules do not contradict each other, thresholds suit the
signal) is checked by `router.loader`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from router.policy import AUTO_CODEC, BUILTIN_DETECTORS, KV_CODECS, EscalationAction, Fallback, KVHandoffRules, Signal, TagAction

SCHEMA_ID = "https://tandem.dev/schemas/policy.schema.json"
PUBLISHED_PATH = Path(__file__).resolve().parents[1] / "policies" / "policy.schema.json"

TAG_PATTERN = r"^[a-z][a-z0-9_.-]*$"
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


def _tag_list(action: TagAction, meaning: str) -> dict[str, Any]:
    return {
        "type": "array",
        "uniqueItems": True,
        "items": {"type": "string", "pattern": TAG_PATTERN},
        "default": [],
        "description": f"Tags whose requests {meaning}. A tag is a built-in detector name, a custom "
        f"detector's tag, or a tag the caller passes. A tag may appear under only one action ({action.value} here).",
    }


_KV = KVHandoffRules()

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "Tandem routing policy",
    "description": "What may leave the device, when a request goes to the cloud, and what is logged. "
    "Unknown fields are errors.",
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "edge", "cloud"],
    "properties": {
        "version": {
            "type": "string",
            "minLength": 1,
            "description": "The author's version of this policy (quote it: \"1.0\"). Recorded in every decision "
            "record beside the content hash.",
        },
        "edge": {
            "type": "object",
            "additionalProperties": False,
            "required": ["max_context_tokens", "max_new_tokens"],
            "description": "What the device can take.",
            "properties": {
                "max_context_tokens": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Prompt plus new tokens the device model may hold; a request above it goes "
                    "to the cloud (or, where it may not leave, is flagged as over budget).",
                },
                "max_new_tokens": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Most tokens the device generates for one answer; reserved in the context "
                    "budget when the caller does not say how many it wants.",
                },
            },
        },
        "confidence": {
            "type": "object",
            "additionalProperties": False,
            "required": ["signal"],
            "description": "When the device's answer is not confident enough, escalate to the cloud mid-stream. "
            "Leave out to never escalate on confidence. Needs cloud.allowed: true.",
            "properties": {
                "signal": {
                    "enum": [s.value for s in Signal],
                    "description": "calibrated: the judge fitted by `tandem calibrate` for the device model (needs "
                    "`calibration` and a target; it also screens the prompt before decoding). Hand-set: "
                    "min_prob: lowest token probability in the window; quantile_prob: the "
                    "`quantile` of token probabilities in the window; mean_logprob: mean natural-log "
                    "probability; all three fire BELOW threshold. entropy: mean next-token entropy in nats, "
                    "fires ABOVE threshold.",
                },
                "calibration": {
                    "type": "string",
                    "minLength": 1,
                    "description": "Only with signal calibrated: the calibration file (JSON, written by `tandem "
                    "calibrate`), relative to the policy file. It is refused for a model other than the one it "
                    "was fitted for.",
                },
                "target_escalation": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "exclusiveMaximum": 1,
                    "description": "Only with signal calibrated: share of answers to send to the cloud (the "
                    "thresholds come from the calibration's measured curve). Give this, min_p_correct or "
                    "target_kept_accuracy.",
                },
                "min_p_correct": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "exclusiveMaximum": 1,
                    "description": "Only with signal calibrated: keep an answer on the device only when the "
                    "judge's P(correct) is at least this (before decoding, the prompt probe's): 0.5 escalates "
                    "whenever the device is more likely wrong than right. The rate follows the traffic. Give this, "
                    "target_escalation or target_kept_accuracy.",
                },
                "target_kept_accuracy": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 1,
                    "description": "Only with signal calibrated: escalate as little as reaches this accuracy of the "
                    "answers kept on the device, as measured on the calibration data.",
                },
                "prefill_probe": {
                    "type": "boolean",
                    "default": True,
                    "description": "Only with signal calibrated: right after the prefill, send a prompt the probe "
                    "says the device will get wrong to the cloud before any decoding.",
                },
                "threshold": {
                    "type": "number",
                    "description": "Hand-set signals: min_prob / quantile_prob: a probability in (0, 1); "
                    "mean_logprob: a log-probability < 0; entropy: nats > 0.",
                },
                "quantile": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "exclusiveMaximum": 1,
                    "default": 0.1,
                    "description": "Only with signal quantile_prob (linear interpolation between order statistics).",
                },
                "window": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Hand-set signals: number of most recent tokens the signal is computed over.",
                },
                "min_tokens": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Hand-set signals: tokens to generate before the rule may fire; the window is "
                    "partial until `window` tokens exist.",
                },
                "hold_tokens": {
                    "type": "integer",
                    "minimum": 0,
                    "default": 0,
                    "description": "Hold the answer's first N tokens back from the caller until the rule has "
                    "judged them (the calibrated judge gives its verdict at its window or at the answer's end). "
                    "An answer judged wrong while held is never shown; one judged wrong after it was shown is "
                    "withdrawn: an escalation event with keep_chars 0, and the cloud answers from the start.",
                },
                "action": {
                    "enum": [a.value for a in EscalationAction],
                    "default": EscalationAction.ESCALATE_CONTINUE.value,
                    "description": "escalate_restart: the cloud answers from the prompt; escalate_continue: the "
                    "device's tokens before the low-confidence window are kept and the cloud continues (the "
                    "calibrated judge judges the answer as a whole, so its escalations always restart).",
                },
            },
            "if": {"properties": {"signal": {"const": Signal.CALIBRATED.value}}},
            "then": {"required": ["calibration"]},
            "else": {"required": ["threshold", "window", "min_tokens"]},
        },
        "privacy": {
            "type": "object",
            "additionalProperties": False,
            "description": "Detectors tag spans of the request; caller tags tag the whole request. Each tag maps "
            "to one action: local_only (the request never leaves the device), redact (spans become "
            "placeholders like [EMAIL_1] before egress and are restored locally; a caller tag with redact "
            "also redacts findings whose own action is allow) or allow.",
            "properties": {
                "detectors": {
                    "type": "object",
                    "additionalProperties": False,
                    "description": "Built-in detectors on or off; a detector not listed is on. Each finding is "
                    "tagged with its detector's name.",
                    "properties": {
                        name: {"type": "boolean", "default": True, "description": what}
                        for name, what in BUILTIN_DETECTORS.items()
                    },
                },
                "custom": {
                    "type": "array",
                    "default": [],
                    "description": "Extra regex detectors, run on RE2 (Python `re` syntax without look-around or "
                    "backreferences), so matching takes linear time whatever the pattern.",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "pattern"],
                        "properties": {
                            "name": {
                                "type": "string",
                                "pattern": NAME_PATTERN,
                                "description": "Finding kind and placeholder label (mrn -> [MRN_1]); must not "
                                "be a built-in detector name.",
                            },
                            "pattern": {
                                "type": "string",
                                "minLength": 1,
                                "description": "RE2 regex (Python syntax, no look-around or backreferences); must compile "
                                "and must not match the empty string.",
                            },
                            "tag": {
                                "type": "string",
                                "pattern": TAG_PATTERN,
                                "description": "Tag of its findings; defaults to `name`.",
                            },
                            "ignore_case": {"type": "boolean", "default": False},
                        },
                    },
                },
                "local_only": _tag_list(TagAction.LOCAL_ONLY, "must never leave the device"),
                "redact": _tag_list(TagAction.REDACT, "may leave the device with the tagged spans redacted"),
                "allow": _tag_list(TagAction.ALLOW, "may leave the device as they are"),
                "default_action": {
                    "enum": [a.value for a in TagAction],
                    "default": TagAction.LOCAL_ONLY.value,
                    "description": "Action for a tag listed nowhere above (typically an unexpected caller tag).",
                },
            },
        },
        "cloud": {
            "type": "object",
            "additionalProperties": False,
            "required": ["allowed"],
            "description": "Whether anything may go to the cloud tier, and what to do when it cannot be reached.",
            "properties": {
                "allowed": {"type": "boolean", "description": "false: every request stays on the device."},
                "on_unreachable": {
                    "enum": [f.value for f in Fallback],
                    "default": Fallback.ANSWER_LOCAL.value,
                    "description": "After retries and the circuit breaker: answer_local keeps the device's "
                    "answer; fail reports an error to the caller.",
                },
            },
        },
        "kv_handoff": {
            "type": "object",
            "additionalProperties": False,
            "description": "Hand-offs by compressed KV cache instead of token IDs, where edge and cloud run "
            "KV-compatible models (same architecture and weights family) and the estimate says it is faster. "
            "Leave out to hand off by token IDs only. Redacted requests always go by token IDs.",
            "properties": {
                "enabled": {"type": "boolean", "default": _KV.enabled,
                            "description": "Edge -> cloud continuations may carry the edge's KV cache."},
                "codec": {"enum": [AUTO_CODEC, *KV_CODECS], "default": _KV.codec,
                          "description": "auto: per hand-off, whichever of int8 and q4 the estimate says is "
                          "faster; fp16: exact to half precision; int8: ~2x smaller, near lossless; q4: 3.5x "
                          "smaller, the cloud prefills the last 384 positions itself (benchmarks/kv_handoff.py "
                          "measures the top-1 agreement)."},
                "cross_precision": {
                    "type": "boolean", "default": _KV.cross_precision,
                    "description": "A cache made by the quantized edge model may seed the full-precision cloud "
                    "model, and back. Decide from the measured top-1 agreement.",
                },
                "prefill_offload": {
                    "type": "boolean", "default": _KV.prefill_offload,
                    "description": "Long prompts that may leave the device are prefilled in the cloud, whose "
                    "cache is shipped down; the device decodes. Needs enabled: true.",
                },
                "min_offload_tokens": {"type": "integer", "minimum": 1, "default": _KV.min_offload_tokens,
                                       "description": "Shortest prompt considered for prefill offload."},
                "link_mbps": {"type": "number", "exclusiveMinimum": 0, "default": _KV.link_mbps,
                              "description": "Edge-cloud link speed for the cost estimate, megabits per second."},
                "rtt_ms": {"type": "number", "minimum": 0, "default": _KV.rtt_ms,
                           "description": "Edge-cloud round trip for the cost estimate, milliseconds."},
                "edge_prefill_tokens_per_s": {
                    "type": "number", "exclusiveMinimum": 0, "default": _KV.edge_prefill_tokens_per_s,
                    "description": "Starting estimate of the device's prefill speed (the SDK then measures it).",
                },
                "cloud_prefill_tokens_per_s": {
                    "type": "number", "exclusiveMinimum": 0, "default": _KV.cloud_prefill_tokens_per_s,
                    "description": "Starting estimate of the cloud's prefill speed (the SDK then measures it).",
                },
            },
        },
        "audit": {
            "type": "object",
            "additionalProperties": False,
            "description": "One JSON line per decision: route, reasons, signal summary, policy version and hash, "
            "kinds and counts of findings. Never the request text. Leave out to log nothing.",
            "properties": {
                "enabled": {"type": "boolean", "default": True},
                "path": {
                    "type": "string",
                    "minLength": 1,
                    "description": "JSONL file, appended to; relative paths resolve against the process's "
                    "working directory. Required when enabled.",
                },
            },
        },
    },
}


def schema_json() -> str:
    """The published text of the schema (stable formatting, so the copy can be diffed)."""
    return json.dumps(SCHEMA, indent=2, ensure_ascii=False) + "\n"
