"""Detectors for secrets: private keys, access keys and tokens, JWTs, and
high-entropy strings right after words like "password" or "token".

Vendor formats with a fixed prefix are matched exactly; a JWT must carry a
header that decodes to JSON with an "alg"; a free-form secret must look
random (Shannon entropy, mixed character classes) and sit within a few words
after a keyword, so prose around the word "token" is not tagged.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Iterator

from router.scan import free_before

Span = tuple[str, int, int]

_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----.*?(?:-----END \1-----|(?=\n[ \t]*\n)|\Z)", re.S
)
# Each pattern starts with a literal or a plain character class, so Python's regex
# engine skips ahead in C; boundaries before a match are checked in Python.
_VENDOR_KEYS = (
    ("aws_access_key", re.compile(r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}\b")),
    ("github_token", re.compile(r"gh(?:[pousr]_[A-Za-z0-9]{36}|ub_pat_[A-Za-z0-9_]{82})\b")),
    ("slack_token", re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}")),
    ("stripe_key", re.compile(r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}\b")),
    ("google_api_key", re.compile(r"AIza[0-9A-Za-z_-]{35}(?![\w-])")),
)
_JWT = re.compile(r"eyJ(?P<header>[A-Za-z0-9_-]{4,})\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*(?![\w-])")

# Keywords, matched on the lower-cased text at each occurrence of a stem; underscores
# count as separators so `aws_secret_access_key=...` matches.
_KEYWORD_STEMS = (
    "pass", "pwd", "secret", "token", "api", "access", "private", "client", "credential", "auth", "bearer",
)
_KEYWORD = re.compile(
    r"(?:password|passwd|pwd|passphrase|passcode|secret|token|api[_ -]?key|apikey|access[_ -]?key|"
    r"private[_ -]?key|client[_ -]?secret|credentials?|auth|bearer)(?![a-z])"
)
_KEYWORD_ANY_CASE = re.compile(_KEYWORD.pattern, re.IGNORECASE)
_WORDS_AFTER_KEYWORD = 5
_HORIZON = 400  # characters after a keyword that are looked at; keeps the scan linear
_VALUE = re.compile(r"[^\s\"'`<>(){}\[\],;]+")
_NOT_SECRET = re.compile(r"(?i)^(?:[a-z][a-z0-9+.-]*://|www\.)|^[^@\s]+@[^@\s]+\.[a-z]{2,}$|^[\d:./-]+$")
_SEPARATORS = "-_."
_ASSIGNMENT = re.compile(r"^[A-Za-z_][\w.-]*[:=]+(?=.)")  # `NAME=value` in one word: the value is the secret
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n\s*\n")


def find_secrets(text: str) -> Iterator[Span]:
    """Every secret-looking span, by kind."""
    if "-----BEGIN" in text:
        for m in _PRIVATE_KEY.finditer(text):
            yield "private_key", m.start(), m.end()
    for kind, pattern in _VENDOR_KEYS:
        for m in pattern.finditer(text):
            if free_before(text, m.start()):
                yield kind, m.start(), m.end()
    if "eyJ" in text:
        for m in _JWT.finditer(text):
            if free_before(text, m.start(), "-") and _is_jwt_header("eyJ" + m.group("header")):
                yield "jwt", m.start(), m.end()
    yield from _keyword_secrets(text)


def _is_jwt_header(segment: str) -> bool:
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and "alg" in header


def _keywords(text: str) -> Iterator[re.Match[str]]:
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters lower-case to two; offsets would shift
        yield from _KEYWORD_ANY_CASE.finditer(text)
        return
    starts = set()
    for stem in _KEYWORD_STEMS:
        at = lowered.find(stem)
        while at != -1:
            if not (at and lowered[at - 1].isalpha()):
                starts.add(at)
            at = lowered.find(stem, at + 1)
    for at in sorted(starts):
        keyword = _KEYWORD.match(lowered, at)
        if keyword:
            yield keyword


def _keyword_secrets(text: str) -> Iterator[Span]:
    for keyword in _keywords(text):
        horizon = min(len(text), keyword.end() + _HORIZON)
        stop = _SENTENCE_END.search(text, keyword.end(), horizon)
        end = stop.start() if stop else horizon
        for index, value in enumerate(_VALUE.finditer(text, keyword.end(), end)):
            if index >= _WORDS_AFTER_KEYWORD:
                break
            token = _ASSIGNMENT.sub("", value.group()).strip(":=.!?")
            if looks_random(token):
                start = value.start() + value.group().index(token)
                yield "credential", start, start + len(token)
                break


def shannon_entropy(token: str) -> float:
    """Bits per character of the token's own character distribution."""
    counts = Counter(token)
    return -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())


def looks_random(token: str) -> bool:
    """A password or key rather than a word, a model name, a URL or a date.

    Either three character classes (lower, upper, digit, symbol; `-_.` do not
    count as symbols) with near-maximal entropy for its length, or a long
    hex/base64-like run whose digits or mixed case no identifier has.
    """
    if len(token) < 8 or _NOT_SECRET.search(token):
        return False
    has_lower = any(c.islower() for c in token)
    has_upper = any(c.isupper() for c in token)
    digits = sum(c.isdigit() for c in token)
    symbols = any(not c.isalnum() and c not in _SEPARATORS for c in token)
    classes = has_lower + has_upper + (digits > 0) + symbols
    entropy = shannon_entropy(token)
    if classes >= 3 and entropy >= 0.85 * math.log2(min(len(token), 64)):
        return True
    long_random = len(token) >= 16 and entropy >= 3.5
    return long_random and (digits / len(token) >= 0.25 or (has_lower and has_upper and digits > 0))
