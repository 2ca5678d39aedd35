"""Detectors for personal data with a structure: e-mail, payment card, IBAN,
IP addresses (phone numbers are in `router.phones`, national identifiers in
`router.national_ids`).

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

from stdnum import iban as std_iban
from stdnum import luhn

from router.linear_regex import compile_linear, found_in
from router.national_ids import find_national_ids
from router.scan import continues_word, free_before, matches

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
        while start > 0 and at - start <= 64 and (
                continues_word(text[start - 1]) or text[start - 1] in _LOCAL_PUNCTUATION):
            start -= 1
        while start < at and not text[start].isalnum():
            start += 1
        in_url = text[start - 1:start] == ":" and "://" in text[max(0, start - 200):start]  # scheme://user:pass@host
        if domain and 0 < at - start <= 64 and domain.group(1).lower() not in _FILE_EXTENSIONS and not in_url:
            yield "email", start, domain.end()
        at = text.find("@", at + 1)


# --- payment cards ------------------------------------------------------------

# 13+ characters; a comma may stand beside them (a CSV's field: "Okoro,4492183066715427,09/26"), as no
# thousands separator stands beside 13 digits
_DIGIT_GROUPS = re.compile(r"[0-9](?=[0-9 -]{12})[0-9]*(?:[ -][0-9]+)*(?![\w]|[.-]\d)")
_DIGITS = re.compile(r"[0-9]+")
_NO_DIGITS = str.maketrans("", "", "0123456789")
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
    """13-19 digits, grouped as cards are printed, with an issuer's prefix and length and a Luhn check digit.

    A run of digit groups may hold a card beside other numbers ("qty 2 4111 1111
    1111 1111"), so every stretch of whole groups is tried, longest first.
    """
    for m in matches(_DIGIT_GROUPS, text, ".-"):
        if len(m.group()) < 13:
            continue
        groups = [(g.start(), g.end()) for g in _DIGITS.finditer(text, m.start(), m.end())]
        i = 0
        while i < len(groups):
            # A card is one group of 13-19 digits, or starts with a group of four and has at most five groups.
            last = i + 1 if groups[i][1] - groups[i][0] != 4 else min(len(groups), i + 5)
            for j in range(last, i, -1):
                lengths = [b - a for a, b in groups[i:j]]
                if 13 <= sum(lengths) <= 19 and _is_card(text[groups[i][0]:groups[j - 1][1]], lengths):
                    yield "card", groups[i][0], groups[j - 1][1]
                    i = j
                    break
            else:
                i += 1


def _is_card(candidate: str, groups: list[int]) -> bool:
    if len(groups) > 1 and not (set(groups[:-1]) == {4} or groups in ([4, 6, 5], [4, 6, 4])):
        return False  # cards print in fours (Amex and Diners 4-6-5, 4-6-4); other groupings are other numbers
    if len(set(candidate.translate(_NO_DIGITS))) > 1:
        return False  # one kind of separator: "4111 1111-1111 1111" is not how cards are written
    digits = "".join(_DIGITS.findall(candidate))
    issued = any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _CARD_NETWORKS)
    return issued and luhn.checksum(digits) == 0


# --- IBAN -------------------------------------------------------------------

_IBAN_CANDIDATE = re.compile(r"[A-Z][A-Z]\d\d(?:[ -]?[A-Z0-9]{4}){2,7}(?:[ -]?[A-Z0-9]{1,3})?\b")  # on the digit view: upper case


_IBAN_START = compile_linear(r"[A-Z]{2}[0-9]{2}(?:[ -]?[A-Z0-9]{4}){2}")


def find_ibans(text: str) -> Iterator[Span]:
    """Country code, mod-97 check digits, and the country's BBAN structure.

    The regex may run into a following upper-case word, so groups are dropped
    from the end until the rest validates.
    """
    if not found_in(_IBAN_START, text):
        return  # one linear pass; Python's engine would try the pattern at every letter
    for m in matches(_IBAN_CANDIDATE, text):
        candidate = m.group()
        while len(candidate.replace(" ", "").replace("-", "")) >= 15:
            if _mod97(candidate) and std_iban.is_valid(candidate):  # the arithmetic first: stdnum's is 30 us
                yield "iban", m.start(), m.start() + len(candidate)
                break
            candidate = candidate[: max(candidate.rfind(" "), candidate.rfind("-"), len(candidate) - 4)].rstrip(" -")


def _mod97(candidate: str) -> bool:
    """The IBAN check digits (ISO 13616): country and check moved to the end, letters as 10-35, mod 97 is 1."""
    compact = candidate.replace(" ", "").replace("-", "")
    moved = compact[4:] + compact[:4]
    if not moved.isalnum() or not moved.isascii():
        return False
    return int("".join(c if c.isdigit() else str(ord(c) - 55) for c in moved)) % 97 == 1


# --- IP addresses ---------------------------------------------------------------

_IPV4 = re.compile(r"[0-9]\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w]|\.\d)")
_IP_PARTS = re.compile(r"[:.]")
_IP_SHAPE = compile_linear(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|:[0-9A-Fa-f.]*:")  # RE2's DFA: keep it small
# A dotted quad after one of these is a version or a section number, not an address.
_VERSION_BEFORE = re.compile(
    r"(?i)\b(?:version|versione|versi[oó]n|vers[aã]o|ver\.?|release|build|v|firmware|fw|bootloader|kernel|driver|"
    r"patch|update|sdk|api|app|chapter|chap\.?|section|sect\.?|§|clause|article|art\.?|paragraph|para\.?|"
    r"step|rule|figure|fig\.?|table|appendix|item|kapitel|abschnitt|chapitre|cap[ií]tulo|capitolo|"
    r"(?:introduced|fixed|added|removed|deprecated|released|changed|shipped)(?:\s+in)?)"
    r"(?:\s+(?:is|was|no\.?|number))?\s*[:=#]?\s*$")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")


def _is_network(address: str, after: str) -> bool:
    """Whether `address` followed by `after` is a network's prefix ("10.0.0.0/8"): its host bits all zero."""
    prefix = re.match(r"/([0-9]{1,2})(?![0-9])", after)
    try:
        return prefix is not None and bool(ipaddress.IPv4Network(f"{address}/{prefix.group(1)}", strict=True))
    except ValueError:
        return False


def find_ip_addresses(text: str) -> Iterator[Span]:
    """Dotted quads and IPv6 text forms that `ipaddress` accepts.

    `1.2.3` and `10.0` are not four octets; a dotted quad after "version" or
    "build" is a version string. IPv6 candidates are grown from each colon.
    """
    if not found_in(_IP_SHAPE, text):
        return  # one linear pass: most texts hold neither a dotted quad nor two colons in hex
    if "." in text:
        for m in matches(_IPV4, text, "."):
            if _VERSION_BEFORE.search(text[max(0, m.start() - 24):m.start()]):
                continue
            if _is_network(m.group(), text[m.end():m.end() + 4]):
                continue  # "192.168.0.0/24": a network, not a host ("192.168.0.1/24" is one)
            try:
                address = ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            if not _nobodys(address):
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
    groups = [g for g in _IP_PARTS.split(candidate) if g]
    if candidate.count(":") < 2 or not any(c.isdigit() for c in candidate) or len(groups) < 2:
        return False
    try:
        return not _nobodys(ipaddress.IPv6Address(candidate))
    except ValueError:
        return False


def _nobodys(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """An address that names no host of anyone's: loopback (127.0.0.1, ::1), "any" (0.0.0.0), multicast,
    broadcast, or a netmask (255.255.255.0). Redacting them only garbles a question about networking."""
    if address.is_loopback or address.is_unspecified or address.is_multicast:
        return True
    bits = int(address)
    return address.version == 4 and bits >> 31 == 1 and (~bits & 0xFFFFFFFF) & ((~bits & 0xFFFFFFFF) + 1) == 0
