"""Policy files in, `Policy` out, or a `PolicyError` a user can act on.

Three passes, each reporting file, dotted field and line: YAML syntax (and keys
given twice), the published JSON Schema (unknown fields, wrong types, missing
fields, out-of-range values), then the rules a schema cannot express: regexes
that compile and cannot match nothing, a tag under two actions, a confidence
rule that could never fire or never be allowed to escalate, thresholds that do
not suit their signal.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path as FsPath
from typing import Any

import jsonschema

from router.errors import PolicyError, Problem
from router.linear_regex import RegexError, compile_linear
from router.judge import Judge, JudgeError
from router.policy import (
    BUILTIN_DETECTORS,
    AuditSettings,
    Calibration,
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
from router.schema import PUBLISHED_PATH, SCHEMA
from router.yamldoc import MAX_BYTES, Document, Path, YamlSyntaxError, dotted, parse_yaml

SHIPPED_JUDGES = PUBLISHED_PATH.parent  # policies/: the judges fitted for the embedded models
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)  # integers written 8.0 pass it; _build makes them int
_MAX_NUMBER = 2**53  # past it, numbers lose precision as floats (and 10**400 overflows float())
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}


def load_policy(path: str | FsPath) -> Policy:
    """Read and validate a policy file."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)  # no more than the limit, whatever the file's size
        text = raw.decode("utf-8") if len(raw) <= MAX_BYTES else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([Problem(source, "", None, f"cannot read the policy file: {exc}")]) from exc
    if len(raw) > MAX_BYTES:
        raise PolicyError([Problem(source, "", None, f"the file is larger than {MAX_BYTES} bytes, the limit for "
                                   "a policy file")])
    return parse_policy(text, source=source)


def parse_policy(text: str, *, source: str = "<string>") -> Policy:
    """Validate policy text; `source` names it in errors and in `Policy.source`."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_BYTES:
        raise PolicyError([Problem(source, "", None, f"the policy is {size} bytes; the limit for a policy file "
                                   f"is {MAX_BYTES} bytes")])
    try:
        doc = parse_yaml(text)
    except YamlSyntaxError as exc:
        raise PolicyError([Problem(source, dotted(exc.path), exc.line, f"YAML syntax error: {exc.message}")]) from None
    problems = _structure_problems(doc, source)
    if not problems:
        problems = _schema_problems(doc, source)
    if not problems:
        problems = _semantic_problems(doc, source)
    if problems:
        raise PolicyError(problems)
    return _build(doc.data, source)


def _structure_problems(doc: Document, source: str) -> list[Problem]:
    problems = [Problem(source, dotted(p), line, "key given more than once") for p, line in doc.duplicates]
    problems += [Problem(source, dotted(p), line, "keys must be plain names") for p, line in doc.bad_keys]
    problems += [Problem(source, dotted(p), doc.line_of(p), f"number out of range: at most {_MAX_NUMBER} "
                         "(2**53) in size") for p in _huge_numbers(doc.data, ())]
    if not isinstance(doc.data, dict):
        got = "an empty file" if doc.data is None else f"a {_type_name(doc.data)}"
        problems.append(Problem(source, "", doc.line_of(()), f"a policy is a mapping of fields; got {got}"))
    return problems


def _huge_numbers(data: Any, path: Path) -> list[Path]:
    if isinstance(data, dict):
        return [found for key, value in data.items() for found in _huge_numbers(value, path + (key,))]
    if isinstance(data, list):
        return [found for i, value in enumerate(data) for found in _huge_numbers(value, path + (i,))]
    if isinstance(data, (int, float)) and not isinstance(data, bool) and abs(data) > _MAX_NUMBER \
            and (isinstance(data, int) or math.isfinite(data)):
        return [path]
    return []


def _schema_problems(doc: Document, source: str) -> list[Problem]:
    problems = []
    for error in _VALIDATOR.iter_errors(doc.data):
        path: Path = tuple(error.absolute_path)
        if error.validator == "additionalProperties":
            known = sorted(error.schema.get("properties", {}))
            for extra in sorted(set(error.instance) - set(known)):
                problems.append(Problem(source, dotted(path + (extra,)), doc.line_of(path + (extra,)),
                                        _unknown_field(extra, known)))
        elif error.validator == "required":
            missing = re.match(r"'([^']+)'", error.message)
            name = missing.group(1) if missing else "?"
            problems.append(Problem(source, dotted(path + (name,)), doc.line_of(path), "required field is missing"))
        else:
            problems.append(Problem(source, dotted(path), doc.line_of(path), _schema_message(error)))
    return problems


def _unknown_field(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown field '{name}'{hint} (expected one of: {', '.join(known)})"


def _schema_message(error: jsonschema.ValidationError) -> str:
    if error.validator == "type":
        got = _type_name(error.instance)
        hint = f' (quote it: "{error.instance}")' if error.validator_value == "string" and got == "number" else ""
        return f"expected {error.validator_value}, got {got} {error.instance!r}{hint}"
    if error.validator == "enum":
        return f"{error.instance!r} is not one of: {', '.join(map(str, error.validator_value))}"
    return error.message


def _type_name(value: Any) -> str:
    if type(value) in (int, float):
        return "number"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _semantic_problems(doc: Document, source: str) -> list[Problem]:
    data, problems = doc.data, []

    def add(path: Path, message: str) -> None:
        problems.append(Problem(source, dotted(path), doc.line_of(path), message))

    privacy = data.get("privacy", {})
    for index, custom in enumerate(privacy.get("custom", [])):
        base: Path = ("privacy", "custom", index)
        name = custom["name"]
        if name in BUILTIN_DETECTORS:
            add(base + ("name",), f"'{name}' is a built-in detector; give the custom detector another name")
        elif name in [c["name"] for c in privacy["custom"][:index]]:
            add(base + ("name",), f"custom detector '{name}' is defined twice")
        try:
            regex = compile_linear(custom["pattern"], ignore_case=bool(custom.get("ignore_case")))
        except RegexError as exc:
            add(base + ("pattern",), f"invalid regex: {exc}")
        else:
            if regex.search("") is not None:
                add(base + ("pattern",), "regex matches the empty string, so it would find nothing useful")

    seen: dict[str, str] = {}
    for action in TagAction:
        for index, tag in enumerate(privacy.get(action.value, [])):
            if tag in seen:
                add(("privacy", action.value, index),
                    f"contradictory rules: tag '{tag}' is under both {seen[tag]} and {action.value}")
            seen.setdefault(tag, action.value)

    rule, edge, cloud = data.get("confidence"), data["edge"], data["cloud"]
    if edge["max_new_tokens"] >= edge["max_context_tokens"]:
        add(("edge", "max_new_tokens"), f"contradictory limits: {edge['max_new_tokens']} new tokens leave no room "
            f"for a prompt in a context of {edge['max_context_tokens']}")
    if rule is not None and not cloud["allowed"]:
        add(("confidence",), "contradictory rules: cloud.allowed is false, so a confidence rule could never "
            "escalate; remove `confidence` or allow the cloud")
    if rule is not None and rule["signal"] == Signal.CALIBRATED.value:
        for name in ("threshold", "window", "min_tokens", "quantile"):
            if name in rule:
                add(("confidence", name), f"{name} does not apply to signal calibrated: the calibration file "
                    "sets the judge's thresholds and window (name a target instead)")
        targets = [t for t in ("target_escalation", "target_kept_accuracy", "min_p_correct") if t in rule]
        if len(targets) != 1:
            add(("confidence",), "signal calibrated needs exactly one target: min_p_correct (keep an answer only "
                "when the judge's P(correct) is at least this), target_escalation (share of answers sent to the "
                "cloud) or target_kept_accuracy" + (", not more than one" if targets else ""))
        try:
            _load_judge(rule, source)
        except JudgeError as exc:
            add(("confidence", "calibration"), str(exc))
    elif rule is not None:
        for name in ("calibration", "target_escalation", "target_kept_accuracy", "min_p_correct", "prefill_probe"):
            if name in rule:
                add(("confidence", name), f"{name} only applies to signal calibrated, not {rule['signal']}")
        if rule["min_tokens"] > edge["max_new_tokens"]:
            add(("confidence", "min_tokens"), f"contradictory rules: min_tokens {rule['min_tokens']} is more than "
                f"edge.max_new_tokens {edge['max_new_tokens']}, so the rule could never fire")
        if "quantile" in rule and rule["signal"] != Signal.QUANTILE_PROB.value:
            add(("confidence", "quantile"), f"quantile only applies to signal quantile_prob, not {rule['signal']}")
        range_problem = _threshold_problem(Signal(rule["signal"]), rule["threshold"])
        if range_problem:
            add(("confidence", "threshold"), range_problem)

    kv = data.get("kv_handoff", {})
    if kv.get("enabled") and not cloud["allowed"]:
        add(("kv_handoff", "enabled"), "contradictory rules: cloud.allowed is false, so nothing is ever handed off")
    if kv.get("prefill_offload") and not kv.get("enabled"):
        add(("kv_handoff", "prefill_offload"), "prefill_offload needs kv_handoff.enabled: true")

    audit = data.get("audit")
    if audit is not None and audit.get("enabled", True) and not audit.get("path"):
        add(("audit",), "audit is enabled but has no path; set audit.path or enabled: false")
    return problems


def _threshold_problem(signal: Signal, threshold: float) -> str | None:
    if not math.isfinite(threshold):
        return f"threshold must be a finite number, got {threshold}"
    if signal in (Signal.MIN_PROB, Signal.QUANTILE_PROB) and not 0 < threshold < 1:
        return f"threshold {threshold} is out of range for {signal.value}: a probability strictly between 0 and 1"
    if signal is Signal.MEAN_LOGPROB and not threshold < 0:
        return f"threshold {threshold} is out of range for mean_logprob: a log-probability below 0"
    if signal is Signal.ENTROPY and not threshold > 0:
        return f"threshold {threshold} is out of range for entropy: nats above 0"
    return None


def _load_judge(rule: dict[str, Any], source: str) -> tuple[str, Judge]:
    """The calibration file, resolved against the policy file's folder (the working directory
    for a policy that is not a file); a bare name not found there may name a judge shipped in
    Tandem's policies/ folder (smollm2-135m.judge.json)."""
    written = FsPath(rule["calibration"]).expanduser()
    path = written
    if not written.is_absolute():
        base = FsPath(source).parent if FsPath(source).is_file() else FsPath.cwd()
        path = base / written
        shipped = SHIPPED_JUDGES / written
        if not path.exists() and written.name == str(written) and shipped.is_file():
            path = shipped
    path = path.resolve()
    return str(path), Judge.load(path)


def _confidence_rule(rule: dict[str, Any], source: str) -> ConfidenceRule:
    action = EscalationAction(rule.get("action", EscalationAction.ESCALATE_CONTINUE))
    hold = int(rule.get("hold_tokens", 0))
    if rule["signal"] != Signal.CALIBRATED.value:
        return ConfidenceRule(
            signal=Signal(rule["signal"]),
            threshold=float(rule["threshold"]),
            window=int(rule["window"]),
            min_tokens=int(rule["min_tokens"]),
            action=action,
            quantile=float(rule.get("quantile", 0.1)),
            hold_tokens=hold,
        )
    path, judge = _load_judge(rule, source)
    escalation, accuracy, min_p = (rule.get(t) for t in ("target_escalation", "target_kept_accuracy", "min_p_correct"))
    point = judge.operating_point(escalation=escalation, kept_accuracy=accuracy, min_p_correct=min_p)
    calibration = Calibration(path, judge, point, None if escalation is None else float(escalation),
                              None if accuracy is None else float(accuracy), bool(rule.get("prefill_probe", True)),
                              None if min_p is None else float(min_p))
    return ConfidenceRule(Signal.CALIBRATED, point.judge_threshold, judge.window, 1, action, hold_tokens=hold,
                          calibration=calibration)


def _build(data: dict[str, Any], source: str) -> Policy:
    privacy = data.get("privacy", {})
    switches = privacy.get("detectors", {})
    actions = {tag: action for action in TagAction for tag in privacy.get(action.value, [])}
    rule = data.get("confidence")
    audit = data.get("audit")
    return Policy(
        version=data["version"],
        edge=EdgeLimits(int(data["edge"]["max_context_tokens"]), int(data["edge"]["max_new_tokens"])),
        confidence=None if rule is None else _confidence_rule(rule, source),
        privacy=PrivacyRules(
            detectors=frozenset(name for name in BUILTIN_DETECTORS if switches.get(name, True)),
            custom=tuple(
                CustomDetector(c["name"], c["pattern"], c.get("tag", c["name"]), c.get("ignore_case", False))
                for c in privacy.get("custom", [])
            ),
            actions=actions,
            default_action=TagAction(privacy.get("default_action", TagAction.LOCAL_ONLY)),
        ),
        cloud=CloudRules(data["cloud"]["allowed"], Fallback(data["cloud"].get("on_unreachable", "answer_local"))),
        audit=AuditSettings(
            enabled=audit is not None and audit.get("enabled", True),
            path=None if audit is None else audit.get("path"),
        ),
        kv_handoff=_kv_rules(data.get("kv_handoff", {})),
        source=source,
    )


def _kv_rules(kv: dict[str, Any]) -> KVHandoffRules:
    default = KVHandoffRules()
    return KVHandoffRules(
        enabled=kv.get("enabled", default.enabled),
        codec=kv.get("codec", default.codec),
        cross_precision=kv.get("cross_precision", default.cross_precision),
        prefill_offload=kv.get("prefill_offload", default.prefill_offload),
        min_offload_tokens=int(kv.get("min_offload_tokens", default.min_offload_tokens)),
        link_mbps=float(kv.get("link_mbps", default.link_mbps)),
        rtt_ms=float(kv.get("rtt_ms", default.rtt_ms)),
        edge_prefill_tokens_per_s=float(kv.get("edge_prefill_tokens_per_s", default.edge_prefill_tokens_per_s)),
        cloud_prefill_tokens_per_s=float(kv.get("cloud_prefill_tokens_per_s", default.cloud_prefill_tokens_per_s)),
    )
