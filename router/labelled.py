"""Values that only their label makes private: a passport's or driving licence's number, a bank
account's number, a date of birth, a card's security code and expiry. (A routing or sort code names a bank, not a person: none.)

None has a check digit or a shape of its own (a passport number is nine digits, as is any
count; a birth date is a date), so each counts only right after a word that names it
("passport no.", "acct #", "Kontonummer", "DOB:", "date de naissance"), in the languages the ID
keywords cover, with at most a few characters and no digit between. A number needs at least six
letters and digits, four of them digits; a date needs a day, a month and a year.

Runs on the digit view (router.normalize: upper case, separators unified), one RE2 pass per
kind of label (linear time, whatever the text).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from router.linear_regex import RegexSet, compile_linear, found_in, group_spans
from router.records import sql_values, table_cells
from router.scan import unspaced

Span = tuple[str, int, int]

_S = r"[ _./:-]*"  # between the words of a label: "driver's licence", "acct_no", "konto-nr"
_NO = rf"(?:{_S}(?:number|numbers|num|nr|no|n°|#|id|code))?"
_LABELS: dict[str, str] = {
    "passport": rf"(?:passport|pasaporte|passeport|reisepass|passaporto|paspoort|passaporte|passnummer|"
                rf"pass{_S}nr){_NO}",
    "drivers_license": (
        rf"(?:(?:driver'?s?|driving){_S}licen[cs]e|licen[cs]e{_S}(?:number|no|nr|#)|d/?l{_S}(?:number|no|#)|dl *[:#]|"
        rf"f[üu]hrerschein|permis{_S}de{_S}conduire|licencia{_S}de{_S}conduc(?:ir|ción|cion)|"
        rf"patente{_S}di{_S}guida|rijbewijs|carteira{_S}de{_S}motorista|carta{_S}de{_S}condução){_NO}"),
    "bank_account": (
        rf"(?:(?:bank|checking|cheque|chequing|savings|current|deposit){_S}acc(?:oun)?t?{_NO}|"
        rf"acc(?:oun)?t?{_S}(?:number|num|nr|no|#)|"
        rf"acct{_NO}|a/c{_NO}|kontonummer|konto{_S}nr|bankverbindung|num[ée]ro{_S}de{_S}compte|n°{_S}de{_S}compte|"
        rf"n[úu]mero{_S}de{_S}cuenta|numero{_S}di{_S}conto|rekeningnummer|n[úu]mero{_S}da{_S}conta)"),
    "birth_date": (
        rf"(?:date{_S}of{_S}birth|birth{_S}date|birthdate|birthday|b-?day|d\.?o\.?b\.?|born(?:{_S}on)?|"
        rf"geburtsdatum|geburtstag|geboren(?:{_S}am)?|geb\.|date{_S}de{_S}naissance|n[ée]e?{_S}le|"
        rf"fecha{_S}de{_S}nacimiento|nacid[oa](?:{_S}el)?|data{_S}di{_S}nascita|nat[oa]{_S}il|geboortedatum|"
        rf"geboren{_S}op|data{_S}de{_S}nascimento|nascimento|nascid[oa](?:{_S}em)?|data{_S}urodzenia|"
        rf"urodzon[ya](?:{_S}dnia)?|f[öo]delsedatum|f[öo]dd(?:{_S}den)?|f[øo]dselsdato|f[øo]dt|syntym[äa]aika|"
        rf"дата{_S}рождения|дата{_S}народження|doğum{_S}tarihi[m]?|jenm{_S}tithi|जन्म{_S}तिथि|जन्मतिथि|"
        rf"जन्म{_S}दिनांक|जन्मदिन|জন্ম{_S}তারিখ|ng[àa]y{_S}sinh|sinh{_S}ng[àa]y|tanggal{_S}lahir|tgl\.?{_S}lahir|"
        rf"tarikh{_S}lahir|tarehe{_S}ya{_S}kuzaliwa|ημερομηνία{_S}γέννησης|תאריך{_S}לידה|تاريخ{_S}الميلاد|"
        rf"تاريخ{_S}الولادة|مواليد|تاریخ{_S}تولد|تاریخ{_S}پیدائش|วันเกิด|เกิดวันที่|"
        rf"생년월일|출생일|出生日期|出生|生年月日|生日)"),
}
# A card's security code and expiry, which only their label tells from any three digits or a month.
_CARD_LABELS = {
    "card_cvv": (rf"(?:cvv2?|cvc2?|cvn|csc|card{_S}security{_S}code|security{_S}code|card{_S}verification(?:{_S}"
                 rf"(?:code|value))?|c[óo]digo{_S}de{_S}seguridad|code{_S}de{_S}s[ée]curit[ée]|cryptogramme(?:{_S}visuel)?|"
                 rf"kartenpr[üu]fnummer|pr[üu]fnummer|codice{_S}di{_S}sicurezza|c[óo]digo{_S}de{_S}seguran[çc]a|"
                 rf"beveiligingscode)"),
    "card_expiry": (rf"(?:\bexp(?:iry|iration|ires)?\b(?:{_S}date)?|valid{_S}(?:thru|through|until|till)|good{_S}thru|"
                    rf"g[üu]ltig{_S}bis|ablaufdatum|date{_S}d'expiration|expire{_S}(?:le|fin)|fecha{_S}de{_S}"
                    rf"(?:vencimiento|caducidad)|vencimiento|caducidad|scadenza|validade|vervaldatum|geldig{_S}tot)"),
}
_CARD_VALUES = {"card_cvv": r"[0-9]{3,4}", "card_expiry": r"(?:0[1-9]|1[0-2]) ?[/ .-] ?(?:20)?[0-9]{2}"}
_CARD_COLUMNS = {"card_cvv": frozenset("cvv cvv2 cvc cvc2 csc securitycode".split()),
                 "card_expiry": frozenset("exp expiry expiration expirydate expirationdate expdate validthru".split())}
_CARD_CELL = {kind: re.compile(value) for kind, value in _CARD_VALUES.items()}
# an expiry counts in a text about a card: "exp 02/27" beside "card", a card number or a CVV
_CARD_CONTEXT = compile_linear(r"(?i)card|carte|tarjeta|karte|cart[ãa]o|carta|kaart|visa|mastercard|amex|"
                               r"cvv|cvc|[0-9]{4} [0-9]{4} [0-9]{4}")

# A vehicle's plate and an insurance policy's number, after their words: letters and digits in a few
# groups ("plate 8KXM271", "Kennzeichen M-KL 4827", "policy HX-4471-290358", "member ID ... XEP918273641").
_OTHER_LABELS = {
    "licence_plate": (rf"(?:licen[cs]e{_S})?plates?(?:{_S}number)?|vehicle{_S}registration|registration{_S}(?:number|no)|"
                      rf"reg{_S}no|kfz{_S}kennzeichen|kennzeichen|plaque(?:{_S}d'immatriculation)?|immatriculation|"
                      rf"matr[íi]cula|targa|kenteken|placa|numer{_S}rejestracyjny|registreringsnummer|plaka"),
    "insurance_policy": (rf"(?:(?:insurance|life|home|travel|auto|car|health|dental){_S})?policy(?:{_S}(?:number|no|#))?|"
                         rf"member{_S}id|membership{_S}(?:number|no)|subscriber{_S}id|versicherungs{_S}(?:nummer|schein)|"
                         rf"n°{_S}de{_S}police|num[ée]ro{_S}de{_S}police|n[úu]mero{_S}de{_S}p[óo]liza|p[óo]liza|"
                         rf"polizza|ap[óo]lice|polisnummer"),
}
_OTHER_VALUES = {"licence_plate": r"(?:[A-Z]{1,4}[ -]){0,2}[A-Z0-9]*[0-9][A-Z0-9]*(?:[ -][A-Z0-9]{1,4}){0,2}",
                 "insurance_policy": r"(?:[A-Z]{1,6}[ -]?)?[0-9][0-9A-Z]*(?:[ -][0-9A-Z]{1,8}){0,3}"}
_WORDS_NOT_IN_A_PLATE = frozenset("IN THE AND ON OF FOR TO IS AT MY OUR A AN IT BY AS OR WAS ARE DE VAN HET IST UND "
                                   "EST ET ES Y E EL LA LE DER DIE DAS EN ES".split())
_PLATE_GROUP = re.compile(r"[0-9A-Z]+")
_EXAMPLE = re.compile(r"\b(?:LIKE|E\.G|SUCH AS|FOR EXAMPLE|FORMAT|EXAMPLE|Z\.B|PAR EXEMPLE|POR EJEMPLO)\b")

# A number: groups of letters and digits, each holding a digit, single spaces or dashes between
# (a group of letters alone is a word: "12345678 and", not part of the number).
_GROUP = r"[0-9A-Z]*[0-9][0-9A-Z]*"
_NUMBER = rf"{_GROUP}(?:[ -]{_GROUP})*"
_MONTH = (r"(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|JANV|FÉVR|FEVR|AVR|MAI|JUIN|JUIL|AOÛT|AOUT|"
          r"SEPT|DÉC|ENE|ABR|AGO|DIC|GEN|MAG|GIU|LUG|SETT|OTT|MÄR|MRZ|OKT|DEZ|MEI)[A-ZÀ-Ý]*\.?")
_DAY = r"[0-9]{1,2}(?:ST|ND|RD|TH|ER|\.)?"
_DATE = (rf"(?:[0-9]{{1,4}}[ ./-][0-9]{{1,2}}[ ./-][0-9]{{2,4}}|{_DAY}(?: OF| DE| DI)? {_MONTH},? (?:DE )?[0-9]{{4}}|"
         rf"{_MONTH} {_DAY},? [0-9]{{4}}|[0-9]{{4}}年[0-9]{{1,2}}月[0-9]{{1,2}}日)")
_GAP = r"[^0-9\n]{0,24}?"  # "number is: ", " (mm/dd/yyyy): ", " on file - "
_FINDERS = {kind: [compile_linear(rf"({label}){_GAP}({_DATE if kind == 'birth_date' else _NUMBER})", ignore_case=True)]
            for kind, label in _LABELS.items()}
# "account" alone names many things ("account balance 1234567"), so only a number right after it
# counts: "account 31926819", "account: 31926819", "account #31926819".
# (From a digit: "Konto DE89 3704 ..." is an IBAN, found as one.)
_FINDERS["bank_account"].append(compile_linear(rf"(account|acc|konto|compte|cuenta|conto|rekening)[ :#=]{{0,3}}"
                                                rf"([0-9][0-9A-Z]*(?:[ -]{_GROUP})*)", ignore_case=True))
_FINDERS.update({kind: [compile_linear(rf"({label}){_GAP}({_CARD_VALUES[kind]})(?:[^0-9]|$)", ignore_case=True)]
                 for kind, label in _CARD_LABELS.items()})
_FINDERS.update({kind: [compile_linear(rf"({label})[^0-9\n.;]{{0,48}}?\b({_OTHER_VALUES[kind]})(?:[^0-9A-Z]|$)",
                                       ignore_case=True)] for kind, label in _OTHER_LABELS.items()})
# A date then the word: "am 3. Juli 1979 geboren", "1985-07-30 born".
_DATE_THEN_LABEL = compile_linear(rf"({_DATE})[ ,]{{1,3}}(geboren|born|né|née|nacid[oa]|nat[oa])", ignore_case=True)
_ALL_FINDERS = RegexSet([*(regex for finders in _FINDERS.values() for regex in finders), _DATE_THEN_LABEL])
_MIN_CHARS, _MIN_DIGITS = 6, 4
# A number after a document's label that is a date with its year is the issue or expiry date
# ("passport issued 2019 06 01"), not the number.
_DATED = re.compile(r"[0-9]{4}[ ./-][0-9]{1,2}[ ./-][0-9]{1,2}|[0-9]{1,2}[ ./-][0-9]{1,2}[ ./-][0-9]{4}")


# A record's column that holds dates of birth (router/records.py): letters only, lower case.
_BIRTH_COLUMNS = frozenset("dob dateofbirth birthdate birthday born geburtsdatum datedenaissance fechadenacimiento "
                           "datadinascita datadenascimento geboortedatum dataurodzenia".split())
_WHOLE_DATE = compile_linear(_DATE, ignore_case=True)


def _is_date(value: str) -> bool:
    return _WHOLE_DATE.fullmatch(value) is not None


def _letter(char: str) -> bool:
    return char.isalpha() and not unspaced(char)  # "出生日期" ends a label as a space does


def _without_words(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without the words of a sentence at either end ("IS 4-KTR-82" -> "4-KTR-82")."""
    groups = [m.span() for m in _PLATE_GROUP.finditer(text, start, end)]
    while groups and text[slice(*groups[0])] in _WORDS_NOT_IN_A_PLATE:
        groups.pop(0)
    while groups and text[slice(*groups[-1])] in _WORDS_NOT_IN_A_PLATE:
        groups.pop()
    return (groups[0][0], groups[-1][1]) if groups else (start, start)


def find_labelled(text: str, kinds: tuple[str, ...]) -> Iterator[Span]:
    """Each value of one of `kinds` (keys of _LABELS) right after a word naming it, in `text`."""
    present = _ALL_FINDERS.present(text)  # one pass: which finders match at all (most texts: none)
    if "card_expiry" in kinds and _FINDERS["card_expiry"][0] in present and not found_in(_CARD_CONTEXT, text):
        kinds = tuple(kind for kind in kinds if kind != "card_expiry")
    found = [(kind, spans) for kind in kinds for regex in _FINDERS[kind] if regex in present
             for spans in group_spans(regex, text, (1, 2))]
    if "birth_date" in kinds and _DATE_THEN_LABEL in present:
        found += [("birth_date", (label, value)) for value, label in group_spans(_DATE_THEN_LABEL, text, (1, 2))]
    if "birth_date" in kinds:
        for start, end in (*table_cells(text, _BIRTH_COLUMNS, _is_date), *sql_values(text, _BIRTH_COLUMNS, _is_date)):
            yield "birth_date", start, end
    for kind in set(kinds) & _CARD_COLUMNS.keys():
        for start, end in table_cells(text, _CARD_COLUMNS[kind], _CARD_CELL[kind].fullmatch):
            yield kind, start, end
    for kind, ((label, label_end), (start, end)) in found:
        if (label and (_letter(text[label - 1]) or text[label - 1].isdigit())) or (
                label_end < len(text) and _letter(text[label_end])):
            continue  # whole words only: "tabular" holds no "aba", "adobe" no "dob", hex "83acc3cc4" no "acc"
        value = text[start:end]
        if start == label_end and any("A" <= c <= "Z" for c in value.split(" ")[0]):
            continue  # a word glued to letters and digits is one token, a code or a hash: "acc7ae9f35c6"
        if kind in _OTHER_LABELS:
            if _EXAMPLE.search(text, label_end, start):
                continue  # "a UK number plate like 'AB12 CDE'": a format's example, no one's
            start, end = _without_words(text, start, end)  # "IS 4-KTR-82", "XEP918273641 AND": the digit view's capitals
            value = text[start:end]
            digits, letters = sum(c.isdigit() for c in value), sum(c.isalpha() for c in value)
            if digits >= (5 if kind == "insurance_policy" else 1) and (letters or kind == "insurance_policy") and (
                    4 <= len(value.replace(" ", "").replace("-", "")) <= 20) and not _DATED.fullmatch(value) and (
                    _WORDS_NOT_IN_A_PLATE.isdisjoint(value.replace("-", " ").split())):
                yield kind, start, end
            continue
        if kind in _CARD_LABELS or kind == "birth_date" or (sum(c.isalnum() for c in value) >= _MIN_CHARS
                                    and sum(c.isdigit() for c in value) >= _MIN_DIGITS
                                    and not _DATED.fullmatch(value)):
            yield kind, start, end
