"""The detectors against a labelled set of realistic texts (tests/router_data/pii_cases.yaml):
recall on structured entities, false positives on hard negatives, and the
edge cases each detector exists to get right."""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import unicodedata
import uuid
from collections import Counter
from pathlib import Path

import phonenumbers
import pytest
import yaml
from stdnum import iban, luhn
from stdnum.br import cpf
from stdnum.de import idnr
from stdnum.nl import bsn
from stdnum.pl import pesel
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale
from stdnum.us import ssn

from router import BUILTIN_DETECTORS, DETECTORS, Finding, PolicyError, detect, parse_policy
from router.detectors import detect_all
from router.credentials import looks_random, shannon_entropy
from router.normalize import text_view
from tests.conftest import PROSE_FILES

DATA = Path(__file__).parent / "router_data"
CASES = yaml.safe_load((DATA / "pii_cases.yaml").read_text(encoding="utf-8"))
TRICKY = yaml.safe_load((DATA / "tricky_cases.yaml").read_text(encoding="utf-8"))
GENERATED = [json.loads(line) for line in (DATA / "generated_cases.jsonl").read_text(encoding="utf-8").splitlines()]
POSITIVES = CASES["positives"] + TRICKY["positives"] + [c for c in GENERATED if c["entities"] and "text" in c]
NEGATIVES = CASES["negatives"] + TRICKY["negatives"] + [c["text"] for c in GENERATED if not c["entities"]]
SPLIT = [c for c in GENERATED if "messages" in c]  # a value split across two chat messages
# Kinds found by context (a keyword, a label, a header, a command line) or, for phones, by
# numbering plans that accept many digit strings: held to 0.95. Every kind with a
# checksum or a fixed format is held to 0.99.
HEURISTIC_KINDS = {"credential", "cli_credential", "auth_header", "url_credential", "phone", "passport",
                   "drivers_license", "bank_account", "birth_date", "street_address", "person_name"}
VALIDATORS = {  # each on the digits (and letters) alone, as the detectors read them
    "card": lambda v: luhn.is_valid(_ascii(v, r"\D")),
    "iban": lambda v: iban.is_valid(_ascii(v, r"[\s._/|-]").upper()),
    "us_ssn": lambda v: ssn.is_valid(_ascii(v, r"\D")),
    "es_dni": lambda v: dni.is_valid(_ascii(v, r"\W|_").upper()),
    "es_nie": lambda v: nie.is_valid(_ascii(v, r"\W|_").upper()),
    "in_aadhaar": lambda v: aadhaar.is_valid(_ascii(v, r"\D")),
    "it_codice_fiscale": lambda v: codicefiscale.is_valid(_ascii(v, r"\W").upper()),
    "fr_nir": lambda v: nir.is_valid(_ascii(v, r"\D")),
    "nl_bsn": lambda v: bsn.is_valid(_ascii(v, r"\D")),
    "de_idnr": lambda v: idnr.is_valid(_ascii(v, r"\D")),
    "pl_pesel": lambda v: pesel.is_valid(_ascii(v, r"\D")),
    "br_cpf": lambda v: cpf.is_valid(_ascii(v, r"\D")),
}


_LOOK_ALIKES = str.maketrans("АЕКМНОРСТХ", "AEKMHOPCTX")  # Cyrillic letters the hostile cases swap in


def _ascii(value: str, drop: str) -> str:
    """The value as its validator reads it: digits spelled as words read as digits, Unicode digits made
    ASCII, look-alike letters Latin, invisible characters and separators dropped."""
    value = text_view(value).text.translate(_LOOK_ALIKES)
    folded = "".join(str(unicodedata.decimal(c)) if unicodedata.decimal(c, None) is not None else c for c in value)
    folded = "".join(unicodedata.normalize("NFKC", c) for c in folded if unicodedata.category(c) != "Cf")
    return re.sub(drop, "", folded)


def _expected_spans(text: str, entities: list[list[str]]) -> list[tuple[str, int, int]]:
    spans, cursor = [], Counter()
    for kind, value in entities:
        start = text.index(value, cursor[value])
        cursor[value] = start + 1
        spans.append((kind, start, start + len(value)))
    return spans


def _evaluate() -> dict:
    hits, totals = Counter(), Counter()
    missed, spurious_positive, flagged_negatives = [], [], []
    for case in POSITIVES:
        text = case["text"]
        found = detect(text)
        expected = _expected_spans(text, case["entities"])
        for kind, start, end in expected:
            totals[kind] += 1
            if any(f.start <= start and f.end >= end for f in found):
                hits[kind] += 1
            else:
                missed.append((kind, text[start:end]))
        for f in found:
            if not any(f.start < end and start < f.end for _, start, end in expected):
                spurious_positive.append((f.kind, text[f.start:f.end]))
    for case in SPLIT:
        found = detect_all(case["messages"])
        for kind, index, part in case["entities"]:
            totals[kind] += 1
            start = case["messages"][index].index(part)
            if any(f.start <= start and f.end >= start + len(part) for f in found[index]):
                hits[kind] += 1
            else:
                missed.append((kind, part))
    for text in NEGATIVES:
        found = detect(text)
        if found:
            flagged_negatives.append((text, [(f.kind, text[f.start:f.end]) for f in found]))
    return {
        "recall": {k: hits[k] / totals[k] for k in totals},
        "counts": {k: f"{hits[k]}/{totals[k]}" for k in sorted(totals)},
        "entities": sum(totals.values()),
        "missed": missed,
        "fp_rate_negatives": len(flagged_negatives) / len(NEGATIVES),
        "flagged_negatives": flagged_negatives,
        "spurious_in_positives": spurious_positive,
    }


@pytest.fixture(scope="module")
def evaluation() -> dict:
    return _evaluate()


def test_labelled_set_is_large_multilingual_and_its_check_digits_are_real():
    assert len(POSITIVES) + len(SPLIT) + len(NEGATIVES) >= 500
    assert len(NEGATIVES) >= 150
    languages = {c.get("lang") for c in GENERATED}
    assert {"en", "de", "fr", "es", "it", "pt", "nl"} <= languages
    assert {c["form"] for c in GENERATED} >= {"fullwidth", "arabic", "nbsp", "zwsp", "newline", "dots", "lower",
                                              "spelled_at", "split_messages", "spelled_words", "spaced_at",
                                              "newline_area", "split_area", "other_digits", "homoglyph_letters",
                                              "separators", "password_word", "hostile_negative"}
    for case in POSITIVES:  # but the ones written with a bad check after the ID's own word, which count too
        for kind, value in case["entities"]:
            if kind in VALIDATORS and case.get("form") != "bad_check":
                assert VALIDATORS[kind](value), (kind, value)
    assert sum(c.get("form") == "bad_check" for c in POSITIVES) >= 50


def test_recall_per_kind(evaluation):
    """>= 0.99 for every kind with a checksum or a fixed format, >= 0.95 for secrets found by context and phones."""
    print(f"\nrecall over {evaluation['entities']} entities: {evaluation['counts']}; missed {evaluation['missed']}")
    for kind, recall in evaluation["recall"].items():
        assert recall >= (0.95 if kind in HEURISTIC_KINDS else 0.99), (kind, evaluation["counts"][kind],
                                                                       evaluation["missed"])


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
    assert detect(text, policy.privacy) == [  # the built-in health detector reads the record number too
        Finding("mrn", 0, 10, "health"), Finding("medical_record_number", 4, 10, "health"),
        Finding("codename", 25, 39, "codename")
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


def test_hex_digests_and_uuids_hold_no_account_numbers_and_almost_no_ids():
    """Machine ids (uuid4 hex, SHA digests) are random letters a-f and digits: "83acc3cc4..." is no
    "acc" label before a number, and a checksummed ID's digits glued to the letters after them
    ("254992788777419a817d...", a valid French NIR) are part of the token (before: ~6 in 200,000 uuids)."""
    rng = random.Random(19)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4).hex for _ in range(4000)]
    ids += [hashlib.sha256(rng.randbytes(16)).hexdigest() for _ in range(1000)]
    findings = [f for text in ids for f in detect(text)]
    assert findings == []
    assert detect("254992788777419a817d2bbd6dccb8f3") == []
    assert [f.kind for f in detect("NIR 2549927887774 19, SSN 146-25-2971")] == ["fr_nir", "us_ssn"]
    assert [f.kind for f in detect("acc 31926819 and acct# 40917263")] == ["bank_account", "bank_account"]


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
    # people's names: a cue every few bytes, each a match from it; and 2,000 distinct names, each looked for again
    "my son my son my son " * 1600, "".join(f"Dear {chr(65 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676)}x, "
                                            for i in range(3000)),
    # streets whose town and postcode are looked for after each; login pairs and templates after password words;
    # cues of scripts without case or spaces
    "12 Main Street, Springfield 62704 " * 950, "12 Main Street, Springfield " * 1150, "login a / b " * 2700,
    "password: {{ a }} x " * 1600, "北京市海淀区学院路30号" * 1000, "我叫王晓明，田中様、" * 1100,
    # SQL rows read value by value under a person's column; statements with unclosed strings; Hindi cues
    "INSERT INTO users (name, email) VALUES " + "('Ana Souza', 'a@b.io'), " * 1300,
    "insert into users (name) values ('" * 900, "मेरी पत्नी सुनीता से " * 1400,
    # recovery phrases: a cue every few bytes, each followed by listed words; one listed word over and over
    "seed phrase: abandon " * 1500, "abandon ability able " * 1500,
    # health: a verb with its subject before every condition; a diagnosis field every few bytes
    "my dad has cancer, " * 1700, "Diagnosis: " * 3000,
    # medicines: a verb of taking with its subject before every dose; 'she is' before every state; a meds field
    "my mum takes 20 mg of " * 1500, "she is she's " * 2500, "Meds: " * 5000,
    # special categories: a subject and a verb before every state; a party's words after every vote
    "my brother is gay and she is Muslim, " * 900, "I voted for the Green Party of " * 1000,
    # pay: a possessive and a pay word before every amount; an amount after every label
    "her salary is $1,000 and " * 1300, "Salary: " * 4000,
], ids=["digit-list", "phone-shaped", "digit-run", "cards", "keywords", "pem", "at-signs", "colons", "emails",
        "relations", "salutations", "streets-postcodes", "streets", "login-pairs", "templates", "cjk-addresses",
        "caseless-cues", "sql-rows", "sql-unclosed", "hindi-cues", "seed-cues",
        "seed-words", "health-verbs", "health-fields", "medicine-verbs", "states", "medicine-fields",
        "orientation-religion", "votes", "pay", "pay-labels"])
def test_adversarial_32kb_inputs_take_well_under_a_second(text):
    # CPU time of this thread: on a machine shared with other jobs, wall-clock time is mostly theirs.
    start = time.thread_time()
    detect(text)
    assert time.thread_time() - start < 1.0


# The people the shipped prose slices name after an honorific or a relation ("Mr. Truman", "his
# brother Abel"), read by hand: the only personal data in them.
NAMES_IN_SLICES = {("kjv-genesis.txt", "Abel"), ("kjv-genesis.txt", "Enoch"), ("kjv-genesis.txt", "Terah"),
                   ("kjv-genesis.txt", "Abram"), ("kjv-genesis.txt", "Lot"), ("sotu-1962-kennedy.txt", "Sam"),
                   ("sotu-1962-kennedy.txt", "Khrushchev"), ("sotu-1995-clinton.txt", "Truman")}


# What else the prose says of a person, read by hand (all of the 10 MB): a constituent's party in
# 1995's address ("She ... said, 'Mr. President, I'm a Republican, but ...'"), Romans 2:29, a man
# "sentenced to imprisonment" in Mexico (1885) and a sheriff and his deputies "indicted for murder" (1898).
OPINIONS_IN_PROSE = {("sotu-1995-clinton.txt", "political_opinion", "Republican"),
                     ("1995_william_j_clinton_d.txt", "political_opinion", "Republican"), ("kjv.txt", "religion", "Jew"),
                     ("1885_grover_cleveland_d.txt", "criminal_record", "sentenced to imprisonment"),
                     ("1898_william_mc_kinley_r.txt", "criminal_record", "indicted for murder, were tried")}


def test_real_prose_has_no_findings_but_the_people_it_names(prose):
    """State of the Union addresses and the King James Bible (all 10 MB with
    TANDEM_SHARED_DATA): numbers, dates and money everywhere, and no personal data or secrets
    but the names of people ("Mr. Truman", "his son Abram") and the two opinions read by hand; on the
    shipped slices, exactly the names read by hand."""
    findings = [(name, f.kind, para[f.start:f.end]) for name, text in prose for para in text.split("\n")
                for f in detect(para)]
    assert {f for f in findings if f[1] != "person_name"} <= OPINIONS_IN_PROSE
    if {name for name, _ in prose} == set(PROSE_FILES):
        assert {(name, value) for name, kind, value in findings if kind == "person_name"} == NAMES_IN_SLICES


@pytest.mark.parametrize("text, street", [
    ("What happened at 1600 Pennsylvania Avenue during the War of 1812 when British troops burned it?",
     "1600 Pennsylvania Avenue"),
    ("We met at 12 Market Street. Since 1971 no general sale was held there.", "12 Market Street"),
    ("During 1926 we shipped twelve tons; the Kaiserring 14 office stayed open.", "Kaiserring 14"),
])
def test_a_street_takes_no_sentence_or_year_for_its_locality(text, street):
    """A locality is read in the street's own case and stops at a sentence's end; '-ring' after a vowel is
    English ('During'), not a German street."""
    assert [(f.kind, text[f.start:f.end]) for f in detect(text)] == [("street_address", street)]


def test_a_name_beside_an_identifier_is_the_persons_but_a_place_or_a_company_is_no_one():
    text = ("Contacts: Cape Town +27 21 123 4567, Deutsche Bank service line +49 69 910 00, Rui Costa, "
            "+351 912 345 678. Können Sie, bitte, IBAN DE89 3704 0044 0532 0130 00 prüfen?")
    assert [text[f.start:f.end] for f in detect(text) if f.kind == "person_name"] == ["Rui Costa"]


def test_addresses_of_no_one_are_not_ip_addresses():
    text = "bind 127.0.0.1 or 0.0.0.0 (::1, ::), mask 255.255.255.0, multicast 224.0.0.251; the NAS is 192.168.1.20"
    assert [text[f.start:f.end] for f in detect(text)] == ["192.168.1.20"]


def test_placeholder_like_text_is_not_a_finding():
    assert detect("Hello [EMAIL_1], your code is [PHONE_2].") == []


def test_no_finding_reads_outside_the_text():
    for case in POSITIVES[:20]:
        for f in detect(case["text"]):
            assert 0 <= f.start < f.end <= len(case["text"])
            assert re.search(r"\S", case["text"][f.start:f.end])


CATASTROPHIC = """
version: "t"
edge: {max_context_tokens: 100, max_new_tokens: 10}
cloud: {allowed: true}
privacy:
  custom:
    - {name: runaway, pattern: '(a+)+$', tag: internal}
"""


def test_a_catastrophic_custom_regex_cannot_hang_decide():
    """`(a+)+$` backtracks exponentially in Python's `re` (seconds at 24 characters); on RE2 it is linear."""
    policy = parse_policy(CATASTROPHIC)
    text = "a" * 30_000 + "b"
    start = time.thread_time()
    findings = detect(text, policy.privacy)
    assert time.thread_time() - start < 0.5
    assert [f.kind for f in findings] == []
    assert [(f.kind, f.start, f.end) for f in detect("xaaa", policy.privacy)] == [("runaway", 1, 4)]


def test_a_custom_regex_re2_cannot_run_is_refused_with_its_field_and_line():
    text = CATASTROPHIC.replace("'(a+)+$'", r"'(?<=MRN)\d+'")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    assert info.value.field == "privacy.custom[0].pattern" and info.value.line == 7
    assert "look-behind is not supported" in info.value.message


def test_the_vendor_prefilter_lets_through_every_vendor_key_its_pattern_finds():
    """Vendor patterns run only where the RE2 set says they occur: the set must never miss one."""
    from router.credentials import _VENDOR_KEYS, _VENDOR_SET
    seen = set()
    for case in POSITIVES:
        text = case["text"]
        direct = {kind for kind, pattern in _VENDOR_KEYS if pattern.search(text)}
        assert direct <= {_VENDOR_KEYS[i][0] for i in _VENDOR_SET.Match(text) or ()}, text
        seen |= direct
    assert len(seen) >= 10  # the labelled set holds many vendors' formats


def test_every_id_keyword_spelling_is_found_as_a_word_naming_an_id():
    """Keywords are found in one RE2 pass (router.national_ids.IdWords); a spelling it misses
    would silently need the ID's printed shape, and a word it wrongly takes ("said") would hide phones."""
    from router.id_words import KEYWORDS as NAMED
    from router.national_ids import IdWords
    from tests.router_data.make_cases import KEYWORDS
    # the kinds the generated cases do not cover, with the spellings people write
    more = {"tr_tckimlik": ["tc kimlik no", "t.c. kimlik numarası", "tckn"], "kr_rrn": ["주민등록번호", "주민번호"],
            "ro_cnp": ["cnp", "cod numeric personal"], "il_idnr": ["תעודת זהות", "teudat zehut"],
            "id_nik": ["nik", "nomor induk kependudukan"],
            "jp_mynumber": ["マイナンバー", "個人番号", "my number wa", "mai nanbaa", "kojin bangou"],
            "my_nric": ["mykad", "nric", "no. kp", "kad pengenalan", "ic number"],
            "vn_cccd": ["cccd", "cmnd", "căn cước"], "sa_id": ["رقم الهوية", "iqama"], "ke_id": ["kitambulisho"]}
    spellings = [w for kind, words in {**KEYWORDS, **more}.items() if kind in NAMED for w in words] + [
        "national id", "tax id", "tin", "personal number", "id no", "identification number", "identity card",
        "ausweis", "identifiant", "identidad", "identità", "securite sociale", "registre national", "sofinummer",
        "uidai", "adhaar", "st-id", "idnr", "south african id", "sa id", "insee", "resident id", "ppsn",
        "personbeteckning", "sozialversicherungsnummer", "n.a.s", "tax file number", "contribuinte", "आधार",
    ]
    assert set(NAMED) <= set(KEYWORDS) | set(more)
    for spelling in spellings:
        for text in (f"the {spelling.strip(':#= ')}: 123", f"{spelling.upper()}123"):
            assert IdWords(text).labels(text.index("123")), text
    for text in ("he said 0612345678", "since 0612345678", "waiting 0612345678", "first id 123", "SAID: 123"):
        assert not IdWords(text).labels(text.index(next(c for c in text if c.isdigit()))), text
