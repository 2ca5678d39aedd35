"""Street addresses: a house number and a street, in the orders people write them.

- English: number, up to four capitalised words, a street type ("221B Baker Street",
  "1600 Pennsylvania Ave NW", "4 Privet Drive");
- German and Dutch: a compound street name, then the number ("Hauptstraße 5",
  "Keizersgracht 123");
- French: number, street type, name ("12 rue de la Paix", "8 bis, avenue Foch");
- Spanish, Italian, Portuguese: street type, name, number ("Calle Mayor 10", "Via Roma, 5",
  "Rua Augusta nº 24");
- a post office box ("P.O. Box 1234", "Postfach 10 20 30" up to its first group);
- in lower case, an English address after a word announcing it ("ship to 42 elm street").

A street type or a number alone says nothing ("Route 66", "the street", "Abbey Road"): both must
be there, next to each other. Runs on the text view (router.normalize), in RE2 (linear time).
"""

from __future__ import annotations

from collections.abc import Iterator

from router.linear_regex import compile_linear, group_spans, match_spans
from router.scan import free_before

Span = tuple[str, int, int]

_NUMBER = r"[0-9]{1,5}[A-Za-z]?(?:[-/][0-9]{1,4}[A-Za-z]?)?"
_NAME = r"(?:[A-Z][A-Za-z'’.-]*|[0-9]{1,3}(?:st|nd|rd|th))"  # "O'Connell", "St.", "5th"
_EN_TYPES = (r"Street|St|Avenue|Ave|Av|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|Terrace|Ter|"
             r"Crescent|Cres|Close|Parkway|Pkwy|Highway|Hwy|Square|Sq|Circle|Cir|Trail|Trl|Row|Mews|Gardens|Grove|"
             r"Walk|Hill|Parade|Esplanade|Alley|Plaza|Loop")
_DIRECTION = r"(?: (?:NW|NE|SW|SE|N|S|E|W)\b\.?)?"
_EN = (rf"{_NUMBER} (?:{_NAME} ){{1,3}}(?i:{_EN_TYPES})\b\.?{_DIRECTION}"
       rf"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl)\.? ?#?[0-9A-Za-z-]{{1,6}})?")
_DE_NL = (r"[A-ZÄÖÜ][a-zäöüß]+(?:-[A-ZÄÖÜ]?[a-zäöüß]+)*(?:straße|strasse|str\.|gasse|allee|platz|damm|ufer|"
          r"chaussee|straat|laan|gracht|plein|kade|steeg|singel) [0-9]{1,4}[a-z]?")
_FR = (r"[0-9]{1,4}(?: ?(?:bis|ter))?,? (?i:rue|avenue|av\.|boulevard|bd|place|allée|chemin|impasse|quai|route|"
       r"cours|passage|square)\b (?:(?:de|du|des|de la|de l'|la|le|les|d'|l')\s?)?[A-ZÉÈÀ][\w'’-]*")
_ES_IT_PT = (r"(?:[Cc]alle|C/|[Aa]venida|[Aa]vda\.|[Pp]laza|[Pp]aseo|[Cc]arrer|Via|[Vv]iale|[Pp]iazza|[Cc]orso|"
             r"[Rr]ua|[Tt]ravessa|[Ll]argo)\b (?:(?:de|del|de la|di|della|dei|da|do|dos|das)\s)?"
             r"[A-ZÁÉÍÓÚ][\w'’-]*(?: [A-ZÁÉÍÓÚ][\w'’-]*){0,2},? (?:n[º°o]\.? ?)?[0-9]{1,4}")
_PO_BOX = r"(?:P\.? ?O\.? ?Box|Post(?:al)? Office Box|Postfach|Apartado(?: de correos)?|Casella postale) [0-9]{1,7}"
_ADDRESS = compile_linear(f"(?:{_EN}|{_DE_NL}|{_FR}|{_ES_IT_PT}|{_PO_BOX})")
# Written all in lower case ("i live at 42 elm street"), an English address needs a word that
# announces it: "3 kids on the street" has a number, words and a street type too.
_CUE = (r"address|addr|live at|living at|located at|ship(?:ping)? to|deliver(?:y)? to|send (?:it |this |them )?to|"
        r"moved to|reside at|staying at|visit (?:me|us) at|mail (?:it |this )?to|meet (?:me|us) at")
_CUED = compile_linear(rf"(?i:\b(?:{_CUE})[ :,-]{{1,3}}({_NUMBER} (?:[a-z0-9'’.-]+ ){{1,3}}(?:{_EN_TYPES})\b\.?"
                       rf"{_DIRECTION}))")


def find_addresses(text: str) -> Iterator[Span]:
    """Each street address in `text` (the text view), as ("street_address", start, end)."""
    last_end = -1
    for start, end in sorted(match_spans(_ADDRESS, text) + _cued(text)):
        if not free_before(text, start):
            continue  # "1221B Baker Street" is found from its first digit, not its second
        if end <= last_end:
            continue  # inside the address just found
        last_end = end
        yield "street_address", start, end


def _cued(text: str) -> list[tuple[int, int]]:
    """Spans of the addresses a cue announces, in any case."""
    return [address for (address,) in group_spans(_CUED, text, (1,))]
