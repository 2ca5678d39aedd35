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

# Found from each "@" outward, so text without one costs a single scan.
_DOMAIN = re.compile(r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+([^\W\d_]{2,24})(?![\w@-])")  # IDNs too
_LOCAL_PUNCTUATION = "._%+'_-"  # with letters and digits, what a local part may hold
_FILE_EXTENSIONS = frozenset("png jpg jpeg gif svg webp bmp ico pdf js css".split())


def find_emails(text: str) -> Iterator[Span]:
    """Addresses with a dotted domain; `icon@2x.png` is a file name, not a mailbox."""
    at = text.find("@")
    while at != -1:
        domain = _DOMAIN.match(text, at + 1)
        start = at
        while start > 0 and at - start <= 64 and (text[start - 1].isalnum() or text[start - 1] in _LOCAL_PUNCTUATION):
            start -= 1
        while start < at and not text[start].isalnum():
            start += 1
        if domain and 0 < at - start <= 64 and domain.group(1).lower() not in _FILE_EXTENSIONS:
            yield "email", start, domain.end()
        at = text.find("@", at + 1)


def free_before(text: str, index: int, also: str = "") -> bool:
    """True when the character before `index` does not continue a word (nor is one of `also`):
    the boundary check each pattern would otherwise start with, done here because
    a pattern that starts with a look-behind makes Python's regex engine slow."""
    if index == 0:
        return True
    before = text[index - 1]
    return not (before.isalnum() or before == "_" or before in also)


# --- phone ------------------------------------------------------------------

# Digits in groups joined by one separator, optionally led by +CC or (area).
# Every pattern here starts with a plain character class: that is what lets
# Python's regex engine skip ahead in C instead of trying each position.
_PHONE_CANDIDATE = re.compile(
    r"[+(0-9](?:(?<=\+) ?(?:\(\d{1,5}\) ?)?\d+|(?<=\()\d{1,5}\) ?\d+|(?<=\d)\d*)"
    r"(?:[ .\-/] ?(?:\(\d{1,5}\) ?)?\d+|\(\d{1,5}\) ?\d+){0,7}(?![\w@]|[.,:/-]\d)"
)
_DATE_OR_TIME = re.compile(
    r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|\d{1,2}:\d{2}|\d{1,3}(?:[.,]\d{3})+"
)
# A number right after one of these words is an identifier of a thing, not a phone.
_NOT_A_PHONE_BEFORE = re.compile(
    r"(?i)\b(?:order|invoice|tracking|reference|ref|confirmation|serial|ticket|booking|case|sku|part|model|"
    r"po|transaction|receipt|isbn|issn|ean|upc|gtin|imei|imsi|iccid|patent|meeting|id|batch|lot|account|acct|"
    r"routing|iban|card)\s*(?:no\.?|number|num|id|#)?\s*[:#.]?\s*$"
)
_NOT_BEFORE_PHONE = ".,/#$€£¥+@:=-"
_NATIONAL_REGIONS = {"0": ("GB", "DE", "FR", "IN"), "": ("US", "IN")}


def find_phones(text: str) -> Iterator[Span]:
    """Numbers valid in the US, GB, DE, FR or IN plans, or any plan when written +CC.

    A regex pre-filter finds digit runs of phone length, so phonenumbers (tens
    of microseconds per parse) only sees real candidates.
    """
    for m in _PHONE_CANDIDATE.finditer(text):
        candidate = m.group()
        if not free_before(text, m.start(), "+" if candidate[0] == "+" else _NOT_BEFORE_PHONE):
            continue
        digits = sum(c.isdigit() for c in candidate)
        if not 7 <= digits <= 15 or _DATE_OR_TIME.fullmatch(candidate) or candidate.count(".") == 3:
            continue
        if candidate.isdigit() and not 10 <= digits <= 11:  # unseparated: US/IN/FR 10 digits, GB/IN 11 with trunk 0
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

_CARD_CANDIDATE = re.compile(r"[0-9](?:[ -]?\d){12,18}(?![\w]|[.,-]\d)")
# Issuer prefixes (IIN ranges) and the lengths each network issues: a 15-digit
# number starting with 4 is an IMEI, not a Visa card.
_CARD_NETWORKS = (
    (re.compile(r"4"), {13, 16, 19}),  # Visa
    (re.compile(r"5[1-5]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)"), {16}),  # Mastercard
    (re.compile(r"3[47]"), {15}),  # American Express
    (re.compile(r"6(?:011|5|4[4-9]|2)"), {16, 17, 18, 19}),  # Discover, UnionPay
    (re.compile(r"35(?:2[89]|[3-8])"), {16, 17, 18, 19}),  # JCB
    (re.compile(r"3(?:0[0-5]|09|[689])"), {14, 15, 16, 17, 18, 19}),  # Diners Club
    (re.compile(r"5[06-9]|6"), {13, 14, 15, 16, 17, 18, 19}),  # Maestro
)


def find_cards(text: str) -> Iterator[Span]:
    """13-19 digits, evenly separated, with an issuer's prefix and length and a Luhn check digit."""
    for m in _CARD_CANDIDATE.finditer(text):
        candidate = m.group()
        separators = set(re.sub(r"\d", "", candidate))
        if len(separators) > 1 or not free_before(text, m.start(), ".,-"):
            continue
        digits = re.sub(r"\D", "", candidate)
        issued = any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _CARD_NETWORKS)
        if issued and luhn.is_valid(digits):
            yield "card", m.start(), m.end()


# --- IBAN -------------------------------------------------------------------

_IBAN_CANDIDATE = re.compile(r"[A-Z][A-Z]\d\d(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")


def find_ibans(text: str) -> Iterator[Span]:
    """Country code, mod-97 check digits, and the country's BBAN structure.

    The regex may run into a following upper-case word, so groups are dropped
    from the end until the rest validates.
    """
    for m in _IBAN_CANDIDATE.finditer(text):
        candidate = m.group()
        if not free_before(text, m.start()):
            continue
        while len(candidate.replace(" ", "")) >= 15:
            if std_iban.is_valid(candidate):
                yield "iban", m.start(), m.start() + len(candidate)
                break
            candidate = candidate[: max(candidate.rfind(" "), len(candidate) - 4)].rstrip()


# --- national identifiers -------------------------------------------------------

# Shapes that cannot match at the same position, so one alternation scans for all.
# Grouped forms must not continue into a further digit group (tracking numbers do).
_DIGIT_IDS = re.compile(
    r"[0-9](?:"
    r"(?P<fr_nir>(?<=[12]) ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2})(?![\w-]|[ -]\d)"
    r"|(?P<us_ssn>\d{2}(?P<ssn_sep>[- ])\d{2}(?P=ssn_sep)\d{4})(?![\w-]|[ -]\d)"
    r"|(?P<in_aadhaar>(?<=[2-9])\d{3}(?P<uid_sep>[ -])\d{4}(?P=uid_sep)\d{4})(?![\w-]|[ -]\d)"
    r"|(?P<es_dni>\d(?:\.\d{3}\.\d{3}|\d{6})[ -]?[A-Z])\b"
    r"|(?P<bare_us_ssn>\d{8})(?![\w-])"
    r"|(?P<bare_in_aadhaar>(?<=[2-9])\d{11})(?![\w-])"
    r")"
)
_LETTER_IDS = re.compile(
    r"[A-Z](?:"
    r"(?P<es_nie>(?<=[XYZ])[ -]?\d{7}[ -]?[A-Z])\b"
    r"|(?P<it_codice_fiscale>[A-Z]{5}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z])\b"
    r")"
)
_ID_VALIDATORS = {
    "us_ssn": ssn, "in_aadhaar": aadhaar, "fr_nir": nir, "es_dni": dni, "es_nie": nie, "it_codice_fiscale": codicefiscale,
}
# A bare 9-digit SSN (no checksum) or 12-digit Aadhaar (one Verhoeff digit) counts
# only within this many characters after a word that names it.
_KEYWORD_WINDOW = 40
_NAMING_WORD = {
    "us_ssn": re.compile(r"(?i)\b(?:ssn|social security|soc\.? sec)"),
    "in_aadhaar": re.compile(r"(?i)\b(?:aadhaa?r|uidai|uid)\b"),
}


def find_national_ids(text: str) -> Iterator[Span]:
    """US SSN, Spanish DNI/NIE, Indian Aadhaar, Italian codice fiscale, French NIR.

    Formats with check digits stand alone; an SSN or an Aadhaar number written
    as a bare digit run counts only after a word that names it, since bare 9-
    and 12-digit numbers are everywhere.
    """
    for pattern in (_DIGIT_IDS, _LETTER_IDS):
        for m in pattern.finditer(text):
            label = m.lastgroup or ""
            kind = label.removeprefix("bare_")
            start, end = m.span()
            if not free_before(text, start, "-") or text[max(0, start - 2):start].strip(" -").isdigit():
                continue
            if kind != label:
                window = text[max(0, start - _KEYWORD_WINDOW):start]
                if not _NAMING_WORD[kind].search(window):
                    continue
            if _ID_VALIDATORS[kind].is_valid(re.sub(r"[ .-]", "", m.group())):  # type: ignore[attr-defined]
                yield kind, start, end


# --- IP addresses ---------------------------------------------------------------

_IPV4 = re.compile(r"[0-9]\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w]|\.\d)")
_VERSION_BEFORE = re.compile(r"(?i)\b(?:version|ver\.?|release|build|v)\s*$")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")


def find_ip_addresses(text: str) -> Iterator[Span]:
    """Dotted quads and IPv6 text forms that `ipaddress` accepts.

    `1.2.3` and `10.0` are not four octets; a dotted quad after "version" or
    "build" is a version string. IPv6 candidates are grown from each colon.
    """
    if "." in text:
        for m in _IPV4.finditer(text):
            if not free_before(text, m.start(), ".") or _VERSION_BEFORE.search(text[max(0, m.start() - 12):m.start()]):
                continue
            try:
                ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            yield "ip_address", m.start(), m.end()
    colon = text.find(":")
    while colon != -1:
        start, end = colon, colon
        while start > 0 and text[start - 1] in _IPV6_CHARS:
            start -= 1
        while end < len(text) and text[end] in _IPV6_CHARS:
            end += 1
        candidate = text[start:end].rstrip(".")
        if _is_ipv6(candidate) and free_before(text, start) and (end == len(text) or not _word_char(text[end])):
            yield "ip_address", start, start + len(candidate)
        colon = text.find(":", end)


def _word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def _is_ipv6(candidate: str) -> bool:
    groups = [g for g in re.split(r"[:.]", candidate) if g]
    if candidate.count(":") < 2 or not any(c.isdigit() for c in candidate) or (len(groups) < 2 and candidate != "::1"):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True
