"""A name written beside a person's identifiers is that person's: a record's row or a form's line
("Orville Nakashima, SSN 609-44-2187", "taxpayer Friederike Ostermann, Steuer-ID ...", "IBAN ...,
intestato a Lucio Castellani", "BSN 174839200 is invalid for Sander Veldkamp", a CSV row
"BX-77310,Ngozi Ferraro,2024-06-11"). Two or three capitalised words right before or after an
identifier, a phone, an e-mail address or a date of birth, with at most a few label words between
(no sentence end, no digit); not an organisation's name ("Deutsche Bank, IBAN ...").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from router.linear_regex import compile_linear, group_spans
from router.names import FULL_NAME, names_someone

Span = tuple[int, int]

# the words between a name and its record: ", CPF ", " (", ", National Insurance number ", " is invalid for "
_LABEL_WORDS = r"(?:[\pL'’/#°.-]+[ \t]+){0,5}?"
_NAME_BEFORE = compile_linear(rf"(?:^|[^\pL'’-])({FULL_NAME})[ \t]*[,;:(–-]?[ \t]*{_LABEL_WORDS}$")
_NAME_AFTER = compile_linear(rf"^[ \t]*[,;:)–-]?[ \t]*(?:[\pL'’/#°.-]+[ \t]+){{0,4}}?({FULL_NAME})(?:[^\pL'’-]|$)")
_WINDOW = 72
_TWO_CAPITALS = re.compile(r"[^\W\d_][^\W\d_]*[ \t]+(?:\w+[ \t]+)?[A-ZÀ-Þ]")  # a cheap look before RE2's
# an organisation's or a place's words: no one's name
_NOT_A_PERSON = re.compile(
    r"\b(?:Bank|Banco|Banque|Sparkasse|Administration|Office|Services?|Department|University|Universit[äéà]t?|"
    r"Hospital|Clinic|Insurance|Ltd|Limited|GmbH|Inc|Corp|Company|Group|Team|Support|Cloud|Street|Road|Avenue|Tax|"
    r"Revenue|Agency|Ministry|Council|Court|Police|Airlines?|Bureau|Cent(?:er|re)|School|College|Holdings|Partners|"
    r"Capital|Studio|Card|Account|Express|Pay|Number|Code|Date|Name|Address|Email|Phone|Mobile|Social|Security|"
    r"National|Health|Republic|Kingdom|States|Union|Party|Crescent|Lane|Drive|"
    # places ("Cape Town +27 21 ...", "São Paulo")
    r"Town|City|York|Paulo|Angeles|Francisco|Kong|Aires|Janeiro|Lumpur|Dhabi|Domingo|Petersburg|Zealand|Africa|"
    r"African|American|British|German|French|Coast|Beach|Springs|Valley|Islands?|Bay|Heights|Club|Hotel|Airport|"
    r"Station|Tower|Mall|Plaza|"
    # capitalised words of German and the other languages that are no names ("Können Sie", "Sie den Betrag")
    r"Sie|Ihr|Ihre|Ihnen|Können|Könnten|Bitte|Danke|Ich|Wir|Mein|Meine|Der|Die|Das|Ein|Eine|Einen|Steuer|Betrag|"
    r"Konto|Vous|Nous|Usted|Por|Para|Hola|Bonjour|Hallo|Herr|Frau|Dear|Hi|Hello)\b")


def names_beside(text: str, records: Iterable[Span]) -> Iterator[Span]:
    """Each name written right before or after one of `records` (spans of identifiers in `text`)."""
    for start, end in records:
        before = text[max(0, start - _WINDOW):start]
        if (cut := max(before.rfind("\n"), before.rfind(". "))) >= 0:
            before = before[cut + 1:]
        for ((a, b),) in group_spans(_NAME_BEFORE, before, (1,))[-1:] if _TWO_CAPITALS.search(before) else ():
            yield from _someone(text, start - len(before) + a, start - len(before) + b)
        after = text[end:end + _WINDOW].split("\n", 1)[0].split(". ", 1)[0]
        for ((a, b),) in group_spans(_NAME_AFTER, after, (1,))[:1] if _TWO_CAPITALS.search(after) else ():
            yield from _someone(text, end + a, end + b)


def _someone(text: str, start: int, end: int) -> Iterator[Span]:
    name = text[start:end]
    if names_someone(name) and not _NOT_A_PERSON.search(name):
        yield start, end
