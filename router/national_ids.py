"""National identifiers of 33 countries, validated by python-stdnum where it has a
validator (check digits, embedded dates) and by format rules where it has none
(the UK National Insurance number, India's PAN).

Runs on the digit view (router.normalize). A candidate is a run of digit groups (with the letters
some IDs carry); every stretch of its groups that has an ID's length is tried against those IDs.

How much evidence an ID needs depends on how rare its shape is:

- *alone*: a distinctive shape with a strong check (the French NIR's key 97,
  the Italian codice fiscale, a Chinese resident ID, a Swiss AHV number that
  starts 756, a Brazilian CPF written `123.456.789-09`, an SSN written
  `123-45-6789`) counts anywhere;
- *keyword*: a bare run of 8-13 digits with one check digit (a Dutch BSN, a
  German Steuer-ID, a PESEL, a Canadian SIN, ...) passes a random number's
  check one time in ten, so it counts only after a word that names it, in any
  of the spellings people write (`BSN:`, `Steuer-ID`, `aadhaar_number=`,
  `N° de sécurité sociale`), within a few words;
- *own word*: after the ID's own word (not a generic "ID number") a value of
  its shape counts even when its check fails, and IDs with no public check
  (Vietnam's CCCD, Saudi and Kenyan IDs) count only so.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from stdnum.au import tfn
from stdnum.be import nn
from stdnum.br import cpf
from stdnum.ca import sin
from stdnum.ch import ssn as ch_ssn
from stdnum.cn import ric
from stdnum.de import idnr
from stdnum.dk import cpr
from stdnum.es import dni, nie
from stdnum.fi import hetu
from stdnum.fr import nir
from stdnum.ie import pps
from stdnum.in_ import aadhaar, pan
from stdnum.it import codicefiscale
from stdnum.id import nik
from stdnum.il import idnr as il_idnr
from stdnum.jp import in_ as jp_in
from stdnum.kr import rrn
from stdnum.mx import curp
from stdnum.my import nric as my_nric
from stdnum.nl import bsn
from stdnum.no import fodselsnummer
from stdnum.pl import pesel
from stdnum.pt import nif
from stdnum.ro import cnp
from stdnum.se import personnummer
from stdnum.tr import tckimlik
from stdnum.us import ssn
from stdnum.za import idnr as za_idnr

from router.id_words import GENERIC, KEYWORDS, names_letter_id
from router.linear_regex import char_offsets, compile_linear, match_spans
from router.scan import free_before, matches

Span = tuple[str, int, int]


@dataclass(frozen=True)
class IdRule:
    """One identifier: its digit count, the groupings that count without a keyword, its check."""

    kind: str
    digits: int
    is_valid: Callable[[str], bool]
    alone: tuple[tuple[int, ...], ...] = ()  # digit-group lengths that stand alone ("123-45-6789": (3, 2, 4))
    letters: str = ""  # a regex for the letters that end the value (a DNI's control letter)


def _stdnum(module) -> Callable[[str], bool]:
    return lambda value: bool(module.is_valid(value))

# IDs whose check is not published: their numbers count only after the ID's own word (_match_rule).
_NO_PUBLIC_CHECK: Callable[[str], bool] = lambda value: False  # noqa: E731


def _nino(value: str) -> bool:
    """UK National Insurance number (HMRC's rules; stdnum has no validator)."""
    return bool(re.fullmatch(r"(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\d{6}[A-D]", value))


# By digit count. Digit IDs first; the letter-led ones are in _LETTER_IDS below.
_DIGIT_RULES: tuple[IdRule, ...] = (
    IdRule("us_ssn", 9, _stdnum(ssn), alone=((3, 2, 4),)),
    IdRule("nl_bsn", 9, _stdnum(bsn), alone=((4, 2, 3),)),
    IdRule("ca_sin", 9, _stdnum(sin)),
    IdRule("pt_nif", 9, _stdnum(nif)),
    IdRule("au_tfn", 9, _stdnum(tfn)),
    IdRule("au_tfn", 8, _stdnum(tfn)),
    IdRule("in_aadhaar", 12, _stdnum(aadhaar), alone=((4, 4, 4),)),
    IdRule("de_idnr", 11, _stdnum(idnr), alone=((2, 3, 3, 3),)),
    IdRule("pl_pesel", 11, _stdnum(pesel)),
    IdRule("no_fodselsnummer", 11, _stdnum(fodselsnummer), alone=((6, 5),)),
    IdRule("br_cpf", 11, _stdnum(cpf), alone=((3, 3, 3, 2),)),
    IdRule("be_nn", 11, _stdnum(nn), alone=((2, 2, 2, 3, 2),)),
    IdRule("se_personnummer", 10, _stdnum(personnummer), alone=((6, 4),)),
    IdRule("se_personnummer", 12, _stdnum(personnummer), alone=((8, 4),)),
    IdRule("dk_cpr", 10, _stdnum(cpr)),
    IdRule("za_idnr", 13, _stdnum(za_idnr)),
    IdRule("ch_ahv", 13, lambda v: v.startswith("756") and ch_ssn.is_valid(v), alone=((3, 4, 4, 2), (13,))),
    IdRule("fr_nir", 15, _stdnum(nir), alone=((1, 2, 2, 2, 3, 3, 2), (13, 2), (15,))),
    IdRule("cn_ric", 18, _stdnum(ric), alone=((18,), (6, 8, 4))),
    IdRule("cn_ric", 17, _stdnum(ric), alone=((17,), (6, 8, 3)), letters="X"),
    IdRule("es_dni", 8, _stdnum(dni), alone=((8,), (2, 3, 3)), letters="[A-Z]"),
    IdRule("ie_pps", 7, _stdnum(pps), letters="[A-W][A-IW]?"),
    IdRule("fi_hetu", 9, _stdnum(hetu), alone=((6, 3),), letters="[0-9A-Y]"),
    IdRule("fi_hetu", 10, _stdnum(hetu), alone=((6, 4),)),
    IdRule("tr_tckimlik", 11, _stdnum(tckimlik)),
    IdRule("kr_rrn", 13, _stdnum(rrn), alone=((6, 7),)),
    IdRule("ro_cnp", 13, _stdnum(cnp)),
    IdRule("il_idnr", 9, _stdnum(il_idnr)),
    IdRule("id_nik", 16, _stdnum(nik)),
    IdRule("jp_mynumber", 12, _stdnum(jp_in)),
    IdRule("my_nric", 12, _stdnum(my_nric), alone=((6, 2, 4),)),
    IdRule("vn_cccd", 12, _NO_PUBLIC_CHECK),
    IdRule("sa_id", 10, _NO_PUBLIC_CHECK),
    IdRule("ke_id", 8, _NO_PUBLIC_CHECK),
    IdRule("ke_id", 7, _NO_PUBLIC_CHECK),
)
_BY_LENGTH: dict[int, list[IdRule]] = {}
for _rule in _DIGIT_RULES:
    _BY_LENGTH.setdefault(_rule.digits, []).append(_rule)
_MAX_DIGITS = max(_BY_LENGTH)
_SHORTEST = min(_BY_LENGTH)
_PLAIN_LENGTHS = frozenset(rule.digits for rule in _DIGIT_RULES if not rule.letters)
_ALONE_SHAPES = frozenset(shape for rule in _DIGIT_RULES for shape in rule.alone)
# ... of a run that ends in no letter: a DNI's "12345678" needs its control letter.
_ALONE_UNLETTERED = frozenset(shape for rule in _DIGIT_RULES for shape in rule.alone
                              if not rule.letters or rule.kind == "fi_hetu")
_MOST_GROUPS = max(map(len, _ALONE_SHAPES))
# A run of digit groups joined by one space, dash or a Finnish century sign, with
# the letters an ID may end in. Starts with a digit so the scan skips ahead in C, and
# looks ahead for the shortest ID's length (7), so most numbers are passed over there.
_DIGIT_RUN = re.compile(r"[0-9](?=[0-9A-Z +-]{6})[0-9]*(?:(?: ?[-+] ?| |(?<=[0-9]{6})[A-FU-Y])[0-9]+)*(?:[ -]?[A-Z]{1,2}(?![\w]))?")
_GROUP = re.compile(r"[0-9]+")
_LETTERS_AT_END = re.compile(r"[A-Z]+$")
_FI_CENTURY = re.compile(r"(?<=^[0-9]{6})[-+A-FU-Y]")
_LETTER_IDS = re.compile(
    r"[A-Z](?:"
    r"(?P<es_nie>(?<=[XYZ])[ -]?\d{7}[ -]?[A-Z])"
    r"|(?P<it_codice_fiscale>[A-Z]{5}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z])"
    r"|(?P<mx_curp>[A-Z]{3}\d{6}[HMX][A-Z]{5}[0-9A-Z]\d)"
    r"|(?P<in_pan>[A-Z]{2}[ABCFGHLJPT][A-Z]\d{4}[A-Z])"
    r"|(?P<gb_nino>[A-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D])"
    r")(?![\w])"
)
# The same shapes in RE2, without look-arounds: one linear pass finds where any can be (most
# texts: nowhere), and only the digit groups there are looked at.
_LETTER_ID_HINT = compile_linear(
    r"[XYZ][ -]?[0-9]{7}[ -]?[A-Z]"
    r"|[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]"
    r"|[A-Z]{4}[0-9]{6}[HMX][A-Z]{5}[0-9A-Z][0-9]"
    r"|[A-Z]{3}[ABCFGHLJPT][A-Z][0-9]{4}[A-Z]"
    r"|[A-Z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]"
)
_LETTERS_BEFORE_DIGITS = 6  # a codice fiscale's six letters at most
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LETTER_VALIDATORS: dict[str, Callable[[str], bool]] = {
    "es_nie": _stdnum(nie), "it_codice_fiscale": _stdnum(codicefiscale), "mx_curp": _stdnum(curp),
    "in_pan": _stdnum(pan), "gb_nino": _nino,
}

_NAMING = {kind: re.compile(rf"(?:{words}|{GENERIC})") for kind, words in KEYWORDS.items()}  # on one keyword
_OWN = {kind: re.compile(words) for kind, words in KEYWORDS.items()}
# Every spelling of every ID's keyword, found in one linear pass (RE2) over the lower-cased text,
# after no Latin, Greek or Cyrillic letter (in code too: `my_ssn=`, `aadhaar_number`; in scripts
# without case and spaces, anywhere: `身份证号`; these ranges, not \pL, keep RE2's automaton small
# and the scan three times faster); the longest spelling
# that matches, so `sécu` does not hide `sécurité sociale`.
_ANY_KEYWORD = compile_linear(rf"(?:^|[^a-z\x{{c0}}-\x{{24f}}\x{{370}}-\x{{4ff}}])((?:{'|'.join(KEYWORDS.values())}|{GENERIC}))", longest=True)
_KEYWORD_WINDOW = 48  # characters before a value: "BSN van de klant is" fits


class IdWords:
    """Where the words naming an identifier stand in one text (any country's, any spelling).

    Found on first use in one linear pass (RE2) over the lower-cased text and
    shared by the ID detector (a bare run of digits counts after such a word)
    and the phone detector (a number after such a word is no phone).
    """

    __slots__ = ("_text", "_starts", "_ends")

    def __init__(self, text: str) -> None:
        self._text = text
        self._starts: list[int] | None = None
        self._ends: list[int] = []

    def _load(self) -> list[int]:
        if self._starts is None:
            found = _keyword_spans(self._text)
            self._starts, self._ends = [a for a, _ in found], [b for _, b in found]
        return self._starts

    def kinds_before(self, start: int, *, own: bool = False) -> frozenset[str]:
        """The ID kinds named by the words in the few characters before `start` (`_KEYWORD_WINDOW`);
        `own`: only by their own words ("PESEL"), not by a word naming any ID ("ID number")."""
        starts = self._load()
        at = bisect_left(starts, start - _KEYWORD_WINDOW)
        kinds: frozenset[str] = frozenset()
        while at < len(starts) and self._ends[at] <= start:
            kinds |= _kinds_named(self._text[starts[at]:self._ends[at]].lower(), own)
            at += 1
        return kinds

    def labels(self, start: int) -> bool:
        """A word naming an ID stands just before `start`, with no digit between (`Case ID: 415 ...`)."""
        starts = self._load()
        at = bisect_left(starts, start - _KEYWORD_WINDOW)
        while at < len(starts) and self._ends[at] <= start:
            gap = self._text[self._ends[at]:start]
            if len(gap) <= 24 and not any(c.isdigit() for c in gap):
                return True
            at += 1
        return False


def _keyword_spans(text: str) -> list[tuple[int, int]]:
    """Spans of whole words naming an ID: `sin` in "since" or `tin` in "waiting" is none."""
    lowered = text.lower()
    if len(lowered) != len(text):  # a character lower-cased to two ("İ"): positions would shift
        lowered = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    data = lowered.encode("utf-8")  # matched as bytes: the str path re-encodes the text on every search
    hits, pos = [], 0
    while (m := _ANY_KEYWORD.search(data, pos)) is not None:
        hits.append(m.span(1))
        pos = m.start(1) + 1  # a match that is no whole word may hide a keyword that starts inside it
    if len(data) != len(lowered):
        chars = char_offsets(data, [offset for span in hits for offset in span])
        hits = [(chars[a], chars[b]) for a, b in hits]
    found: list[tuple[int, int]] = []
    for start, end in hits:
        if _whole_word(lowered, start, end) and not (found and start < found[-1][1]):
            found.append((start, end))
    return found


def find_national_ids(
    text: str, id_words: IdWords | None = None, claimed: Sequence[tuple[int, int]] = (),
) -> Iterator[Span]:
    """Every national identifier in `text` (a digit view: upper case, separators as spaces);
    `id_words` is the text's IdWords when the caller already has them; a run of digits inside
    a `claimed` span (a card or IBAN already found) is that number, not an ID."""
    words = id_words or IdWords(text)
    claimed = sorted(claimed)
    for m in matches(_DIGIT_RUN, text, "-+"):
        if m.end() - m.start() < _SHORTEST or text[m.end():m.end() + 1] in _UPPER:
            continue  # most runs are a year, a price, a count; one glued to letters is a token's (a hash's)
        at = bisect_right(claimed, (m.start(), len(text))) - 1
        if at >= 0 and claimed[at][1] >= m.end():
            continue
        named = words.kinds_before(m.start())
        shapes = _ALONE_SHAPES if m.group()[-1].isalpha() else _ALONE_UNLETTERED
        if named or _holds_alone_shape(tuple(map(len, _GROUP.findall(m.group()))), shapes):
            own = words.kinds_before(m.start(), own=True) if named else frozenset()
            yield from _digit_ids(text, m, named, own)
    yield from _letter_ids(text)


def _letter_ids(text: str) -> Iterator[Span]:
    """IDs that start with letters, tried once per digit group, at the word of 1-6 letters
    just before it: on upper-cased text a scan from every letter was most of this detector's time."""
    done = 0
    for digit in (g for a, b in match_spans(_LETTER_ID_HINT, text) for g in _GROUP.finditer(text, a, b)):
        start = digit.start()
        spaced = start > 0 and text[start - 1] in " -"  # "X-1234567-L", "AB 12 34 56 C": a word of 1-2 letters
        if spaced:
            start -= 1
        letters_end = start
        longest = 2 if spaced else _LETTERS_BEFORE_DIGITS
        while start > done and start > letters_end - longest - 1 and text[start - 1] in _UPPER:
            start -= 1
        if not 0 < letters_end - start <= longest or not free_before(text, start, "-"):
            continue  # "ORDER 12345": a word before a number is no ID's first letters
        m = _LETTER_IDS.match(text, start)
        if m:
            kind, before = m.lastgroup or "", text[max(0, m.start() - _KEYWORD_WINDOW):m.start()]
            if _LETTER_VALIDATORS[kind](m.group().replace(" ", "").replace("-", "")) or names_letter_id(kind, before):
                yield kind, m.start(), m.end()
                done = m.end()


def _digit_ids(text: str, m: re.Match[str], named: frozenset[str], own: frozenset[str]) -> Iterator[Span]:
    """IDs among the groups of one run, each stretch of whole groups tried, longest first (`named`, `own`:
    _match_rule's)."""
    run = m.group()
    groups = [(g.start(), g.end()) for g in _GROUP.finditer(run)]
    sizes = [b - a for a, b in groups]
    tail = _LETTERS_AT_END.search(run) if run[-1].isalpha() else None
    lengths = _BY_LENGTH if tail else _PLAIN_LENGTHS  # a DNI or PPS number ends in letters

    i = 0
    while i < len(groups):
        total, found = 0, None
        stretch: list[tuple[int, int]] = []
        for j in range(i, len(groups)):
            size = sizes[j]
            total += size
            if total > _MAX_DIGITS or (size == 1 and j > i):
                break  # no ID has a one-digit group but a NIR's first: "1 2 3 4" is a list
            stretch.append(groups[j])
            if total in lengths and (named or tuple(sizes[i:j + 1]) in _ALONE_SHAPES):
                end = groups[j][1]
                letters = tail.group() if tail and j == len(groups) - 1 else ""
                beside = run[stretch[0][0] - 1:stretch[0][0]] + run[end:end + 1] if j < len(groups) - 1 else ""
                hit = _match_rule(run, stretch, letters, end, beside, named, own)
                if hit:
                    found = (j, hit)
        if found:
            j, (kind, start, end) = found
            yield kind, m.start() + start, m.start() + end
            i = j + 1
        else:
            i += 1


def _match_rule(
    run: str, stretch: list[tuple[int, int]], letters: str, end: int, beside: str, named: frozenset[str],
    own: frozenset[str],
) -> Span | None:
    """The first rule the stretch of groups satisfies; `beside` holds the separators next to it in its run,
    `named` the ID kinds named by words before the run (most runs have none: no check runs). After an ID's
    own word (`own`: "my PESEL is ...") a number of its shape is that ID even if its check fails: a typo
    in one's own ID number is still one's own, and some IDs have no public check."""
    lengths = tuple(b - a for a, b in stretch)
    rules = _BY_LENGTH[sum(lengths)]
    if not named and not any(lengths in rule.alone for rule in rules):
        return None  # the common case: an order number, a date, a phone
    start = stretch[0][0]
    inner = {run[a - 1] for a, _ in stretch[1:]}
    digits = "".join(run[a:b] for a, b in stretch)
    for rule in rules:
        # A grouped shape stands alone unless its run goes on in the same grouping (an
        # Aadhaar-shaped "4111 1111 1111" inside a card number).
        standalone = lengths in rule.alone and not (inner & set(beside))
        if not (standalone or rule.kind in named):
            continue
        if rule.kind != "fi_hetu" and len(inner) > 1 and lengths not in rule.alone:
            continue  # one kind of separator, except in a printed shape ("390.533.447-05")
        ends_with = letters if rule.letters and letters and re.fullmatch(rule.letters, letters) else ""
        if rule.kind == "fi_hetu":
            candidate = _hetu_candidate(run[start:])
            if candidate is None:
                continue
            value_end = start + len(candidate)
            candidate = candidate.replace(" ", "")
        elif rule.letters and not ends_with:
            continue
        else:
            candidate = digits + ends_with
            value_end = end if not ends_with else len(run)
        if rule.is_valid(candidate) or rule.kind in own:
            return rule.kind, start, value_end
    return None


def _hetu_candidate(rest: str) -> str | None:
    hit = re.match(r"\d{6}[-+A-FU-Y]\d{3}[0-9A-Y](?![\w])", rest)
    return hit.group() if hit else None


def _whole_word(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    return not (_cased_letter(before) or (_cased_letter(after) and _cased_letter(text[end - 1])))


def _cased_letter(char: str) -> bool:
    """A letter of a script that writes words apart (Latin, Greek, Cyrillic), not a CJK character."""
    return char.isalpha() and char.lower() != char.upper()


def _holds_alone_shape(sizes: tuple[int, ...], shapes: frozenset[tuple[int, ...]]) -> bool:
    """Some stretch of a run's digit groups has one of `shapes`, which stand alone ("123-45-6789"):
    a run with none needs a keyword, and most runs have neither (one lookup per short grouping seen)."""
    if len(sizes) <= _MOST_GROUPS:
        return _short_holds_alone_shape(sizes, shapes)
    return any(sizes[i:j] in shapes
               for i in range(len(sizes)) for j in range(i + 1, min(len(sizes), i + _MOST_GROUPS) + 1))


@lru_cache(maxsize=1024)
def _short_holds_alone_shape(sizes: tuple[int, ...], shapes: frozenset[tuple[int, ...]]) -> bool:
    return any(sizes[i:j] in shapes for i in range(len(sizes)) for j in range(i + 1, len(sizes) + 1))


@lru_cache(maxsize=1024)
def _kinds_named(keyword: str, own: bool = False) -> frozenset[str]:
    """The ID kinds one keyword (lower case) names: `bsn` names a BSN, `national id` any ID (but not `own`)."""
    return frozenset(kind for kind, naming in (_OWN if own else _NAMING).items() if naming.fullmatch(keyword))
