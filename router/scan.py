"""Scanning helpers shared by the detectors.

Python's regex engine skips ahead in C only when a pattern starts with a plain
character class or a literal; a pattern that starts with a look-behind (or a
group, or `\\b`) is tried at every position and runs several times slower.
So every detector pattern starts with a plain class, and the boundary check it
would have started with is done here, on the few candidates it proposes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator


# Scripts written without spaces between words (Thai, kana, CJK ideographs, Hangul): a number or a
# name sits right against the words around it ("电话13878778932", "出生日期：1990年3月7日"), so
# their characters end a word for the detectors as a space does.
UNSPACED = "\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_UNSPACED = re.compile(f"[{UNSPACED}]")


def unspaced(char: str) -> bool:
    """Whether `char` is a letter of a script written without spaces."""
    return _UNSPACED.match(char) is not None


def continues_word(char: str) -> bool:
    """Whether `char` continues a word: a letter, a digit or "_", but not one of an unspaced script."""
    return (char.isalnum() or char == "_") and not unspaced(char)


def free_before(text: str, index: int, also: str = "") -> bool:
    """True when the character before `index` does not continue a word (nor is one of `also`)."""
    if index == 0:
        return True
    before = text[index - 1]
    return not (continues_word(before) or before in also)


_WORD = re.compile(r"\w+")


def matches(pattern: re.Pattern[str], text: str, also: str = "") -> Iterator[re.Match[str]]:
    """`pattern.finditer`, keeping matches that pass `free_before`. After a rejected
    match the scan resumes past its first word, not its end, so a rejected match
    cannot swallow a good one that follows it ("...:7334 (212) 555-1234")."""
    pos = 0
    while (m := pattern.search(text, pos)) is not None:
        if free_before(text, m.start(), also):
            yield m
            pos = max(m.end(), m.start() + 1)
        else:
            word = _WORD.match(text, m.start())
            pos = word.end() if word else m.start() + 1
