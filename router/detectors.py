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

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from router.credentials import find_secrets
from router.phones import find_phones
from router.pii import find_cards, find_emails, find_ibans, find_ip_addresses, find_national_ids
from router.policy import PrivacyRules

Detector = Callable[[str], Iterator[tuple[str, int, int]]]

DETECTORS: dict[str, Detector] = {
    "email": find_emails,
    "phone": find_phones,
    "card": find_cards,
    "iban": find_ibans,
    "national_id": find_national_ids,
    "ip_address": find_ip_addresses,
    "secret": find_secrets,
}


@dataclass(frozen=True, order=True)
class Finding:
    """A span `text[start:end]` of some kind, tagged for the policy. Holds no text."""

    kind: str
    start: int
    end: int
    tag: str


# Digits of a checksum-validated card, IBAN or national ID are that number, so the
# phone detector, run after these, is told to leave them alone.
_CLAIMING_DIGITS = ("card", "iban", "national_id")


def detect(text: str, privacy: PrivacyRules | None = None) -> list[Finding]:
    """Findings of the enabled detectors (all built-ins when no rules are given), by position."""
    enabled = DETECTORS.keys() if privacy is None else privacy.detectors
    found = {
        Finding(kind, start, end, name)
        for name in enabled
        if name != "phone"
        for kind, start, end in DETECTORS[name](text)
        if end > start
    }
    if "phone" in enabled:
        claimed = [(f.start, f.end) for f in found if f.tag in _CLAIMING_DIGITS]
        found.update(Finding(kind, start, end, "phone") for kind, start, end in find_phones(text, claimed))
    if privacy is not None:
        found.update(
            Finding(custom.name, m.start(), m.end(), custom.tag)
            for custom in privacy.custom
            for m in custom.regex.finditer(text)
            if m.end() > m.start()
        )
    return sorted(found, key=lambda f: (f.start, -f.end, f.kind))
