"""Wallet recovery phrases: twelve or more words in a row from one BIP-39 wordlist.

A recovery phrase is the wallet itself: whoever reads it can spend from it, so it
is a secret like a private key. The wordlists (2,048 words each, from the
`mnemonic` package: English, Spanish, French, Italian, Portuguese, Czech,
Russian, Turkish, Japanese, Korean) hold no articles or other short words prose is
made of, so twelve of them in a row, between nothing but spaces, commas and the
numbers people write before each word ("1. abandon 2. ability"), is no sentence.
The checksum is not asked for: a phrase with one word mistyped is still the wallet,
and after words that announce one ("my seed phrase is", "frase semilla") twelve to
twenty-four short lower-case words count when three in four are on a list.
The Chinese lists are left out: their words are single characters, and any
Chinese sentence is a run of them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import cache

from mnemonic import Mnemonic

from router.linear_regex import compile_linear, group_spans

Span = tuple[str, int, int]
MIN_WORDS = 12  # the shortest phrase wallets write (BIP-39: 12, 15, 18, 21 or 24 words)
_LANGUAGES = ("english", "spanish", "french", "italian", "portuguese", "czech", "russian", "turkish", "japanese",
              "korean")
_WORD = re.compile(r"[^\W\d_]+")
# What may stand between two words of a phrase: spaces and line breaks, commas, the numbering.
_SEPARATORS = b",;:.)([]#'\"-0123456789 \t\n\r\x0b\x0c"
_TO_SPACE = bytes.maketrans(_SEPARATORS, b" " * len(_SEPARATORS))
_GAP = re.compile(r"[\s,;:.)(\[\]#'\"0-9-]{1,8}")
# Words that announce a phrase, on the lower-cased text, in one linear pass (RE2).
_CUE = compile_linear(
    r"(?:^|[^\pL])((?:seed|mnemonic|recovery|backup|secret|wallet)(?:[ -]?(?:phrase|words?|seed))?|(?:12|24)[ -]words?"
    r"|frase[ -](?:semilla|de[ -]recupera\pL*|secreta|de[ -]respaldo|di[ -]recupero|mnemonica)"
    r"|phrase[ -](?:de[ -]r[ée]cup[ée]ration|secr[èe]te)|wiederherstellungs\pL*|herstelzin\pL*)")
_CUE_GAP = 30  # characters from the cue to the first word: "seed is:", "phrase (keep it safe!):"
_MAX_WORDS = 24
_CUED_SHARE = 0.75
_DISTINCT_SHARE = 2 / 3


def _fold(word: str) -> str:
    """Lower case without accents: the text view drops a Latin letter's accents, and people type them or not."""
    word = word.lower()
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c))


@cache
def _wordlists() -> dict[str, int]:
    """Every word of every list, as written and folded, to the bit mask of the lists that hold it."""
    masks: dict[str, int] = {}
    for bit, language in enumerate(_LANGUAGES):
        for word in Mnemonic(language).wordlist:
            for key in {word, _fold(word)}:
                masks[key] = masks.get(key, 0) | 1 << bit
    return masks


@cache
def _encoded() -> frozenset[bytes]:
    return frozenset(word.encode() for word in _wordlists())


def _lowered(text: str) -> str:
    """Lower case with every character's offset kept (a few characters lower-case to two)."""
    lowered = text.lower()
    return lowered if len(lowered) == len(text) else "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _may_hold_run(data: bytes) -> bool:
    """Whether MIN_WORDS listed words stand in a row at all (what stands between them not looked at):
    C-speed passes over the lower-cased UTF-8 (about 20 us a KB), so most texts are done here."""
    listed = bytes(map(_encoded().__contains__, data.translate(_TO_SPACE).split()))
    return listed.find(b"\x01" * MIN_WORDS) >= 0


def find_seed_phrases(text: str) -> Iterator[Span]:
    """Each run of MIN_WORDS or more words of one wordlist, joined by separators only."""
    lists = _wordlists()
    lowered = _lowered(text)
    data = lowered.replace("\u3000", " ").encode()  # Japanese phrases are written with ideographic spaces
    start = end = count = mask = 0
    for m in _WORD.finditer(text) if _may_hold_run(data) else ():
        found = lists.get(_fold(m.group()), 0)
        if found & mask and count and _GAP.fullmatch(text, end, m.start()):
            mask &= found
            count += 1
        else:
            if count >= MIN_WORDS and _varied(text[start:end]):
                yield "seed_phrase", start, end
            start, count, mask = m.start(), 1 if found else 0, found
        end = m.end()
    if count >= MIN_WORDS and _varied(text[start:end]):
        yield "seed_phrase", start, end
    scanned = 0
    for (_, cue_end), in group_spans(_CUE, lowered, (1,)) if _CUE.search(data) else ():
        if cue_end >= scanned:
            span, scanned = _cued_phrase(text, cue_end, lists)
            if span is not None:
                yield span


def _varied(run: str) -> bool:
    """A phrase is drawn at random from 2,048 words: two in three of its words differ ("word word word ..."
    is a test string, not a wallet)."""
    words = [w.lower() for w in _WORD.findall(run)]
    return len(set(words)) >= _DISTINCT_SHARE * len(words)


def _cued_phrase(text: str, at: int, lists: dict[str, int]) -> tuple[Span | None, int]:
    """The run of short lower-case words soon after a cue ("seed is: ..."), when it has a phrase's length
    and three in four of its words are on one list; and where the words looked at end (a cue before
    that was looked at with this one: "seed seed seed ..." stays linear)."""
    scanned = at
    for first in _WORD.finditer(text, at, min(len(text), at + _CUE_GAP)):
        words: list[re.Match[str]] = []
        for m in _WORD.finditer(text, first.start()):
            if len(words) == _MAX_WORDS or not (m.group().islower() and 3 <= len(m.group()) <= 8) or (
                    words and not _GAP.fullmatch(text, words[-1].end(), m.start())):
                break
            words.append(m)
        scanned = max(scanned, words[-1].end() if words else first.end())
        if len(words) < MIN_WORDS:
            continue
        masks = [lists.get(_fold(m.group()), 0) for m in words]
        if max(sum(mask >> bit & 1 for mask in masks) for bit in range(len(_LANGUAGES))) >= _CUED_SHARE * len(words) \
                and _varied(text[words[0].start():words[-1].end()]):
            return ("seed_phrase", words[0].start(), words[-1].end()), scanned
    return None, scanned
