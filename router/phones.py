"""Phone numbers: valid in the numbering plan of one of 22 countries (`_NATIONAL_REGIONS`),
or of any country when written in international form (+CC or 00CC), as phonenumbers judges.

A regex proposes digit runs of phone shape and cheap checks drop dates, prices,
lists of small numbers and numbers labelled as something else ("order
4155552671"), so phonenumbers (tens of microseconds per parse) only sees real
candidates.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from functools import lru_cache

import phonenumbers

from router.linear_regex import compile_linear, found_in
from router.national_ids import IdWords
from router.scan import UNSPACED, free_before, matches, unspaced

Span = tuple[str, int, int]

# Digits in groups joined by one separator, optionally led by +CC or (area); at
# least six more phone characters must follow the first, so short numbers are
# skipped inside the regex engine.
# After a "+", an area code's ")" or a dash, the number may go on past a line break (a value
# split across two lines or two chat messages, which are joined by one).
_BREAK = r"(?:[ \t]*\r?\n[ \t]*| ?)"
_PHONE_CANDIDATE = re.compile(
    r"[+(0-9](?=[0-9 ().\-/\n\r\t]{6})"
    rf"(?:(?<=\+){_BREAK}(?:\(\d{{1,5}}\){_BREAK})?\d+|(?<=\()\d{{1,5}}\){_BREAK}\d+|(?<=\d)\d*)"
    rf"(?:(?: ?[\-/]{_BREAK}|[ .])(?:\(\d{{1,5}}\){_BREAK})?\d+|\(\d{{1,5}}\){_BREAK}\d+)*"
    rf"(?![^\W{UNSPACED}]|@|[.,:/-]\d)"
)
_DATE_OR_TIME = re.compile(
    r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|\d{1,2}:\d{2}|\d{1,3}(?:[.,]\d{3})+"
)
# A number right after one of these words is an identifier of a thing, not a phone
# (English, German, French, Spanish, Italian, Portuguese, Dutch).
_NOT_A_PHONE_BEFORE = re.compile(  # matched on lower-cased text: (?i) is several times slower
    r"(?:\b(?:order|invoice|tracking|reference|ref|confirmation|serial|ticket|booking|case|sku|part|model|"
    r"po|transaction|receipt|isbn|issn|ean|upc|gtin|imei|imsi|iccid|patent|meeting|id|batch|lot|account|acct|"
    r"routing|iban|card|customer|member|policy|claim|contract|shipment|parcel|package|item|article|product|"
    r"timestamp|epoch|unix|ts|build|version|lottery|lotto|loto|tirage|ziehung|"
    r"bestellung|auftrag|rechnung|sendung|vorgang|aktenzeichen|kunde|vertrag|artikel|konto|"
    r"commande|facture|dossier|r[ée]f[ée]rence|suivi|colis|contrat|client|compte|"
    r"pedido|factura|fatura|expediente|referencia|refer[êe]ncia|seguimiento|env[íi]o|contrato|cliente|cuenta|"
    r"encomenda|protocolo|processo|ordine|fattura|pratica|riferimento|spedizione|contratto|conto|"
    r"bestelling|factuur|referentie|zending|klant|rekening)|[a-zäöüß]*(?<!tele[fp]on)(?<!ruf)(?<!handy)"
    r"(?<!mobil)(?<!fax)nummer|\bn\.?[°ºo]|\bnr)"
    r"s?[\s_-]*(?:no\.?|nr\.?|numbers?|num\.?|n\.?[°ºo]|n\.|ids?|#|nummer|num[ée]ros?|n[úu]meros?)?\s*"
    r"(?:(?:de|del|di|da|do|du|van|der)\s+\w+\s*)?[\"']?\s*[:#.=]?\s*[\"']?\s*$"
)
# The same words without the look-behinds, in RE2: one linear pass says whether any can be there
# (Python's engine tries the whole alternation at every position of the window).
_LABEL_HINT = compile_linear(_NOT_A_PHONE_BEFORE.pattern.replace(
    r"|[a-zäöüß]*(?<!tele[fp]on)(?<!ruf)(?<!handy)(?<!mobil)(?<!fax)nummer", "|nummer"))
_DIGITS = re.compile(r"[0-9]+")
_NOT_SPACE = re.compile(r"\S+")
_SPACE = re.compile(r"\s")
_PERSONAL_NUMBER = re.compile(r"\d{6}[-+]\d{4}")
_NOT_BEFORE_PHONE = ".,/#$€£¥@:=-"  # and "+" except before "+CC"
# Regions tried for a number written without +CC: those whose national numbers start
# with the trunk prefix 0, and those with none.
_NATIONAL_REGIONS = {
    "0": ("GB", "DE", "FR", "IN", "NL", "BE", "AT", "CH", "AU", "IE", "SE", "IT", "JP", "ZA", "NZ"),
    "": ("US", "IN", "ES", "IT", "PT", "PL", "MX", "BR", "CN"),
}
_UNIX_TIME = re.compile(r"1[0-9]{9}(?:[0-9]{3})?")  # seconds or milliseconds since 1970, 2001-2286


# An extension after the number belongs to it: "+1 212-619-3451 ext. 204", "(617) 378-3266 x331".
_EXTENSION = re.compile(
    r"[ \t]*,?[ \t]*(?:(?i:ext|extn|extension|poste|durchwahl|dw|int|interno)\.?:?[ \t]*#?|[xX])\d{1,6}\b")


def find_phones(text: str, claimed: Sequence[tuple[int, int]] = (), id_words: IdWords | None = None) -> Iterator[Span]:
    """Phone numbers in `text` (with their extension), ignoring digits inside `claimed` spans (a
    card, IBAN or national ID already found: its digits are that number, not a phone); `id_words`
    is the text's IdWords when the caller already has them."""
    for kind, start, end in _find_phones(text, claimed, id_words):
        extension = _EXTENSION.match(text, end)
        yield kind, start, extension.end() if extension else end


def _find_phones(text: str, claimed: Sequence[tuple[int, int]], id_words: IdWords | None) -> Iterator[Span]:
    """find_phones without the extensions.

    A run that is not one number may be several side by side ("212-555-1234
    415-555-2671") or one with a neighbour ("212-555-1234 24 hours"): it is split
    at spaces into the phones that cover most of it.
    """
    claimed = sorted(claimed)
    starts = [a for a, _ in claimed]
    longest = max((b - a for a, b in claimed), default=0)
    words = id_words or IdWords(text)
    for m in matches(_PHONE_CANDIDATE, text):
        if m.end() - m.start() < 7:
            continue  # fewer than seven characters, so fewer than seven digits
        nearby = claimed[bisect_left(starts, m.start() - longest):bisect_left(starts, m.end())]
        overlapping = [(a, b) for a, b in nearby if m.start() < b]
        if not overlapping and _is_phone(text, m.start(), m.end(), words):
            yield "phone", m.start(), m.end()
            continue
        if not _SPACE.search(m.group()) or _FOUR_DIGIT_GROUPS.search(m.group()):
            continue  # card, IBAN or account digits; a phone among them is not worth a dozen parses
        pieces = [(p.start(), p.end()) for p in _NOT_SPACE.finditer(text, m.start(), m.end())]
        whole = list(pieces)
        if _labelled(text, m.start(), words):
            if len({b - a for a, b in pieces}) == 1 or pieces[0][1] - pieces[0][0] < 5:
                continue  # "Order 4711 0815 4242", "AHV 756 1234 5678 97": the label names the whole run
            pieces = pieces[1:]  # "Case ID 415 555 2671 9": the label names the first number; no phone starts there
        if len(pieces) > _MAX_SPLIT_PIECES:
            continue
        segment: list[tuple[int, int]] = []
        for piece in [*pieces, None]:
            if piece is not None and not any(a < piece[1] and piece[0] < b for a, b in overlapping):
                segment.append(piece)
                continue
            whole_tried = segment == whole and not overlapping
            if segment and any(sum(c.isdigit() for c in text[a:b]) >= 4 for a, b in segment):
                for start, end in _best_split(text, segment, whole_tried, words):
                    yield "phone", start, end
            segment = []


_MAX_PHONE_PIECES = 8  # "+44 (0) 20 7946 0958" is 5; bounds the split to linear time
_MAX_SPLIT_PIECES = 24  # a longer run of bare numbers is a table, not phones written side by side
_FOUR_DIGIT_GROUPS = re.compile(r"(?:^|[ -])\d{4}[ -]\d{4}[ -]\d{4}[ -]\d{4}(?:[ -]|$)")  # a phone has two at most


def _best_split(text: str, pieces: list[tuple[int, int]], whole_tried: bool, words: IdWords) -> list[tuple[int, int]]:
    """Phones covering the most pieces of a run, each a run of whole pieces (dynamic programming)."""
    n = len(pieces)
    best: list[tuple[int, list[tuple[int, int]]]] = [(0, [])] * (n + 1)
    for i in range(n - 1, -1, -1):
        best[i] = best[i + 1]
        for j in range(i + 1, min(n, i + _MAX_PHONE_PIECES) + 1):
            if not (whole_tried and (i, j) == (0, n)) and best[j][0] + j - i > best[i][0]:
                if _is_phone(text, pieces[i][0], pieces[j - 1][1], words):
                    best[i] = (best[j][0] + j - i, [(pieces[i][0], pieces[j - 1][1]), *best[j][1]])
    return best[0][1]


def _is_phone(text: str, start: int, end: int, words: IdWords) -> bool:
    """Cheapest checks first: most candidates are dates, prices or short numbers."""
    candidate = text[start:end]
    if "\n" in candidate:
        candidate = " ".join(candidate.split())  # read across the line break
    groups = [len(g) for g in _DIGITS.findall(candidate)]
    digits = sum(groups)
    shortest = 7 if candidate[0] in "+(" else 8  # national numbers have 8+ digits with their area code
    if not shortest <= digits <= 15 or (len(groups) == 1 and not 10 <= digits <= 11 and candidate[0] not in "+("):
        return False  # unseparated: US/IN/FR 10 digits, GB/IN 11 with the trunk 0
    if candidate[0] != "+":
        groups = groups[1:] if candidate[0] == "1" and groups[0] == 1 else groups  # "1-800-..."
        trunk = candidate.lstrip("(").startswith("0")
        if min(groups, default=0) < 2:
            return False  # "7 14 21 28" or "0 11 9 1947" is a list
        if not trunk and min(groups) < 3:  # "612 34 56 78" (ES), "(11) 96123-4567" (BR); not "4400-2231-99"
            spaced = "-" not in candidate and "/" not in candidate
            if digits < 9 or not (spaced or (candidate[0] == "(" and min(groups[1:]) >= 3)):
                return False
            if max(groups) == 2:
                return False  # nine digits or more in pairs need a trunk 0 ("06 12 34 56 78"): "81 - 46 - 48 - 38 - 89"
    if _DATE_OR_TIME.fullmatch(candidate) or candidate.count(".") == 3 or _PERSONAL_NUMBER.fullmatch(candidate):
        return False  # a date, a time, a version; "640421-1890" is a Nordic personal number's shape
    if not free_before(text, start, "" if candidate[0] == "+" else _NOT_BEFORE_PHONE) and not (
            text[start - 1] == ":" and start > 1 and unspaced(text[start - 2])):  # "手机:186 5006 4808"
        return False
    if _UNIX_TIME.fullmatch(candidate) or _named_as_a_thing(text, start):
        return False
    return _valid_phone(candidate) and not words.labels(start)


def _labelled(text: str, start: int, words: IdWords) -> bool:
    """The number at `start` is labelled as something other than a phone ("Case ID", "Bestellnummer")."""
    return _named_as_a_thing(text, start) or words.labels(start)


def _named_as_a_thing(text: str, start: int) -> bool:
    """An order, invoice, account... number word just before `start`."""
    window = text[max(0, start - 40):start].lower()
    return found_in(_LABEL_HINT, window) and _NOT_A_PHONE_BEFORE.search(window) is not None


@lru_cache(maxsize=2048)
def _valid_phone(candidate: str) -> bool:
    """Valid as written in international form, or in one of the national plans.

    A national number is checked against each region by its national significant
    number (one `is_valid_number` each), not parsed again per region.
    """
    if candidate.startswith(("+", "00")):
        try:
            number = phonenumbers.parse("+" + candidate[2:] if candidate.startswith("00") else candidate, None)
        except phonenumbers.NumberParseException:
            return False
        return phonenumbers.is_valid_number(number)
    digits = "".join(_DIGITS.findall(candidate))
    trunk = digits.startswith("0")
    for region in _NATIONAL_REGIONS["0" if trunk else ""]:
        code = phonenumbers.country_code_for_region(region)
        national = digits[1:] if trunk and region != "IT" else digits
        if region == "US" and len(national) == 11 and national.startswith("1"):
            national = national[1:]
        if not national or national.startswith("0") and region != "IT":
            continue
        number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
        if region == "IT" and national.startswith("0"):
            number.italian_leading_zero = True
        if phonenumbers.is_valid_number_for_region(number, region):
            return True
    return False
