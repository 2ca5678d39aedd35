"""Text in, tagged spans out: the built-in detectors plus a policy's regexes.

A finding's `kind` says what was found (`email`, `us_ssn`, `jwt`, a custom
detector's name); its `tag` is what the policy maps to an action: the built-in
detector's name (`email`, `national_id`, `secret`) or the custom detector's
tag. Spans may overlap when two detectors claim the same characters (an
e-mail address that holds a token); the decision then applies the stricter
action and redaction covers the union, so no overlap can weaken a policy. The
one exception: digits of a checksum-validated card, IBAN or national ID are
not also looked at as a phone number.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from dataclasses import dataclass

from router.addresses import find_addresses
from router.credentials import find_secrets
from router.labelled import find_labelled
from router.normalize import digit_view, text_view
from router.names import find_names
from router.employment import find_employment
from router.health import find_health
from router.special_categories import find_special_categories
from router.national_ids import IdWords
from router.phones import find_phones
from router.record_names import names_beside
from router.pii import find_cards, find_emails, find_ibans, find_ip_addresses, find_national_ids
from router.policy import PrivacyRules

Detector = Callable[[str], Iterator[tuple[str, int, int]]]

DETECTORS: dict[str, Detector] = {
    "email": find_emails,
    "phone": find_phones,
    "card": lambda text: chain(find_cards(text), find_labelled(text, ("card_cvv", "card_expiry"))),
    "iban": find_ibans,
    "national_id": find_national_ids,
    "bank_account": lambda text: find_labelled(text, ("bank_account", "insurance_policy")),
    "birth_date": lambda text: find_labelled(text, ("birth_date",)),
    "address": find_addresses,
    "person_name": find_names,
    "ip_address": find_ip_addresses,
    "secret": find_secrets,
    "health": find_health,
    "special_category": find_special_categories,
    "employment": find_employment,
}
# Government document numbers that only a label names (passport, driving licence, a vehicle's plate) count as
# national IDs.
_LABELLED_IDS = ("passport", "drivers_license", "licence_plate")


@dataclass(frozen=True, order=True)
class Finding:
    """A span `text[start:end]` of some kind, tagged for the policy. Holds no text."""

    kind: str
    start: int
    end: int
    tag: str


# Digits of a checksum-validated card, IBAN or national ID are that number, so the
# detectors run after these are told to leave them alone: the ID detector a card's or
# IBAN's digits, the phone detector all three.
_CLAIMING_DIGITS = ("card", "iban", "national_id")
_ORDER = {name: index for index, name in enumerate(("card", "iban", "national_id", *DETECTORS, "phone"))}
# Findings a name beside is the person's (router.record_names)
_RECORD_TAGS = frozenset({"national_id", "phone", "email", "birth_date", "iban", "card", "bank_account"})
_RECORD_KINDS = frozenset({"employee_id", "medical_record_number"})
# Detectors of numbers and codes read the digit view (separators unified, upper case);
# the others read the text view (see router.normalize).
ON_DIGIT_VIEW = frozenset({"card", "iban", "national_id", "phone", "bank_account", "birth_date"})


def detect(text: str, privacy: PrivacyRules | None = None) -> list[Finding]:
    """Findings of the enabled detectors (all built-ins when no rules are given), by position.

    Detectors read normalised views of `text` (router.normalize); every span is
    mapped back to the original characters it came from.
    """
    enabled = DETECTORS.keys() if privacy is None else privacy.detectors
    view = text_view(text)
    digits = digit_view(view) if ON_DIGIT_VIEW & set(enabled) else view
    found: set[Finding] = set()
    claimed: list[tuple[int, int]] = []
    id_words = IdWords(digits.text)  # words naming an ID: read by the ID and the phone detectors, found once
    # the address detector's spans, when it runs (before the name detector, on the same view)
    addresses: list[tuple[str, int, int]] | None = None
    for name in sorted(enabled, key=_ORDER.get):
        source = digits if name in ON_DIGIT_VIEW else view
        if name == "national_id":
            spans = chain(find_national_ids(source.text, id_words, claimed), find_labelled(source.text, _LABELLED_IDS))
        elif name == "phone":
            spans = find_phones(source.text, claimed, id_words)
        elif name == "address":  # kept for the name detector, which looks before each address
            spans = addresses = list(find_addresses(source.text))
        elif name == "person_name":
            spans = find_names(source.text, addresses)
        else:
            spans = DETECTORS[name](source.text)
        for kind, start, end in spans:
            if end > start:
                found.add(Finding(kind, *source.span(start, end), name))
                if name in _CLAIMING_DIGITS:
                    claimed.append((start, end))
    if "person_name" in enabled:  # a name beside someone's identifiers: "Orville Nakashima, SSN ..."
        records = [(f.start, f.end) for f in found if f.tag in _RECORD_TAGS or f.kind in _RECORD_KINDS]
        found.update(Finding("person_name", start, end, "person_name") for start, end in names_beside(text, records))
    if privacy is not None:
        for custom in privacy.custom:
            for source in (text, view.text) if view.text != text else (text,):
                for m in custom.regex.finditer(source):
                    if m.end() > m.start():
                        span = (m.start(), m.end()) if source is text else view.span(m.start(), m.end())
                        found.add(Finding(custom.name, *span, custom.tag))
    return sorted(found, key=lambda f: (f.start, -f.end, f.kind))


def detect_all(texts: Sequence[str], privacy: PrivacyRules | None = None) -> list[list[Finding]]:
    """Findings of each text, detected over all of them joined by line breaks, so a
    value split across two chat messages is found, and each part is a finding of its message."""
    if len(texts) == 1:
        return [detect(texts[0], privacy)]
    offsets, at = [], 0
    for text in texts:
        offsets.append(at)
        at += len(text) + 1
    per_text: list[list[Finding]] = [[] for _ in texts]
    for f in detect("\n".join(texts), privacy):
        first = bisect_right(offsets, f.start) - 1
        for index in range(first, len(texts)):
            offset = offsets[index]
            if offset >= f.end:
                break
            start, end = max(f.start - offset, 0), min(f.end - offset, len(texts[index]))
            if end > start:
                per_text[index].append(Finding(f.kind, start, end, f.tag))
    return per_text
