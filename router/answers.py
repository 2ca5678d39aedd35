"""Is a free-text answer right? Whole-word matching after normalisation.

A labelled prompt lists the answers it accepts (and, optionally, answers it
rejects: for "which is larger, 37 or 73?" the other number). Both sides are
normalised the same way (case, accents, punctuation, number words to digits:
"Forty-seven" and "47" are one word) and an answer is right when the first
candidate that occurs in it, as whole words, is an accepted one. Used to label
traffic for `tandem calibrate` and the routing benchmark; pure Python.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORDS = _UNITS.keys() | _TENS.keys() | _SCALES.keys()

# Keeps letters, digits and a decimal point or thousands comma inside a number.
_WORD = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")


def words(text: str) -> list[str]:
    """`text` as normalised words: lower case, accents dropped, number words and
    "1,000" written as plain digits, everything else a separator."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    raw = [_number_token(w) for w in _WORD.findall(folded)]
    return _join_number_words(raw)


def _number_token(word: str) -> str:
    if word[0].isdigit():
        plain = word.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+", word) else word
        if re.fullmatch(r"\d+\.0+", plain):
            plain = plain.split(".")[0]
        return (plain.lstrip("0") or "0") if plain.isdigit() else plain
    return word


def _join_number_words(raw: list[str]) -> list[str]:
    """Replace each run of number words ("one hundred and five") by its digits."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        if raw[i] not in _NUMBER_WORDS:
            out.append(raw[i])
            i += 1
            continue
        total = current = 0
        j = i
        while j < len(raw):
            w = raw[j]
            if w == "and" and j + 1 < len(raw) and raw[j + 1] in _NUMBER_WORDS and j > i:
                j += 1
                continue
            if w in _UNITS:
                current += _UNITS[w]
            elif w in _TENS:
                current += _TENS[w]
            elif w == "hundred":
                current = max(current, 1) * 100
            elif w in _SCALES:
                total += max(current, 1) * _SCALES[w]
                current = 0
            else:
                break
            j += 1
        out.append(str(total + current))
        i = j
    return out


def _find(haystack: list[str], needle: list[str]) -> int:
    """Index of the first whole-word occurrence of `needle` in `haystack`, or -1."""
    n = len(needle)
    if n == 0:
        return -1
    for i in range(len(haystack) - n + 1):
        if haystack[i:i + n] == needle:
            return i
    return -1


def is_correct(answer: str, accepted: Sequence[str], rejected: Sequence[str] = ()) -> bool:
    """Whether the first accepted-or-rejected candidate found in `answer` is an accepted one."""
    if not accepted:
        raise ValueError("a labelled prompt needs at least one accepted answer")
    said = words(answer)
    best: tuple[int, int] | None = None  # (position, -length), accepted?
    verdict = False
    for ok, candidates in ((True, accepted), (False, rejected)):
        for candidate in candidates:
            at = _find(said, words(candidate))
            if at < 0:
                continue
            key = (at, -len(words(candidate)))
            if best is None or key < best:
                best, verdict = key, ok
    return verdict


def agrees(answer: str, reference: str) -> bool:
    """Whether two answers say the same: equal after normalisation, or the shorter one occurs in
    the longer as whole words ("Santiago" and "The capital of Chile is Santiago.")."""
    a, b = words(answer), words(reference)
    if not a or not b:
        return False
    short, long = sorted((a, b), key=len)
    return _find(long, short) >= 0
