"""Policy files: the examples load, the content hash ignores form but not meaning,
the published schema is current, and every malformed case names file, field and line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from router import (
    BUILTIN_DETECTORS,
    EscalationAction,
    Fallback,
    PolicyError,
    Signal,
    TagAction,
    load_policy,
    parse_policy,
)
from router.schema import PUBLISHED_PATH, SCHEMA, schema_json
from router.yamldoc import MAX_BYTES

POLICIES = Path(__file__).resolve().parents[1] / "policies"
EXAMPLES = sorted(POLICIES.glob("*.yaml"))

BASE = """\
version: "1"
edge:
  max_context_tokens: 4096
  max_new_tokens: 512
confidence:
  signal: min_prob
  window: 8
  threshold: 0.1
  min_tokens: 4
privacy:
  custom:
    - name: mrn
      pattern: 'MRN\\d+'
      tag: health
  local_only: [health]
  redact: [email]
cloud:
  allowed: true
audit:
  path: audit.jsonl
"""


def test_example_policies_exist_and_load():
    assert {p.name for p in EXAMPLES} >= {"default.yaml", "strict-privacy.yaml", "health-app.yaml"}
    for path in EXAMPLES:
        policy = load_policy(path)
        assert policy.source == str(path)
        assert len(policy.content_hash) == 64


def test_example_policies_validate_against_the_published_schema_directly():
    schema = json.loads(PUBLISHED_PATH.read_text(encoding="utf-8"))
    for path in EXAMPLES:
        jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema)


def test_published_schema_is_current_and_a_valid_draft_2020_12_schema():
    assert PUBLISHED_PATH.read_text(encoding="utf-8") == schema_json(), (
        "policies/policy.schema.json is stale: run `tandem policy schema > policies/policy.schema.json`"
    )
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_rejects_unknown_fields_everywhere():
    def walk(node, path="$"):
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node.get("additionalProperties") is False, path
            for key, value in node.items():
                walk(value, f"{path}.{key}")

    walk(SCHEMA)


def test_parsed_fields_and_defaults():
    policy = parse_policy(BASE)
    assert policy.version == "1"
    assert (policy.edge.max_context_tokens, policy.edge.max_new_tokens) == (4096, 512)
    rule = policy.confidence
    assert (rule.signal, rule.window, rule.threshold, rule.min_tokens) == (Signal.MIN_PROB, 8, 0.1, 4)
    assert rule.action is EscalationAction.ESCALATE_CONTINUE
    assert policy.privacy.detectors == frozenset(BUILTIN_DETECTORS)
    assert policy.privacy.action_for("health") is TagAction.LOCAL_ONLY
    assert policy.privacy.action_for("email") is TagAction.REDACT
    assert policy.privacy.action_for("never-heard-of-it") is TagAction.LOCAL_ONLY  # default_action
    assert policy.cloud.on_unreachable is Fallback.ANSWER_LOCAL
    assert policy.audit.enabled and policy.audit.path == "audit.jsonl"


def test_content_hash_ignores_comments_formatting_key_order_and_spelled_out_defaults():
    reformatted = """\
# the same policy, written differently
audit: {path: audit.jsonl, enabled: true}
cloud: {allowed: true, on_unreachable: answer_local}
privacy:
  redact: [email]
  local_only: [health]
  default_action: local_only
  custom: [{name: mrn, pattern: 'MRN\\d+', tag: health, ignore_case: false}]
  detectors: {email: on, phone: yes, card: true}  # YAML 1.1 booleans are accepted too
confidence: {signal: min_prob, threshold: 0.10, window: 8, min_tokens: 4, action: escalate_continue}
edge: {max_new_tokens: 512, max_context_tokens: 4096}
version: '1'
"""
    assert parse_policy(reformatted).content_hash == parse_policy(BASE).content_hash


@pytest.mark.parametrize("change", [
    ("threshold: 0.1", "threshold: 0.2"),
    ("redact: [email]", "allow: [email]"),
    ('version: "1"', 'version: "2"'),
    ("allowed: true", "allowed: true\n  on_unreachable: fail"),
])
def test_content_hash_changes_with_meaning(change):
    assert parse_policy(BASE.replace(*change)).content_hash != parse_policy(BASE).content_hash


def test_effective_policy_round_trips_through_its_own_dict():
    for path in EXAMPLES:
        policy = load_policy(path)
        again = parse_policy(yaml.safe_dump(policy.to_dict()))
        assert again == policy and again.content_hash == policy.content_hash


def _error(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="team/policy.yaml")
    return info.value


# (name, edit applied to BASE, field, line, words the message must contain)
MALFORMED = [
    ("unknown top-level field", (BASE + "extra: 1\n", None), "extra", 21, "unknown field 'extra'"),
    ("unknown nested field", ("  max_new_tokens: 512\n", "  max_new_tokens: 512\n  max_tokens: 5\n"),
     "edge.max_tokens", 5, "did you mean 'max_new_tokens'"),
    ("unknown detector", ("privacy:\n", "privacy:\n  detectors:\n    emial: on\n"),
     "privacy.detectors.emial", 12, "did you mean 'email'"),
    ("wrong type", ("max_context_tokens: 4096", "max_context_tokens: lots"),
     "edge.max_context_tokens", 3, "expected integer, got string"),
    ("unquoted version", ('version: "1"', "version: 1.0"), "version", 1, 'quote it: "1.0"'),
    ("boolean is not an integer", ("window: 8", "window: true"), "confidence.window", 7, "expected integer"),
    ("enum value", ("signal: min_prob", "signal: median"), "confidence.signal", 6, "'median' is not one of"),
    ("missing required field", ("cloud:\n  allowed: true\n", "cloud:\n  on_unreachable: fail\n"),
     "cloud.allowed", 17, "required field is missing"),
    ("key given twice", ("  max_new_tokens: 512\n", "  max_new_tokens: 512\n  max_new_tokens: 256\n"),
     "edge.max_new_tokens", 5, "more than once"),
    ("bad regex", ("'MRN\\d+'", "'MRN(\\d+'"), "privacy.custom[0].pattern", 13, "invalid regex"),
    ("regex matching nothing", ("'MRN\\d+'", "'x*'"), "privacy.custom[0].pattern", 13, "empty string"),
    ("custom detector named like a built-in", ("name: mrn", "name: email"), "privacy.custom[0].name", 12,
     "built-in detector"),
    ("tag under two actions", ("redact: [email]", "redact: [email]\n  allow: [health]"), "privacy.allow[0]", 17,
     "contradictory rules: tag 'health' is under both local_only and allow"),
    ("confidence rule with the cloud disallowed", ("allowed: true", "allowed: false"), "confidence", 5,
     "contradictory rules: cloud.allowed is false"),
    ("min_tokens beyond max_new_tokens", ("min_tokens: 4", "min_tokens: 600"), "confidence.min_tokens", 9,
     "could never fire"),
    ("no room for a prompt", ("max_new_tokens: 512", "max_new_tokens: 4096"), "edge.max_new_tokens", 4,
     "no room for a prompt"),
    ("probability threshold out of range", ("threshold: 0.1", "threshold: 1.5"), "confidence.threshold", 8,
     "out of range for min_prob"),
    ("log-prob threshold out of range", ("signal: min_prob", "signal: mean_logprob"), "confidence.threshold", 8,
     "out of range for mean_logprob"),
    ("entropy threshold out of range", ("signal: min_prob\n  window: 8\n  threshold: 0.1",
                                        "signal: entropy\n  window: 8\n  threshold: -1"),
     "confidence.threshold", 8, "out of range for entropy"),
    ("quantile with another signal", ("threshold: 0.1", "threshold: 0.1\n  quantile: 0.2"),
     "confidence.quantile", 9, "only applies to signal quantile_prob"),
    ("audit without a path", ("audit:\n  path: audit.jsonl", "audit:\n  enabled: true"), "audit", 19,
     "has no path"),
    ("YAML syntax error", ("  local_only: [health]", "  local_only: [health"), "privacy.local_only[0]", 16,
     "YAML syntax error"),
    ("YAML tab indentation", ("  max_new_tokens: 512", "\tmax_new_tokens: 512"), "edge", 4, "YAML syntax error"),
    ("empty file", ("", None), "", 1, "got an empty file"),
    ("not a mapping", ("- a\n- b\n", None), "", 1, "got a list"),
]


@pytest.mark.parametrize("name,edit,field,line,words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_policy_names_file_field_and_line(name, edit, field, line, words):
    old, new = edit
    text = old if new is None else BASE.replace(old, new)
    assert new is None or text != BASE, "the edit must change the policy"
    error = _error(text)
    assert (error.source, error.field, error.line) == ("team/policy.yaml", field, line), str(error)
    assert words in error.message
    assert str(error).startswith(f"team/policy.yaml:{line}: {field or '(top level)'}: ")


def test_every_problem_is_reported_sorted_by_line():
    text = BASE.replace("max_context_tokens: 4096", "max_context_tokens: lots").replace("window: 8", "window: x")
    error = _error(text)
    assert [(p.field, p.line) for p in error.problems] == [("edge.max_context_tokens", 3), ("confidence.window", 7)]


def test_missing_file_is_a_policy_error_naming_it(tmp_path):
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "nope.yaml")
    assert info.value.source.endswith("nope.yaml") and "cannot read" in info.value.message


def test_load_policy_reports_the_path_it_was_given(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(BASE.replace("window: 8", "window: -1"), encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert (info.value.source, info.value.field, info.value.line) == (str(path), "confidence.window", 7)


def test_integers_written_as_floats_become_ints():
    policy = parse_policy(BASE.replace("window: 8", "window: 8.0"))
    assert policy.confidence.window == 8 and isinstance(policy.confidence.window, int)
    assert policy.content_hash == parse_policy(BASE).content_hash


def test_policy_without_confidence_or_audit_sections():
    text = 'version: "x"\nedge: {max_context_tokens: 100, max_new_tokens: 10}\ncloud: {allowed: false}\n'
    policy = parse_policy(text)
    assert policy.confidence is None and not policy.audit.enabled
    assert policy.privacy.default_action is TagAction.LOCAL_ONLY


def _laughs(levels: int) -> str:
    """A "billion laughs" file: each anchor repeats the previous one nine times (9**levels leaves)."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return BASE + "\n".join(lines) + "\n"


HOSTILE_FILES = {
    "billion_laughs": (_laughs(9), "alias", "l1", 22),
    "recursive_alias": (BASE + "loop: &loop [*loop]\n", "alias", "loop", 21),
    "merge_key": (BASE.replace("cloud:\n  allowed: true", "base: &b {allowed: true}\ncloud:\n  <<: *b"),
                  "alias", "cloud.<<", 19),
    "deep_flow_nesting": (BASE + "x: " + "[" * 400 + "]" * 400 + "\n", "nesting deeper", "x", 21),
    "deep_block_nesting": (BASE + "".join("  " * i + f"k{i}:\n" for i in range(40)) + "  " * 40 + "v\n",
                           "nesting deeper", "k0.k1", 53),
    "float_overflow_on_build": (BASE + "kv_handoff:\n  link_mbps: " + "9" * 400 + "\n", "out of range",
                                "kv_handoff.link_mbps", 22),
    "integer_too_long_to_read": (BASE + "x: " + "9" * 5000 + "\n", "cannot be read", "x", 21),
    "impossible_timestamp": (BASE + "x: !!timestamp 2020-99-99\n", "cannot be read", "x", 21),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_hostile_policy_files_are_refused_quickly_naming_file_field_and_line(tmp_path, name):
    text, words, field, line = HOSTILE_FILES[name]
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert time.monotonic() - started < 2.0, "the loader must not spend long on a hostile file"
    assert info.value.source == str(path)
    assert words in info.value.message
    assert info.value.field.startswith(field) and info.value.line == line


def test_the_440_byte_nested_file_no_longer_takes_seconds(tmp_path):
    text = "x: " + "[" * 218 + "]" * 218 + "\n"
    assert len(text) < 441
    started = time.monotonic()
    with pytest.raises(PolicyError, match="nesting deeper"):
        parse_policy(text)
    assert time.monotonic() - started < 1.0


def test_an_oversized_policy_file_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f:
        f.write(BASE.encode())
        f.seek(MAX_BYTES * 64)
        f.write(b"# end\n")
    with pytest.raises(PolicyError, match=f"larger than {MAX_BYTES} bytes") as info:
        load_policy(path)
    assert info.value.source == str(path)
    with pytest.raises(PolicyError, match="limit for a policy file"):
        parse_policy(BASE + "#" * MAX_BYTES)
