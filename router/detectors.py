"""Text in, tagged spans out: the built-in detectors plus a policy's regexes.

A finding's `kind` says what was found (`email`, `us_ssn`, `jwt`, a custom
detector's name); its `tag` is what the policy maps to an action: the built-in
detector's name (`email`, `national_id`, `secret`) or the custom detector's
tag. Spans may overlap when two detectors claim the same characters (an
e-mail address that holds a token); the decision then applies the stricter
action and redaction covers the union, so no overlap can weaken a policy. The
one exception: digits of a checksum-validated card, IBAN or national ID are
not also reported as a phone number.
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


# A phone number found among the digits of a checksum-validated card, IBAN or
# national ID is part of that number, not a phone.
_EXPLAINED_BY = {"phone": ("card", "iban", "national_id")}


def detect(text: str, privacy: PrivacyRules | None = None) -> list[Finding]:
    """Findings of the enabled detectors (all built-ins when no rules are given), by position."""
    enabled = DETECTORS.keys() if privacy is None else privacy.detectors
    builtin = {name: {(kind, start, end) for kind, start, end in DETECTORS[name](text) if end > start}
               for name in enabled}
    for name, explainers in _EXPLAINED_BY.items():
        wider = [(s, e) for other in explainers for _, s, e in builtin.get(other, ())]
        builtin[name] = {f for f in builtin.get(name, ()) if not any(s <= f[1] and f[2] <= e for s, e in wider)}
    found = {Finding(kind, start, end, name) for name, spans in builtin.items() if name in enabled
             for kind, start, end in spans}
    if privacy is not None:
        found.update(
            Finding(custom.name, m.start(), m.end(), custom.tag)
            for custom in privacy.custom
            for m in custom.regex.finditer(text)
            if m.end() > m.start()
        )
    return sorted(found, key=lambda f: (f.start, -f.end, f.kind))
