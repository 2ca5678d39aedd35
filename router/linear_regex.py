"""Custom detector regexes compiled for RE2, whose matching time is linear in the
text for every pattern, so no policy file can make `decide()` hang.

Python's `re` backtracks: `(a+)+$` takes seconds on 24 characters and doubles
with every two more. RE2 (google-re2) has no backtracking, and so no
look-around or backreferences; a pattern that needs them is refused when the
policy loads, with the reason.
"""

from __future__ import annotations

import re2


class RegexError(ValueError):
    """A pattern RE2 cannot run; the message says why in a user's words."""


_UNSUPPORTED = (
    ("(?=", "look-ahead"), ("(?!", "negative look-ahead"), ("(?<=", "look-behind"), ("(?<!", "negative look-behind"),
    ("(?P=", "a backreference"), ("(?>", "an atomic group"),
)


def compile_linear(pattern: str, *, ignore_case: bool = False, longest: bool = False) -> re2._Regexp:
    """`pattern` compiled for RE2 (Python `re` syntax without look-around and backreferences);
    `longest`: of the matches starting at one place, the longest, not the first alternative's."""
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignore_case
    options.longest_match = longest
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        feature = next((name for token, name in _UNSUPPORTED if token in pattern), None)
        if feature is None and any(f"\\{d}" in pattern for d in "123456789"):
            feature = "a backreference"
        why = f"{feature} is not supported" if feature else detail
        raise RegexError(f"{why}: custom regexes run on RE2, which matches in linear time and so has no "
                         f"look-around or backreferences ({detail})") from None


def found_in(regex: re2._Regexp, text: str) -> bool:
    """Whether `regex` matches anywhere in `text` (ASCII text as bytes: no offsets to map)."""
    return regex.search(text.encode("ascii") if text.isascii() else text) is not None


class RegexSet:
    """Several compiled patterns asked in one linear pass which of them match anywhere in a text: a detector
    with many cues searches further only with those whose cue occurs (most texts hold few)."""

    def __init__(self, regexes: list[re2._Regexp]) -> None:
        self._regexes = regexes
        self._set = re2.Set.SearchSet(re2.Options())
        for regex in regexes:  # (a pattern compiled to ignore case keeps doing so in the set)
            self._set.Add(regex.pattern if regex.options.case_sensitive else f"(?i:{regex.pattern})")
        self._set.Compile()

    def present(self, text: str) -> set[re2._Regexp]:
        """The patterns that match somewhere in `text`."""
        return {self._regexes[i] for i in self._set.Match(text.encode("utf-8")) or ()}


def match_spans(regex: re2._Regexp, text: str) -> list[tuple[int, int]]:
    """Where `regex` matches in `text`, one span for each place a match starts (overlapping ones
    too: a match that turns out wrong cannot hide one that starts inside it)."""
    return [spans[0] for spans in group_spans(regex, text, (0,))]


def group_spans(regex: re2._Regexp, text: str, groups: tuple[int, ...]) -> list[tuple[tuple[int, int], ...]]:
    """As `match_spans`, the spans (in characters) of each match's `groups`, which must all take part."""
    data = text.encode("utf-8")  # the str path would encode the whole text again on every search
    found, pos = [], 0
    while (m := regex.search(data, pos)) is not None:
        found.append(tuple(m.span(g) for g in groups))
        pos = m.start() + 1
    return _in_characters(data, text, found)


def first_group_spans(regex: re2._Regexp, text: str, groups: tuple[int, ...]) -> list[tuple[int, int]]:
    """The span (in characters) of the first of `groups` that takes part in each match, matches not
    overlapping: for a pattern of alternatives that each capture their value in a group of their own."""
    data = text.encode("utf-8")
    found = [(next(m.span(g) for g in groups if m.start(g) >= 0),) for m in regex.finditer(data)]
    return [spans[0] for spans in _in_characters(data, text, found)]


def _in_characters(data: bytes, text: str, found: list[tuple[tuple[int, int], ...]]) -> list[tuple[tuple[int, int], ...]]:
    """Spans in the UTF-8 bytes `data` of `text` as spans in its characters."""
    if found and len(data) != len(text):
        chars = char_offsets(data, [offset for spans in found for span in spans for offset in span])
        found = [tuple((chars[a], chars[b]) for a, b in spans) for spans in found]
    return found


def char_offsets(data: bytes, offsets: list[int]) -> dict[int, int]:
    """UTF-8 byte offsets (each at a character's start) as character offsets, in one pass."""
    out, byte_at, char_at = {}, 0, 0
    for offset in sorted(set(offsets)):
        char_at += len(data[byte_at:offset].decode("utf-8", "ignore"))
        byte_at = offset
        out[offset] = char_at
    return out
