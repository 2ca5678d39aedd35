"""Street addresses: a house number and a street, in the orders people write them, with the
flat or unit before it and the locality after it (city, region, postcode, country).

- English: number, up to four capitalised words, a street type ("221B Baker Street",
  "1600 Pennsylvania Ave NW", "4 Privet Drive");
- German and Dutch: a compound street name, then the number ("Hauptstraße 5",
  "Keizersgracht 123");
- French: number, street type, name ("12 rue de la Paix", "8 bis, avenue Foch");
- Spanish, Italian, Portuguese, Polish: street type, name, number ("Calle Mayor 10",
  "Via Roma, 5", "Rua Augusta nº 24", "ul. Długa 5/7");
- Japanese block numbers ("2-14-3 Nishi-Shinjuku"), Indian house numbers ("h.no 4-1-12");
- a post office box or rural route ("P.O. Box 1234", "Postfach 10 20 30" up to its first
  group, "RR 2 Box 118");
- in lower case, an English or German street that a word announces ("ship to 42 elm street")
  or that a postcode follows ("42 elm st apt 5 boston ma 02118");
- after a word announcing an address, any comma-separated lines that start with a number and
  end in a postcode ("deliver to Flat 302, Sai Residency, 14th Cross, Bengaluru 560038").

A street type or a number alone says nothing ("Route 66", "the street", "Abbey Road"): both must
be there, next to each other. The street found, the span grows over what belongs to the same
address: a flat or unit just before it ("Flat 2, 17 Kingsley Road") and, after it, up to five
lines or comma-separated parts ending in a postcode, with the city or country written after
that ("..., Springfield, IL 62704", "..., 75019 Paris", "\\nOxfordshire\\nOX7 5QT"): a street
without its town still says who lives where, and redacting half an address leaves the other
half in the prompt. Without a postcode the locality is not taken: nothing else tells a town
from the next words of a sentence. Runs on the text view (router.normalize), in RE2 (linear
time); the growing steps match anchored in a bounded window.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from router.linear_regex import found_in, compile_linear, group_spans, match_spans
from router.scan import free_before

Span = tuple[str, int, int]

_NUMBER = r"[0-9]{1,5}[A-Za-z]?(?:[-/][0-9]{1,4}[A-Za-z]?)?"
_NAME = r"(?:[A-Z][A-Za-z'’.-]*|[0-9]{1,3}(?:st|nd|rd|th))"  # "O'Connell", "St.", "5th"
_EN_TYPES = (r"Street|St|Avenue|Ave|Av|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|Terrace|Ter|"
             r"Crescent|Cres|Close|Parkway|Pkwy|Highway|Hwy|Square|Sq|Circle|Cir|Trail|Trl|Row|Mews|Gardens|Grove|"
             r"Walk|Hill|Parade|Esplanade|Alley|Plaza|Loop")
_DIRECTION = r"(?: (?:NW|NE|SW|SE|N|S|E|W)\b\.?)?"
_UNIT_WORDS = r"Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl"
_EN = (rf"{_NUMBER} (?:{_NAME} ){{1,3}}(?i:{_EN_TYPES})\b\.?{_DIRECTION}"
       rf"(?:,? (?:{_UNIT_WORDS})\.? ?#?[0-9A-Za-z-]{{1,6}})?")
# "-ring" after a consonant: "Kaiserring 12", "Ostring 5", not "During 1926", "requiring 36", "Spring 2024"
_DE_NL_TYPES = (r"straße|strasse|str\.|gasse|allee|platz|damm|ufer|chaussee|weg|[b-df-hj-np-tv-zß]ring|markt|pfad|graben|"
                r"straat|laan|gracht|plein|kade|steeg|singel|dijk")
_HOUSE = r"[0-9]{1,4}[a-z]?(?:[-/][0-9]{1,4}[a-z]?)?"
_DE_NL = rf"[A-ZÄÖÜ][a-zäöüß]+(?:-[A-ZÄÖÜ]?[a-zäöüß]+)*(?:{_DE_NL_TYPES}) {_HOUSE}"
_FR = (r"[0-9]{1,4}(?: ?(?:bis|ter))?,? (?i:rue|avenue|av\.|boulevard|bd|place|allée|chemin|impasse|quai|route|"
       r"cours|passage|square)\b (?:(?:de|du|des|de la|de l'|la|le|les|d'|l')\s?)?[A-ZÉÈÀ][\pL\pN_'’-]*")
_ES_IT_PT = (r"(?:(?:[Cc]alle|[Aa]venida|[Pp]laza|[Pp]aseo|[Cc]arrer|Via|[Vv]iale|[Pp]iazza|[Cc]orso|[Rr]ua|"
             r"[Tt]ravessa|[Ll]argo)\b|(?:C/|[Aa]vda\.|Av\.|ul\.|al\.|os\.))"
             r" ?(?:(?:de|del|de la|di|della|dei|da|do|dos|das)\s)?"
             r"[A-ZÁÉÍÓÚŁŚŻŹĆŃ][\pL\pN_'’-]*(?: [A-ZÁÉÍÓÚŁŚŻŹĆŃ][\pL\pN_'’-]*){0,2},? "
             r"(?:n[º°o]\.? ?)?[0-9]{1,4}"
             r"(?:/[0-9]{1,4}[a-z]?)?(?: m\. ?[0-9]{1,4})?")
_JP = r"[0-9]{1,2}-[0-9]{1,2}-[0-9]{1,3} [A-Z][a-z]+(?:-[A-Z]?[a-z]+)*"
_IN = r"(?i:h\. ?no\.?|house no\.?|door no\.?|plot no\.?) ?[0-9]{1,4}(?:[-/][0-9A-Za-z]{1,4}){0,3}"
_PO_BOX = (r"(?:P\.? ?O\.? ?Box|Post(?:al)? Office Box|Postfach|Apartado(?: de correos)?|Casella postale) [0-9]{1,7}"
           r"|(?:RR|R\.R\.|Rural Route) ?[0-9]{1,3},? Box [0-9]{1,5}")
# Written without spaces, from the largest place down (Chinese, Japanese, Korean), or Russian:
# "上海市浦东新区张杨路1288弄5号602室", "〒150-0001 東京都渋谷区神宮前3丁目14-7", "서울특별시 강남구
# 테헤란로 152, 1203호", "г. Москва, ул. Профсоюзная, д. 84/32, кв. 117, 117393".
_CN = (r"(?:\p{Han}{2,3}省)?\p{Han}{2,3}市(?:\p{Han}{1,8}?[区县旗])*\p{Han}{1,12}?(?:路|街|道|巷|弄|胡同|大道)[0-9]+(?:号|弄)"
       r"[0-9A-Za-z\p{Han}-]{0,24}")
_JP_POSTAL = r"〒[0-9]{3}-[0-9]{4}[ \x{3000}]?[^\s、。，,（(]{2,40}(?:[ \x{3000}][^\s、。，,（(]{1,20})?"
_JP_PREFECTURE = r"\p{Han}{1,3}[都道府県]\p{Han}{1,8}?[市区町村郡]\p{Han}{0,10}[0-9]+(?:[-丁目番地号の][0-9]+)+[^\s、。，,（(]{0,20}"
_KR = (r"\p{Hangul}{2,6}(?:특별시|광역시|특별자치시|시|도) \p{Hangul}{1,6}(?:구|군|시) (?:\p{Hangul}{1,6}(?:구|동|읍|면) )?"
       r"\p{Hangul}{1,10}(?:로|길|대로)(?: ?[0-9]+(?:번?길)?)? [0-9]+(?:-[0-9]+)?(?:, ?[0-9]+호)?")
_RU = (r"(?:(?:г\.|город) ?\p{Lu}\p{L}+(?:-\p{L}+)?, )?(?:ул\.|улица|пр\.|просп\.|проспект|пер\.|переулок|б-р|шоссе) ?"
       r"\p{Lu}\p{L}+(?: \p{L}+)?, (?:д\.|дом) ?[0-9]+(?:/[0-9]+)?[а-я]?(?:, (?:корп\.|стр\.) ?[0-9]+)?"
       r"(?:, (?:кв\.|квартира|оф\.) ?[0-9]+)?(?:, [0-9]{6})?")
_ADDRESS = compile_linear(f"(?:{_EN}|{_DE_NL}|{_FR}|{_ES_IT_PT}|{_JP}|{_IN}|{_PO_BOX}|{_CN}|{_JP_POSTAL}|"
                          f"{_JP_PREFECTURE}|{_KR}|{_RU})")
# In lower case a street needs more: a word that announces it ("3 kids on the street" has a
# number, words and a street type too) or a postcode after it (_LOWER, checked by the tail).
_LOWER_EN = (rf"{_NUMBER} (?:[a-z0-9'’.-]+ ){{1,3}}(?:{_EN_TYPES})\b\.?{_DIRECTION}"
             rf"(?:,? (?:{_UNIT_WORDS})\.? ?#?[0-9a-z-]{{1,6}}|,? #[0-9a-z-]{{1,6}})?")
_LOWER = compile_linear(rf"(?i:{_LOWER_EN}|[a-zäöüß]+(?:{_DE_NL_TYPES}) {_HOUSE})")
_CUE = (r"address|addr|adresse|adres|anschrift|wohnhaft|indirizzo|direcci[oó]n|domicilio|endere[cç]o|"
        r"li(?:ve|ves|ving) at|located at|ship(?:ping)? to|deliver(?:y)? to|send (?:it |this |them )?to|"
        r"moved to|reside at|staying at|visit (?:me|us) at|mail (?:it |this )?to|meet (?:me|us) at|"
        r"(?:my|our|his|her|their) (?:place|home|house|flat|apartment)(?: is| at)?|i'?m at")
_AFTER_CUE = rf"\b(?:{_CUE})[ :,-]{{1,3}}"
_CUED = compile_linear(rf"(?i:{_AFTER_CUE}({_LOWER_EN}))")

# The locality after a street: parts separated by commas, semicolons or line breaks (or a
# space), ending in a postcode, then the city or country written after it.
_POSTCODE = (r"(?:[0-9]{5}(?:-[0-9]{3,4})?|[0-9]{4}(?: [A-Z]{2})?|[0-9]{6}|[0-9]{2}-[0-9]{3}|[0-9]{3}-[0-9]{4}|"
             r"[0-9]{4}-[0-9]{3}|(?i:[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}|[A-Z][0-9][A-Z] ?[0-9][A-Z][0-9]|"
             r"[AC-FHKNPRTV-Y][0-9]{2} ?[0-9AC-FHKNPRTV-Y]{4}))\b")
_SEP = r"(?:[ \t]*[,;][ \t,;]*\n?[ \t]*|[ \t]*\n[ \t]*|[ \t]+-[ \t]+|[ \t]+)"
_L = r"[\pL\pN_'’.-]"  # a letter of a place name (RE2's \w is ASCII)
_WORD = (rf"(?:\p{{Lu}}{_L}*|[0-9][\pL\pN/º°.-]*|#[0-9]{_L}*|(?:de|del|la|le|di|da|do|of|am|an|sur|bis)\b|"
         r"(?i:apto|apt|flat|unit|suite|ste|floor|fl|piso|scala|m\.)\b)")
_PART = rf"{_WORD}(?:[ \t]+{_WORD}){{0,3}}"
_TOWN = (r"(?:[ \t,]+\p{Lu}[\pL'’-]*(?:[ \t]+(?:(?:de|del|la|di|am|an der|sur)[ \t]+)?\p{Lu}[\pL'’-]*){0,2})?")
_TAIL_PATTERN = rf"(?:{_SEP}{_PART}){{0,5}}?{_SEP}(?:{_WORD}[ \t]+)?{_POSTCODE}{_TOWN}"
_TAIL = compile_linear(_TAIL_PATTERN)
_TAIL_LOWER = compile_linear(f"(?i:{_TAIL_PATTERN})")
_TOWN_AFTER = compile_linear(_TOWN)
_TAIL_WINDOW = 160
_POSTCODE_HINT = re.compile(r"[0-9]{4}|[0-9]{2}-[0-9]{3}|[A-Za-z][0-9]|[0-9][A-Za-z]")
# a locality does not run past a sentence's end: "the way for the next 10. Today ... in 1938" has no postcode
_FULL_STOP_AFTER = re.compile(r"(?<![.\w])(?!(?i:st|ave?|rd|ln|dr|blvd|ct|pl|ter|cres|pkwy|hwy|sq|cir|trl|str)\.)"
                              r"[^\W\d_]+\.$")  # a whole word's full stop, not an abbreviation's ("St.")
_SENTENCE_END = re.compile(r"(?:[0-9]|[^\W\d_]{5,})[.!?][ \t\n]")
# A flat or unit written before the street ("Flat 2, 17 Kingsley Road", "Unit 5/32 Smith St").
_UNIT_BEFORE = compile_linear(r"(?i:\b(?:flat|apt\.?|apartment|appartement|unit|suite|apto\.?)[ \t]*#?"
                              r"(?:[0-9]{1,4}[a-z]?)?[ \t]*(?:,[ \t]*|\n[ \t]*|/)?)$")
_UNIT_WINDOW = 24
# A cue, then parts that start with a number and end in a postcode ("deliver to Flat 302,
# Sai Residency, 14th Cross, Indiranagar, Bengaluru 560038").
_CUED_PARTS = compile_linear(
    rf"(?i:{_AFTER_CUE}((?:flat|apt|unit|house|h\.? ?no\.?|door no\.?|plot no\.?)?[ .#]*[0-9]{_L}*"
    rf"(?:[ \t]+[\pL\pN'’./#-]+){{0,4}}(?:{_SEP}[\pL\pN'’./#-]+(?:[ \t]+[\pL\pN'’./#-]+){{0,3}}){{0,5}}?{_SEP}"
    rf"(?:{_L}+[ \t]+)?{_POSTCODE}))")


# A place's coordinates to a metre: a latitude and a longitude with five decimals or more (a city's
# centre is quoted with four: "37.7749, -122.4194", none), as a pair ("47.606214, -122.332071",
# "51.50791° N, 0.08763° W") in a text about a place or with its hemispheres, not two fractions ("loss
# 0.912345, 0.887612"), or each after its label ("lat": -26.107566).
_DEGREES = r"-?[0-9]{1,3}\.[0-9]{5,}"
_COORDINATE_PAIR = compile_linear(rf"(?:^|[^\w.-])({_DEGREES})°?[ \t]?([NS]?)[ \t]*[,;/ ][ \t]*({_DEGREES})°?[ \t]?([EW]?)"
                                  r"(?:[^\w.]|\.(?:[^0-9]|$)|$)")
_COORDINATE_LABEL = compile_linear(rf"(?i)\b(lat|latitude|lon|lng|long|longitude)[\"']?[ \t]*[:=]?[ \t]*({_DEGREES})"
                                   r"(?:[^\w.]|\.(?:[^0-9]|$)|$)")
_PLACE_WORDS = compile_linear(r"(?i)\b(?:lat|lon|lng|latitude|longitude|coordinates?|gps|geo|location|located|home|"
                              r"house|place|address|live|lives|flat|apartment|cabin|maps?|pin|zone|position|parcel|"
                              r"delivery|drop-?off|pick-?up|meet|koordinaten|standort|wohnung|haus|coordonn[ée]es|"
                              r"maison|coordenadas|casa|coordinate|posizione|ubicaci[óo]n|woning)")


_FIVE_DECIMALS = re.compile(r"[0-9]\.[0-9]{5}")


def find_coordinates(text: str) -> Iterator[Span]:
    """A latitude and longitude precise enough to find a house, as ("gps_coordinates", start, end)."""
    if "." not in text or not _FIVE_DECIMALS.search(text):
        return
    pairs = []
    about_a_place = found_in(_PLACE_WORDS, text)
    for lat, north, lon, east in group_spans(_COORDINATE_PAIR, text, (1, 2, 3, 4)):
        latitude, longitude = abs(float(text[lat[0]:lat[1]])), abs(float(text[lon[0]:lon[1]]))
        hemispheres = north[1] > north[0] and east[1] > east[0]  # "43.76958° N, 11.25581° E" says what it is
        if (about_a_place or hemispheres) and latitude <= 90 and longitude <= 180 and max(latitude, longitude) >= 1:
            pairs.append((lat[0], east[1] if east[1] > east[0] else lon[1]))
            yield "gps_coordinates", *pairs[-1]
    for (label, label_end), (start, end) in group_spans(_COORDINATE_LABEL, text, (1, 2)):
        inside = any(a <= start and end <= b for a, b in pairs)
        if not inside and abs(float(text[start:end])) <= (90 if text[label:label_end].lower().startswith("lat") else 180):
            yield "gps_coordinates", start, end


def find_addresses(text: str) -> Iterator[Span]:
    """Each street address in `text` (the text view), as ("street_address", start, end), and each place's
    coordinates ("gps_coordinates")."""
    grown: dict[tuple[int, object], int] = {}  # a street found from two starts ("12", "2") grows once

    def grow(end: int, tail) -> int:
        if (end, tail) not in grown:
            grown[end, tail] = _grown(text, end, tail)
        return grown[end, tail]

    # "1221B Baker Street" is found from its first digit, not its second (a cue's address starts after it)
    streets = [(s, e) for s, e in match_spans(_ADDRESS, text) if free_before(text, s)]
    spans = [(s, grow(e, _TAIL if text[s:e] != text[s:e].lower() else _TAIL_LOWER)) for s, e in streets]
    spans += [(s, grow(e, _TAIL_LOWER)) for ((s, e),) in group_spans(_CUED, text, (1,))]
    cased = {s for s, _ in streets}  # a street in capitals takes its locality in capitals: not "... during the War of 1812"
    spans += [(s, longer) for s, e in match_spans(_LOWER, text)
              if s not in cased and free_before(text, s) and (longer := grow(e, _TAIL_LOWER)) > e]
    spans += [(s, grow(e, _TOWN_AFTER)) for ((s, e),) in group_spans(_CUED_PARTS, text, (1,))]
    last_end = -1
    for start, end in sorted(spans, key=lambda span: (span[0], -span[1])):
        if end <= last_end:
            continue  # inside the address just found
        last_end = end
        yield "street_address", _unit_before(text, start), end
    yield from find_coordinates(text)


def _grown(text: str, end: int, tail) -> int:
    """Where the address that reaches `end` ends once `tail` (its locality) is taken in. (A tail ends
    in a postcode, which has four digits, NN-NNN, or a letter next to a digit: a window without one is not
    matched, which the tail's regex would take ~0.1 ms to find out.)"""
    if text[end - 1:end] == "." and _FULL_STOP_AFTER.search(text, max(0, end - 16), end):
        return end - 1  # "12 Market Street. Since 1971 ...": the sentence ended with the street
    window = text[end:end + _TAIL_WINDOW]
    if (stop := _SENTENCE_END.search(window)) is not None:
        window = window[:stop.end() - 1]  # up to the full stop
    if tail is not _TOWN_AFTER and not _POSTCODE_HINT.search(window):
        return end
    m = tail.match(window)
    return end + len(m.group(0)) if m else end


def _unit_before(text: str, start: int) -> int:
    """Where the address starting at `start` starts, a flat or unit written before it included."""
    window = text[max(0, start - _UNIT_WINDOW):start]
    m = _UNIT_BEFORE.search(window)
    return start - len(window) + m.start() if m and m.end() > m.start() and window[m.start():].strip() else start
