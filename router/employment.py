"""An employee's number and a person's pay: what an HR message or an export holds about someone.

An employee number has no shape of its own ("E10482", "EMP-204871", "008812"), so it counts after a
word naming it ("employee ID", "EID", "staff no.", "Personalnummer", "matricule", "número de
empleado") or in a column headed by one (`emp_id`). A salary counts where it is someone else's:
after "his/her/their salary", "X's salary", "salary of X", "earns", "verdient", "gagne", "gana" (with a
person before the verb), or in a table column headed "salary" beside a person's name column; not
"the average salary of a nurse is $75,000", nor the asker's own ("my salary is $4,000, can I afford
...?", "I earn 52k"), which is what their question is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from router.linear_regex import RegexSet, compile_linear, first_group_spans, found_in, group_spans
from router.records import table_cells
from router.subjects import has_subject, supposed

Span = tuple[str, int, int]

_S = r"[ _./:-]*"
_EMPLOYEE_LABEL = (rf"employee{_S}(?:id|no|nr|number|num|#)|emp{_S}(?:id|no|#)|eid|staff{_S}(?:id|no|number|#)|contractor|"
                   rf"numer{_S}pracownika|n[úu]mero{_S}de{_S}matr[íi]cula|"
                   rf"personnel{_S}(?:number|no)|payroll{_S}(?:id|number|no)|badge{_S}(?:id|no|number)|"
                   rf"personal{_S}nummer|personalnummer|mitarbeiter{_S}(?:id|nummer|nr)|matricule|"
                   rf"n°{_S}de{_S}matricule|n[úu]mero{_S}de{_S}empleado|matricola|personeelsnummer|"
                   rf"n[úu]mero{_S}de{_S}funcion[áa]rio|id{_S}(?:de{_S})?empleado")
_EMPLOYEE_ID = compile_linear(rf"(?i)(?:^|[^\pL])(?:{_EMPLOYEE_LABEL})\.?(?:[ \t]*(?:[:#=-]|is|was|ist|est|es|è|there|here|"
                              r"now|at \pL+))*[ \t]*[\"']?((?:[A-Z]{1,4}[ -]?)?[0-9][0-9-]{2,11}[0-9A-Z]?)(?:[^\pL\pN]|$)|"
                              # an employee's number in its own prefix anywhere: "EMP-08812", "(ID 118-4402)" after "Employee X"
                              r"(?:^|[^\pL\pN])(EMP[-_ ]?[0-9]{3,8})(?:[^\pL\pN]|$)|"
                              r"(?:employee|staff|contractor|worker)[^()\n]{1,48}\((?:ID|id|Id|#|no\.?)[ :#]*"
                              r"([A-Z]{0,4}[0-9][0-9-]{2,11})\)")
_EMPLOYEE_COLUMNS = frozenset("empid employeeid employeeno employeenumber eid staffid staffno personnelnumber "
                              "personalnummer matricule payrollid badgeid".split())
_EMPLOYEE_CELL = re.compile(r"(?:[A-Z]{1,4}[ -]?)?[0-9][0-9-]{2,11}[0-9A-Z]?")

# An amount of money: "$187,000", "54 300 €", "€4.250", "EUR 61,000", "95k", "£3,200 a month"
_NBSP = "\u00a0\u202f"  # the spaces that group thousands in French and German
_AMOUNT = (rf"(?:[$€£¥₹]|(?:usd|euros?|eur|gbp|chf|inr|rs\.?)[ \t]?)[ \t]?[0-9]{{1,3}}(?:[ .,{_NBSP}][0-9]{{3}})*"
           rf"(?:[.,][0-9]{{2}})?(?:[ \t]?k\b)?|[0-9]{{1,3}}(?:[ .,{_NBSP}][0-9]{{3}})+(?:[.,][0-9]{{2}})?[ \t]?"
           r"(?:[$€£¥₹]|usd|euros?|eur|gbp|chf|dollars?|pounds?|rupees?)|[0-9]{2,3}[ \t]?k\b")
_PAY = (r"salary|salaries|pay|wage|wages|compensation|income|earnings|bonus|salaire|r[ée]mun[ée]ration|gehalt|"
        r"bruttogehalt|lohn|einkommen|sueldo|salario|stipendio|retribuzione|sal[áa]rio|salaris|loon|inkomen")
# someone else's (a person's own pay, "my salary is ...", is what their question is about)
_POSSESSIVE = r"his|her|sein(?:e|en)?|ihr(?:e|en)?|son|sa|su|il suo|la sua|seu|sua|zijn|haar"
_FIRST_PERSON = re.compile(r"(?i)\b(?:i|i'm|ich|je|j'|yo|io|eu|ik|we|wir|nous|noi|nosotros)\s*$")
# "her salary is $98,500", "Sanne's salary: €4.250", "salary of Karim Benslimane: 54 300 €"
_OWNED_PAY = compile_linear(
    rf"(?i)(?:\b(?:{_POSSESSIVE})[ \t]+(?:\pL+[ \t]+)?(?:{_PAY})|(?-i:\p{{Lu}}\pL+)['’]s[ \t]+(?:\pL+[ \t]+)?(?:{_PAY})|"
    rf"(?:{_PAY})[ \t]+(?:of|for|von|de|di|van)[ \t]+(?-i:\p{{Lu}}\pL+(?:[ \t]+\p{{Lu}}\pL+)?))"
    rf"[^0-9$€£¥₹\n.!?;]{{0,24}}?({_AMOUNT})")
# "she earns $120k", "Karim gagne 4 200 € par mois"
# a record's field: "salaire annuel brut 54 300 €", "Gehalt: 4.200 €" (not "the average salary is ...")
# "current salary €62,400", "RAL 38.500 euro", a W-2's "wages, tips, other comp.: $74,310.55"
_PAY_QUALIFIED = compile_linear(
    rf"(?i)((?:^|[^\pL])(?:(?:current|base|annual|gross|yearly|monthly|net) (?:{_PAY})|ral|jahresgehalt|"
    rf"bruttojahresgehalt|retribuzione annua|wages, tips,? (?:and )?other comp(?:ensation|\.)?))[ \t]*[:=]?[ \t]*"
    rf"({_AMOUNT}|[0-9]{{4,7}}(?:[.,][0-9]{{2}})?)(?:[^\pN]|$)")
_PAY_FIELD = compile_linear(
    rf"(?i)((?:^|[^\pL])(?:{_PAY})(?:[ \t]+(?:annuel|annual|brut|gross|net|base|mensuel|monthly|yearly|jährlich|"
    rf"brutto|netto|anual|bruto|lordo|annuo|mensile|mensal))*)[ \t]*(?:[:=]|[ \t](?:annuel|annual|brut|gross|net|"
    rf"brutto|netto|bruto|lordo))[ \t]*({_AMOUNT})")
_GENERAL = re.compile(r"(?i)\b(?:the|a|an|average|median|typical|mean|minimum|starting|expected|national|entry-level|"
                      r"market|le|la|el|il|der|die|das|de|het|o|um|uma|salaire moyen|durchschnitt\w*)\W*$")
_RANGE = re.compile(rf"(?i)[ \t]*(?:-|–|to|bis|à|a|tot)[ \t]*(?:{_AMOUNT})")
_EARNS = compile_linear(rf"(?i)((?:^|[^\pL])(?:earns?|earning|makes|is paid|gets paid|verdient|gagne|gana|guadagna|"
                        rf"ganha))[ \t]+(?:about |around |roughly |over |almost |nearly |ungefähr |environ )?"
                        rf"({_AMOUNT})")
_PAY_COLUMNS = frozenset("salary salaries pay wage wages compensation basesalary annualsalary grosssalary income "
                         "salaire gehalt sueldo salario stipendio salaris".split())
_AMOUNT_CELL = re.compile(rf"(?i)(?:{_AMOUNT})|[0-9]{{4,7}}(?:[.,][0-9]{{2}})?")
_PERSON_COLUMN_HINT = compile_linear(r"(?i)name|employee|staff|person")
_HINT = compile_linear(rf"(?i){_EMPLOYEE_LABEL}|{_PAY}|employee|staff|worker|emp|ral|earn|make|paid|verdien|gagn|gana|"
                       r"guadagn|ganha")


_CUES = RegexSet([_EMPLOYEE_ID, _OWNED_PAY, _PAY_QUALIFIED, _PAY_FIELD, _EARNS, _HINT])


def find_employment(text: str) -> Iterator[Span]:
    """Each employee number and each person's pay in `text` (the text view), as ("employee_id" or
    "salary", start, end)."""
    present = _CUES.present(text)
    if not present:
        return
    for start, end in first_group_spans(_EMPLOYEE_ID, text, (1, 2, 3)) if _EMPLOYEE_ID in present else ():
        yield "employee_id", start, end
    for start, end in table_cells(text, _EMPLOYEE_COLUMNS, _EMPLOYEE_CELL.fullmatch):
        yield "employee_id", start, end
    for ((start, end),) in group_spans(_OWNED_PAY, text, (1,)) if _OWNED_PAY in present else ():
        if not supposed(text, start):
            yield "salary", start, end
    fields = [regex for regex in (_PAY_QUALIFIED, _PAY_FIELD) if regex in present]
    for (cue, _), (start, end) in [spans for regex in fields for spans in group_spans(regex, text, (1, 2))]:
        if not supposed(text, cue) and not _GENERAL.search(text, max(0, cue - 24), cue + 1) and not _RANGE.match(
                text, end):  # "Salary: $75,000 - $90,000": a job's range, no one's pay
            yield "salary", start, end
    for (cue, cue_end), (start, end) in group_spans(_EARNS, text, (1, 2)) if _EARNS in present else ():
        if not supposed(text, cue) and has_subject(text, cue, cue_end, named=True) and not _FIRST_PERSON.search(
                text, max(0, cue - 12), cue + 1):
            yield "salary", start, end
    if found_in(_PERSON_COLUMN_HINT, text):
        for start, end in table_cells(text, _PAY_COLUMNS, _AMOUNT_CELL.fullmatch):
            yield "salary", start, end
