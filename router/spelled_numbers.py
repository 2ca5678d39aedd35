"""Digits spelled as words, as a value is read out or written to dodge a filter ("nine one seven, four
four two, eight zero six one", "0412 three eight nine 604", "null eins sieben eins"), in the seven
languages of the detectors: the edits that make the text view (router.normalize) read them as digits.
"""

from __future__ import annotations

import re

from router.linear_regex import compile_linear, first_group_spans

Edit = tuple[int, int, str]  # start, end (in the text edited), replacement

_NUMBER_WORDS = {
    **dict.fromkeys(("zero", "oh", "null", "zéro", "cero", "nul"), "0"),
    **dict.fromkeys(("one", "eins", "un", "uno", "um", "een"), "1"),
    **dict.fromkeys(("two", "zwei", "zwo", "deux", "dos", "due", "dois", "twee"), "2"),
    **dict.fromkeys(("three", "drei", "trois", "tres", "tre", "três", "drie"), "3"),
    **dict.fromkeys(("four", "vier", "quatre", "cuatro", "quattro", "quatro"), "4"),
    **dict.fromkeys(("five", "fünf", "cinq", "cinco", "cinque", "vijf"), "5"),
    **dict.fromkeys(("six", "sechs", "seis", "sei", "zes"), "6"),
    **dict.fromkeys(("seven", "sieben", "sept", "siete", "sette", "sete", "zeven"), "7"),
    **dict.fromkeys(("eight", "acht", "huit", "ocho", "otto", "oito"), "8"),
    **dict.fromkeys(("nine", "neun", "neuf", "nueve", "nove", "negen"), "9"),
}
_REPEAT = {"double": 2, "triple": 3, "doppel": 2, "dreifach": 3, "doble": 2, "doppio": 2, "dubbel": 2}
_NUMBER_TOKEN = re.compile(r"[^\W\d_]+|[0-9]+")
_NUMBER_WORD = "|".join(sorted([*_NUMBER_WORDS, *_REPEAT], key=len, reverse=True))
_SEP = r"(?:[ \t]*[,-][ \t]*|[ \t]+)"
# tokens, words or digit groups, a space, a dash or a comma between each two, a word among them (digits alone,
# "4111 1111 1111 1111", are no run: most texts' numbers are passed over in RE2)
_NUMBER_RUN = compile_linear(rf"(?i)(?:^|[^\pL\pN_])((?:(?:{_NUMBER_WORD}|[0-9]+){_SEP})*(?:{_NUMBER_WORD})"
                             rf"(?:{_SEP}(?:{_NUMBER_WORD}|[0-9]+))*)(?:[^\pL\pN_]|$)")
_MIN_WORDS, _MIN_DIGITS = 3, 7


def spelled_number_edits(text: str) -> list[Edit]:
    """Each run of number words read as its digits: within a run, words next to each other (a space or a
    dash between) become one group ("nine one seven" -> "917") and a comma between groups a space; a run
    needs three words or more and seven digits in all (with any digit groups in it), so "one or two" and
    "three, two, one, go" stay words."""
    edits: list[Edit] = []
    for run_start, run_end in first_group_spans(_NUMBER_RUN, text, (1,)):
        run, repeat, start = [], 1, None
        for m in _NUMBER_TOKEN.finditer(text, run_start, run_end):
            word = m.group().lower()
            if word in _REPEAT:  # "double five": 55, the span from "double"
                repeat, start = _REPEAT[word], m.start()
                continue
            run.append((m.start() if start is None else start, m.end(),
                        (word if word.isdigit() else _NUMBER_WORDS[word]) * repeat))
            repeat, start = 1, None
        words = [token for token in run if not text[token[0]].isdigit()]
        if len(words) < _MIN_WORDS or sum(len(digits) for *_, digits in run) < _MIN_DIGITS:
            continue
        group: list[tuple[int, int, str]] = []
        for token in [*run, None]:
            if token and not text[token[0]].isdigit() and (not group or "," not in text[group[-1][1]:token[0]]):
                group.append(token)
                continue
            if group:
                edits.append((group[0][0], group[-1][1], "".join(d for *_, d in group)))
            group = [token] if token and not text[token[0]].isdigit() else []
        # a comma between the groups is a pause in reading them out: "917, 442, 8061" -> "917 442 8061"
        edits.extend((a[1], b[0], " ") for a, b in zip(run, run[1:]) if "," in text[a[1]:b[0]])
    return sorted(edits)
