"""The detectors against a labelled set of realistic texts (tests/router_data/pii_cases.yaml):
recall on structured entities, false positives on hard negatives, and the
edge cases each detector exists to get right."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import phonenumbers
import pytest
import yaml
from stdnum import iban, luhn
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale
from stdnum.us import ssn

from router import BUILTIN_DETECTORS, DETECTORS, Finding, detect, parse_policy
from router.credentials import looks_random, shannon_entropy

CASES = yaml.safe_load((Path(__file__).parent / "router_data" / "pii_cases.yaml").read_text(encoding="utf-8"))
POSITIVES, NEGATIVES = CASES["positives"], CASES["negatives"]
# Heuristic (keyword + entropy) findings are measured but held to their own bar.
HEURISTIC_KINDS = {"credential"}
VALIDATORS = {  # each on the digits (and letters) alone, as the detectors call them
    "card": lambda v: luhn.is_valid(re.sub(r"\D", "", v)),
    "iban": iban.is_valid,
    "us_ssn": lambda v: ssn.is_valid(re.sub(r"\D", "", v)),
    "es_dni": lambda v: dni.is_valid(re.sub(r"[ .-]", "", v)),
    "es_nie": nie.is_valid,
    "in_aadhaar": aadhaar.is_valid,
    "it_codice_fiscale": codicefiscale.is_valid,
    "fr_nir": nir.is_valid,
}


def _expected_spans(text: str, entities: list[list[str]]) -> list[tuple[str, int, int]]:
    spans, cursor = [], Counter()
    for kind, value in entities:
        start = text.index(value, cursor[value])
        cursor[value] = start + 1
        spans.append((kind, start, start + len(value)))
    return spans


def _evaluate() -> dict:
    hits = Counter()
    totals = Counter()
    missed, spurious_positive, flagged_negatives = [], [], []
    for case in POSITIVES:
        text = case["text"]
        found = detect(text)
        expected = _expected_spans(text, case["entities"])
        for kind, start, end in expected:
            totals[kind] += 1
            if any(f.kind == kind and f.start <= start and f.end >= end for f in found):
                hits[kind] += 1
            else:
                missed.append((kind, text[start:end]))
        for f in found:
            if not any(f.start < end and start < f.end for _, start, end in expected):
                spurious_positive.append((f.kind, text[f.start:f.end]))
    for text in NEGATIVES:
        found = detect(text)
        if found:
            flagged_negatives.append((text, [(f.kind, text[f.start:f.end]) for f in found]))
    structured = [k for k in totals if k not in HEURISTIC_KINDS]
    return {
        "recall_structured": sum(hits[k] for k in structured) / sum(totals[k] for k in structured),
        "recall_heuristic": sum(hits[k] for k in HEURISTIC_KINDS) / max(1, sum(totals[k] for k in HEURISTIC_KINDS)),
        "entities": sum(totals.values()),
        "by_kind": {k: f"{hits[k]}/{totals[k]}" for k in sorted(totals)},
        "missed": missed,
        "fp_rate_negatives": len(flagged_negatives) / len(NEGATIVES),
        "flagged_negatives": flagged_negatives,
        "spurious_in_positives": spurious_positive,
    }


@pytest.fixture(scope="module")
def evaluation() -> dict:
    return _evaluate()


def test_labelled_set_is_large_and_its_check_digits_are_real():
    assert len(POSITIVES) + len(NEGATIVES) >= 150
    assert len(NEGATIVES) >= 60
    for case in POSITIVES:
        for kind, value in case["entities"]:
            if kind in VALIDATORS:
                assert VALIDATORS[kind](value), (kind, value)
            if kind == "phone":
                region = None if value.startswith(("+", "00")) else "US"
                number = value if not value.startswith("00") else "+" + value[2:]
                assert any(
                    phonenumbers.is_valid_number(phonenumbers.parse(number, r))
                    for r in ([region] if region is None else ["US", "GB", "DE", "FR", "IN"])
                ), value


def test_recall_on_structured_entities_is_at_least_99_percent(evaluation):
    print(f"\nrecall {evaluation['recall_structured']:.4f} over {evaluation['entities']} entities: "
          f"{evaluation['by_kind']}; missed {evaluation['missed']}")
    assert evaluation["recall_structured"] >= 0.99, evaluation["missed"]


def test_keyword_secrets_are_found(evaluation):
    assert evaluation["recall_heuristic"] >= 0.9, evaluation["missed"]


def test_false_positive_rate_on_hard_negatives_is_at_most_2_percent(evaluation):
    rate = evaluation["fp_rate_negatives"]
    print(f"\nfalse positives: {len(evaluation['flagged_negatives'])}/{len(NEGATIVES)} negatives ({rate:.2%}): "
          f"{evaluation['flagged_negatives']}; spurious spans in positives: {evaluation['spurious_in_positives']}")
    assert rate <= 0.02, evaluation["flagged_negatives"]


def test_positive_texts_have_few_spans_beyond_the_labelled_ones(evaluation):
    spurious = evaluation["spurious_in_positives"]
    assert len(spurious) <= 0.02 * evaluation["entities"], spurious


def test_every_builtin_detector_has_a_function_and_a_description():
    assert DETECTORS.keys() == BUILTIN_DETECTORS.keys()


def test_findings_carry_the_detector_name_as_tag():
    found = detect("mail a@b.io, SSN 146-25-2971, key AKIALDPA6HNBEGTDNBVQ")
    assert {(f.kind, f.tag) for f in found} == {
        ("email", "email"), ("us_ssn", "national_id"), ("aws_access_key", "secret")
    }


def test_custom_regexes_and_switches_come_from_the_policy():
    policy = parse_policy(
        """
version: "t"
edge: {max_context_tokens: 100, max_new_tokens: 10}
cloud: {allowed: true}
privacy:
  detectors: {email: off}
  custom:
    - {name: mrn, pattern: 'MRN-\\d{6}', tag: health}
    - {name: codename, pattern: 'project (?:falcon|osprey)', ignore_case: true}
"""
    )
    text = "MRN-123456 for a@b.io on Project Falcon"
    assert detect(text, policy.privacy) == [
        Finding("mrn", 0, 10, "health"), Finding("codename", 25, 39, "codename")
    ]


def test_overlapping_findings_are_all_reported():
    text = "git clone https://ghp_qtPQe6aIUFzTHFAwXvPw9zfea1Dg1O4gd9KG@github.com/a/b"
    kinds = {f.kind for f in detect(text)}
    assert {"github_token", "email"} <= kinds


@pytest.mark.parametrize("text", [
    "1.2.3", "10.0", "version 1.2.3.4", "999.1.1.1", "12:30:45", "std::vector", "a::b", "00:1A:2B:3C:4D:5E",
])
def test_version_strings_times_and_code_are_not_ip_addresses(text):
    assert [f for f in detect(text) if f.kind == "ip_address"] == []


def test_card_numbers_need_luhn_and_an_issuer_prefix():
    good = "4111 1111 1111 1111"
    assert [f.kind for f in detect(good)] == ["card"]
    assert detect("4111 1111 1111 1112") == []  # Luhn fails
    assert detect("9111 1111 1111 1116") == []  # Luhn passes, no issuer starts with 9
    assert detect("4111 1111-1111 1111") == []  # mixed separators are not how cards are written


def test_iban_next_to_an_upper_case_word_is_trimmed_to_the_valid_part():
    text = "Konto DE89 3704 0044 0532 0130 00 BITTE"
    (found,) = detect(text)
    assert text[found.start:found.end] == "DE89 3704 0044 0532 0130 00"


def test_bare_ssn_and_aadhaar_digits_need_a_naming_word():
    assert detect("PO 146252971 approved") == []
    assert [f.kind for f in detect("SSN 146252971")] == ["us_ssn"]
    assert detect("batch 947161516606 done") == []
    assert [f.kind for f in detect("Aadhaar 947161516606")] == ["in_aadhaar"]


def test_keyword_secrets_need_randomness_not_just_a_keyword():
    assert looks_random("Xk9#mP2$vLq")
    assert not looks_random("llama-3.1-8b-instruct")
    assert not looks_random("correcthorse")
    assert not looks_random("https://example.com/reset?x=1")
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == 2.0


def test_jwt_needs_a_header_with_alg():
    header_without_alg = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"  # {"typ":"JWT"}
    assert [f for f in detect(header_without_alg) if f.kind == "jwt"] == []


@pytest.mark.parametrize("text", [
    "1 2 3 4 5 6 7 8 9 " * 4000, "0123 4567, " * 3000, "9" * 32_000, "4111 1111 1111 1111 " * 1000,
    "password " * 3000, "-----BEGIN RSA PRIVATE KEY-----" * 1000, "@" * 32_000, ":" * 32_000, "a@b." * 8000,
], ids=["digit-list", "phone-shaped", "digit-run", "cards", "keywords", "pem", "at-signs", "colons", "emails"])
def test_adversarial_32kb_inputs_take_well_under_a_second(text):
    start = time.perf_counter()
    detect(text)
    assert time.perf_counter() - start < 1.0


def test_real_prose_has_no_findings(prose):
    """State of the Union addresses and the King James Bible (all 10 MB with
    TANDEM_SHARED_DATA): numbers, dates and money everywhere, and no personal data or secrets."""
    findings = [(f.kind, para[f.start:f.end]) for _, text in prose for para in text.split("\n") for f in detect(para)]
    assert findings == []


def test_placeholder_like_text_is_not_a_finding():
    assert detect("Hello [EMAIL_1], your code is [PHONE_2].") == []


def test_no_finding_reads_outside_the_text():
    for case in POSITIVES[:20]:
        for f in detect(case["text"]):
            assert 0 <= f.start < f.end <= len(case["text"])
            assert re.search(r"\S", case["text"][f.start:f.end])
