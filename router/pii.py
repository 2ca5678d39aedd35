"""Detectors for personal data with a structure: e-mail, phone, payment card,
IBAN, national identifiers, IP addresses.

Each detector is a cheap regex that proposes candidates and a validator that
keeps only those a well-kept library accepts (phonenumbers' numbering plans,
python-stdnum's check digits, `ipaddress`). Checksums are what keep order
numbers, dates and prices from being tagged. Every function yields
`(kind, start, end)` spans in the text.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

import phonenumbers
from stdnum import iban as std_iban
from stdnum import luhn
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale
from stdnum.us import ssn

Span = tuple[str, int, int]

# --- e-mail -----------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![\w@-])"
)
_FILE_EXTENSIONS = frozenset("png jpg jpeg gif svg webp bmp ico pdf js css".split())


def find_emails(text: str) -> Iterator[Span]:
    """Addresses with a dotted domain; `icon@2x.png` is a file name, not a mailbox."""
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        if m.group(1).lower() not in _FILE_EXTENSIONS:
            yield "email", m.start(), m.end()


# --- phone ------------------------------------------------------------------

# Digits in groups joined by one separator, optionally led by +CC or (area).
_PHONE_CANDIDATE = re.compile(
    r"(?<![\w.,/#$€£¥+@:=-])(?:\+ ?|00 ?)?(?:\(\d{1,5}\) ?)?\d+"
    r"(?:[ .\-/] ?(?:\(\d{1,5}\) ?)?\d+|\(\d{1,5}\) ?\d+){0,7}(?![\w@]|[.,:/-]\d)"
)
_DATE_OR_TIME = re.compile(
    r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|\d{1,2}:\d{2}|\d{1,3}(?:[.,]\d{3})+"
)
# A number right after one of these words is an identifier of a thing, not a phone.
_NOT_A_PHONE_BEFORE = re.compile(
    r"(?i)\b(?:order|invoice|tracking|reference|ref|confirmation|serial|ticket|booking|case|sku|part|model|"
    r"po|transaction|receipt|isbn|batch|lot|account|acct|routing|iban|card)\s*(?:no\.?|number|num|id|#)?\s*[:#.]?\s*$"
)
_NATIONAL_REGIONS = {"0": ("GB", "DE", "FR", "IN"), "": ("US", "IN")}


def find_phones(text: str) -> Iterator[Span]:
    """Numbers valid in the US, GB, DE, FR or IN plans, or any plan when written +CC.

    A regex pre-filter finds digit runs of phone length, so phonenumbers (tens
    of microseconds per parse) only sees real candidates.
    """
    for m in _PHONE_CANDIDATE.finditer(text):
        candidate = m.group()
        digits = sum(c.isdigit() for c in candidate)
        if not 7 <= digits <= 15 or _DATE_OR_TIME.fullmatch(candidate) or candidate.count(".") == 3:
            continue
        if _NOT_A_PHONE_BEFORE.search(text, max(0, m.start() - 40), m.start()):
            continue
        if _valid_phone(candidate):
            yield "phone", m.start(), m.end()


def _valid_phone(candidate: str) -> bool:
    international = candidate.startswith(("+", "00"))
    if international:
        regions: tuple[str | None, ...] = (None,)
        candidate = "+" + candidate[2:] if candidate.startswith("00") else candidate
    else:
        regions = _NATIONAL_REGIONS["0" if candidate.lstrip("(").startswith("0") else ""]
    for region in regions:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True
    return False


# --- payment cards ------------------------------------------------------------

_CARD_CANDIDATE = re.compile(r"(?<![\w.,-])\d(?:[ -]?\d){12,18}(?![\w]|[.,-]\d)")
# Issuer prefixes (IIN ranges) of the networks in use: Visa, Mastercard, Amex,
# Discover, JCB, Diners, UnionPay, Maestro.
_CARD_PREFIX = re.compile(r"4|5[1-5]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[47]|6(?:011|5|4[4-9]|2)|35(?:2[89]|[3-8])|3(?:0[0-5]|[689])|5[06-9]")


def find_cards(text: str) -> Iterator[Span]:
    """13-19 digits, evenly separated, with an issuer prefix and a Luhn check digit."""
    for m in _CARD_CANDIDATE.finditer(text):
        candidate = m.group()
        separators = set(re.sub(r"\d", "", candidate))
        if len(separators) > 1:
            continue
        digits = re.sub(r"\D", "", candidate)
        if _CARD_PREFIX.match(digits) and luhn.is_valid(digits):
            yield "card", m.start(), m.end()


# --- IBAN -------------------------------------------------------------------

_IBAN_CANDIDATE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")


def find_ibans(text: str) -> Iterator[Span]:
    """Country code, mod-97 check digits, and the country's BBAN structure.

    The regex may run into a following upper-case word, so groups are dropped
    from the end until the rest validates.
    """
    for m in _IBAN_CANDIDATE.finditer(text):
        candidate = m.group()
        while len(candidate.replace(" ", "")) >= 15:
            if std_iban.is_valid(candidate):
                yield "iban", m.start(), m.start() + len(candidate)
                break
            candidate = candidate[: max(candidate.rfind(" "), len(candidate) - 4)].rstrip()


# --- national identifiers -------------------------------------------------------

_KEYWORD_WINDOW = 40
_NATIONAL_IDS: tuple[tuple[str, re.Pattern[str], object, re.Pattern[str] | None], ...] = (
    # kind, candidate pattern, stdnum validator module, keyword that licenses a bare (unformatted) form
    ("us_ssn", re.compile(r"(?<![\w-])\d{3}([- ])\d{2}\1\d{4}(?![\w-])"), ssn, None),
    ("us_ssn", re.compile(r"(?<![\w-])\d{9}(?![\w-])"), ssn,
     re.compile(r"(?i)\b(?:ssn|social security|soc\.? sec)")),
    ("es_dni", re.compile(r"\b\d{8}[ -]?[A-Z]\b"), dni, None),
    ("es_nie", re.compile(r"\b[XYZ][ -]?\d{7}[ -]?[A-Z]\b"), nie, None),
    ("in_aadhaar", re.compile(r"(?<![\w-])[2-9]\d{3}([ -])\d{4}\1\d{4}(?![\w-])"), aadhaar, None),
    ("in_aadhaar", re.compile(r"(?<![\w-])[2-9]\d{11}(?![\w-])"), aadhaar,
     re.compile(r"(?i)\b(?:aadhaa?r|uidai|\buid)")),
    ("it_codice_fiscale", re.compile(
        r"\b[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]\b"),
     codicefiscale, None),
    ("fr_nir", re.compile(
        r"(?<![\w-])[12] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?![\w-])"), nir, None),
)


def find_national_ids(text: str) -> Iterator[Span]:
    """US SSN, Spanish DNI/NIE, Indian Aadhaar, Italian codice fiscale, French NIR.

    Formats with check digits stand alone; an SSN (no checksum) or an Aadhaar
    number (one Verhoeff digit) written as a bare digit run counts only after a
    word that names it, since bare 9- and 12-digit numbers are everywhere.
    """
    for kind, pattern, validator, keyword in _NATIONAL_IDS:
        for m in pattern.finditer(text):
            if keyword is not None and not keyword.search(text, max(0, m.start() - _KEYWORD_WINDOW), m.start()):
                continue
            if validator.is_valid(m.group()):  # type: ignore[attr-defined]
                yield kind, m.start(), m.end()


# --- IP addresses ---------------------------------------------------------------

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_VERSION_BEFORE = re.compile(r"(?i)\b(?:version|ver\.?|release|build|v)\s*$")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")


def find_ip_addresses(text: str) -> Iterator[Span]:
    """Dotted quads and IPv6 text forms that `ipaddress` accepts.

    `1.2.3` and `10.0` are not four octets; a dotted quad after "version" or
    "build" is a version string.
    """
    if "." in text:
        for m in _IPV4.finditer(text):
            if _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()):
                continue
            try:
                ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            yield "ip_address", m.start(), m.end()
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            candidate = m.group()
            groups = [g for g in re.split(r"[:.]", candidate) if g]
            if not any(c.isdigit() for c in candidate) or (len(groups) < 2 and candidate != "::1"):
                continue
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            yield "ip_address", m.start(), m.end()
