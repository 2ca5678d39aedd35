"""Someone's health: a condition, a state or a medicine the text ties to a person, or a medical
record's field.

A question about an illness ("What are the symptoms of diabetes?", "What dose of ibuprofen is
safe?") is no one's record and must reach the cloud whole; "my son has been diagnosed with ADHD",
"Diagnosis: Type 2 diabetes", "Mein Vater hat Parkinson" and "my mum takes 20 mg of atorvastatin"
are. So a condition or a medicine counts only where the words around it tie it to a person:

- a diagnosis or history: "diagnosed with", "suffers from", "living with", "history of",
  "presents with", "tested positive for" (and in German, French, Spanish, Italian, Portuguese,
  Dutch), the condition within a few words of it;
- having it: "I have", "my dad has", "the patient has", "hat", "il a", "tiene", "heeft", with a
  condition right after (not "cancer coverage"), unless a question makes it a supposition ("How
  do I know if I have diabetes?");
- owning it: "her OCD", "his insulin", "my Adderall";
- being it: "I'm 14 weeks pregnant", "he's HIV positive", "allergic to penicillin", "ist
  schwanger", "dass er HIV-positiv ist", "Sono incinta" (a first-person verb is its own subject);
- taking it ("medication"): "my mum takes 20 mg of atorvastatin and 5 mg of amlodipine", "Dad's
  on warfarin 5 mg", "his GP started him on metformin", "toma 75 mg de clopidogrel": a verb of
  taking with its subject, then a medicine from the list, one with a generic name's stem, or any
  name with a dose; not advice ("Take 400 mg"), questions ("Can I take ...?") or "Patients on
  warfarin should ...";
- a record's field or a table's column: "Diagnosis:", "Dx:", "Hx:", "PMH:", "Allergies:",
  "Medications:", "Rx:", "Tratamiento:", a "| Diagnosis |" column; not "none", "n/a", "NKDA";
- a patient's record number ("medical_record_number"): "MRN 00734192", "patient no. KNH-0048271";
- a test's value ("lab_result") in a text about someone's results: "my dad's results: HbA1c 8.4%, LDL
  172 mg/dL", "your CD4 count is 612" to a patient; not "Is an HbA1c of 6.5% high?".

The span is the condition with the words that qualify it ("poorly controlled type 1 diabetes").
Runs on the text view (router.normalize): RE2 finds the cues, each followed up from there with
Python's re, anchored. (One RE2 pattern of cue and condition together outgrew RE2's DFA memory.)
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator

from router import health_words as w
from router.linear_regex import RegexSet, compile_linear, found_in, group_spans
from router.normalize import without_accents
from router.name_words import RELATION
from router.records import table_cells
from router.subjects import follows_a_finding, has_subject, supposed

Span = tuple[str, int, int]


def _linear(pattern: str, **options):
    """A pattern of this module for RE2, its words without accents as the text it reads (`without_accents`)."""
    return compile_linear(without_accents(pattern), **options)


def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(without_accents(pattern))


_CONDITION = rf"{w.QUALIFIER}(?:{w.CONDITIONS}){w.AFTER_CONDITION}"
_ARTICLE = r"(?:a|an|the|une?|de|el|la|il|lo|o|uma?|een|der|die|das|eine?r?)[ \t]+"
_NOT_AFTER = rf"(?![^\W\d_]| (?:{w.THING_AFTER})\b)"
_MEDICINE = (rf"(?:{w.DOSE}[ \t]+(?:(?:{w.OF})[ \t]+)?)?(?:{w.DRUG_NAMES})(?:/(?:{w.DRUG_NAMES}))?\b"
             rf"(?:[ \t]+{w.DOSE})?|{w.DOSE_OF_ANY}[ \t]+(?:{w.OF})[ \t]+[^\W\d_][\w-]{{3,}}|"
             rf"[^\W\d_][\w/-]{{2,}}[ \t]+{w.DOSE}")

# Each cue with what must follow it, in one linear pass (RE2); group 1 is the cue's verb, and what
# follows is checked again from there with the look-aheads RE2 lacks.
_BEFORE_STATE = (r"(?:(?:now|currently|also|still|already|jetzt|actuellement|ahora|ora)[ \t]+)?"
                 r"(?:(?:like|about|around|almost|nearly|over|roughly)[ \t]+)?"
                 r"(?:(?:\d+|a few|two|three|four|five|six|seven|eight|nine)[ \t]+(?:weeks?|months?)[ \t]+)?")
_DETERMINER = r"(?:a|an|the|some|daily|his|her|their|my|low[- ]dose|high[- ]dose)"
_CONDITION_RE2, _MEDICINE_RE2 = (p.replace(r"[^\W\d_]", r"\pL") for p in (_CONDITION, _MEDICINE))  # RE2 spells it so
_DIAGNOSED_CUE = _linear(rf"(?i)((?:^|[^\pL])(?:{w.DIAGNOSED}))")
_HAS_CUE = _linear(rf"(?i)((?:^|[^a-z'])(?:{w.HAS}))[ \t]+(?:{_ARTICLE})?(?:{_CONDITION_RE2})")
_POSSESSIVE_CUE = _linear(rf"(?i)((?:^|[^\pL'’])(?:{w.POSSESSIVE}))[ \t]+(?:{_CONDITION_RE2}|{_MEDICINE_RE2})")
_IS_CUE = _linear(rf"(?i)((?:^|[^\pL'’])(?:{w.IS})|['’](?:s|m|re))[ \t]+{_BEFORE_STATE}(?:{w.STATES})")
_TAKES_CUE = _linear(rf"(?i)((?:^|[^\pL'’])(?:{w.TAKES}|{w.ON})|['’](?:{w.ON_AFTER_APOSTROPHE}))"
                            rf"[ \t]+(?:{_DETERMINER}[ \t]+)?(?:{_MEDICINE_RE2})")
_VERB_LAST_CUE = _linear(rf"(?i)(?:^|[^\pL])(?:{w.STATES})[ \t]+(?:{w.VERB_LAST})(?:[^\pL]|$)")
_FIELD_CUE = _linear(rf"(?i)(?:^|[^\pL])(?:{w.FIELDS})[ \t]*[:=]")
_MEDICINE_FIELD_CUE = _linear(rf"(?i)(?:^|[^\pL])(?:{w.MEDICINE_FIELDS})[ \t]*[:=]")
_RECORD_NUMBER = _linear(rf"(?i)(?:^|[^\pL])(?:{w.RECORD_NUMBER_LABELS})[ \t]*[:#.=-]?[ \t]*"
                                r"([A-Z0-9](?:[A-Z0-9/-]{2,18}[A-Z0-9])?)(?:[^\pL\pN]|$)")
_LAB_VALUE = (rf"[0-9]+(?:[.,][0-9]+)?(?:/[0-9]+)?(?:[ \t]?(?:{w.LAB_UNITS}))?")
_LAB = _linear(rf"(?i)(?:^|[^\pL])((?:{w.LAB_TESTS})(?:[ \t]*[:=]?[ \t]*(?:(?:is|was|of|at|von|de|di|van|a)[ \t]+)?|"
                      rf"[\"'][ \t]*,[ \t]*[\"']value[\"'][ \t]*:[ \t]*[\"'])({_LAB_VALUE}))(?:[^\pL\pN]|$)")
_OWNED_LAB = _linear(rf"(?i)(?:\b(?:my|his|her|their|your)|\p{{Lu}}\pL+['’]s|(?:dad|mum|mom|wife|husband)['’]s)"
                            rf"[ \t]+(?:\pL+[ \t]+)?(?:{w.LAB_TESTS})\b")
_RESULTS = _linear(rf"(?i)\b(?:{w.RESULTS_WORDS})\b")
_PERSON_MENTION = _linear(rf"(?i){w.PERSON_MENTION}")
# someone a dosed medicine near them is taken by: a relation ("my dad", "mia nonna"), an honorific and a name, a
# client or a patient by name, "I'm Delphine" (not "my essay", "patients on warfarin")
_SOMEONE = _linear(rf"(?i)(?:^|[^\pL])(?:{RELATION}|(?:mr|mrs|ms|dr|herr|frau|mme|sr|sra|sig)\.?[ \t]+(?-i:\p{{Lu}})|"
                   rf"(?:client|patient|patientin|patiente|paciente|paziente|pt\.?)[ \t]+(?-i:\p{{Lu}})|"
                   rf"i['’]?m[ \t]+(?-i:\p{{Lu}}\pL+))")
_RECORD = _linear(rf"(?i)(?:^|[^\pL])(?:{w.RECORD_WORDS})(?:[^\pL]|$)")
_BARE_CONDITION = _linear(rf"(?i)(?:^|[^\pL])({_CONDITION_RE2})(?:[^\pL]|$)")
_BARE_MEDICINE = _linear(rf"(?i)(?:^|[^\pL])((?:{w.DRUG_NAMES})(?:/(?:{w.DRUG_NAMES}))?(?: [a-z]+)?[ \t]+{w.DOSE}|"
                         rf"{w.DOSE}[ \t]+(?:(?:{w.OF})[ \t]+)?(?:{w.DRUG_NAMES})|(?-i:\p{{Lu}}\pL{{2,}})[ \t]+{w.DOSE_OF_ANY})")
_CUES = RegexSet([_DIAGNOSED_CUE, _HAS_CUE, _POSSESSIVE_CUE, _IS_CUE, _TAKES_CUE, _VERB_LAST_CUE, _FIELD_CUE,
                  _MEDICINE_FIELD_CUE, _RECORD_NUMBER, _RECORD, _BARE_CONDITION, _BARE_MEDICINE, _LAB, _SOMEONE])
# words with other senses, found alone in a record only with a qualifier ("aids to navigation", "an anxiety")
_AMBIGUOUS = _regex(rf"(?i)(?:{w.OWNED_ONLY_QUALIFIED}|miscarriage|tumou?r)\b|(?-i:aids)\b")
_LABEL_AFTER = _regex(r"[ \t]*[:|=]")
_NEAR = 240  # characters around a record's marker or a condition tied to someone within which others count
_FOR_CONDITION = _regex(rf"(?i)[ \t]+(?:for|against|für|gegen|pour|contre|para|contra|per|voor|tegen)[ \t]+"
                            rf"(?:{_ARTICLE})?({_CONDITION}){_NOT_AFTER}")

_AFTER_DIAGNOSED = _regex(rf"(?i)[ \t:]+(?:{_ARTICLE})?(?:[^\W\d_]+[ \t]+){{0,2}}?({_CONDITION}){_NOT_AFTER}")
_AFTER_HAS = _regex(rf"(?i)[ \t]+(?:{_ARTICLE})?({_CONDITION}){_NOT_AFTER}")
_AFTER_POSSESSIVE = _regex(rf"(?i)[ \t]+(?!(?:{w.OWNED_ONLY_QUALIFIED})\b(?! (?:disorder|attacks?)))"
                               rf"({_CONDITION}|{_MEDICINE}){_NOT_AFTER}")
_AFTER_IS = _regex(rf"(?i)[ \t]+{_BEFORE_STATE}({w.STATES})(?![^\W\d_])")
_AFTER_TAKES = _regex(rf"(?i)[ \t]+(?:{_DETERMINER}[ \t]+)?({_MEDICINE})(?![^\W\d_])")
_NEXT_MEDICINE = _regex(rf"(?i){w.AND}({_MEDICINE})(?![^\W\d_])")
_NEXT_CONDITION = _regex(rf"(?i){w.AND}({_CONDITION}){_NOT_AFTER}")
_STATE_BEFORE = _regex(rf"(?i)({w.STATES})")
_FIELD_AFTER = _regex(r"[ \t]*([^\n|;.]{2,80})")
_NOTHING = _regex(rf"(?i){w.NOTHING}[ \t]*$")
_NO_LETTER = _regex(r"[\W\d_]*")

# a word for an economy's slump too: a person's only right after the cue ("suffers from depression")
_ECONOMIC = _regex(r"(?i)d[eé]pres(?:sion|ión|sione|são|sie)\b")

_CONDITION_KIND, _MEDICINE_KIND = "health_condition", "medication"
_DRUG = _regex(rf"(?i)(?:{w.DRUG_NAMES})\b|{w.DOSE}")
_CONDITION_MATCH = _regex(rf"(?i){_CONDITION}")


def find_health(text: str) -> Iterator[Span]:
    """Each condition, state, medicine, lab result or record number the text ties to a person, as
    ("health_condition", "medication", "lab_result" or "medical_record_number", start, end)."""
    original, text = text, without_accents(text)  # the words read without accents, the subject as written
    present = _CUES.present(text)  # one pass: most texts hold no cue at all

    def spans(regex, groups=(1,)):
        return group_spans(regex, text, groups) if regex in present else []

    found: dict[tuple[int, int], str] = {}
    for cue, after, subject in ((_DIAGNOSED_CUE, _AFTER_DIAGNOSED, None), (_HAS_CUE, _AFTER_HAS, "any"),
                                (_POSSESSIVE_CUE, _AFTER_POSSESSIVE, None), (_IS_CUE, _AFTER_IS, "person"),
                                (_TAKES_CUE, _AFTER_TAKES, "person")):
        for ((cue_start, cue_end),) in spans(cue):
            m = after.match(text, cue_end)
            if m is None or supposed(original, cue_end):
                continue
            if _ECONOMIC.match(m.group(1)) and text[cue_end:m.start(1)].strip(" \t:"):
                continue  # "recovering from the depression of 1921", "distress and depression": an economy's
            if subject and not has_subject(original, cue_start, cue_end, named=subject == "person") and not (
                    follows_a_finding(text, cue_start, (end for _, end in found))):
                continue  # "the car has", "Take 400 mg", "patients on warfarin": no one's
            kind = _MEDICINE_KIND if cue is _TAKES_CUE or _is_medicine(m.group(1)) else _CONDITION_KIND
            found.setdefault(m.span(1), kind)
            following = _NEXT_MEDICINE if kind == _MEDICINE_KIND else _NEXT_CONDITION
            while listed := following.match(text, m.end()):  # "diagnosed with autism and dyslexia"
                found.setdefault(listed.span(1), kind)
                m = listed
            if kind == _MEDICINE_KIND and (why := _FOR_CONDITION.match(text, m.end())):
                found.setdefault(why.span(1), _CONDITION_KIND)  # "prescribed methylphenidate for ADHD"
    for (start, end), in spans(_VERB_LAST_CUE, (0,)):
        state = _STATE_BEFORE.search(text, start, end)
        if state and not supposed(original, start) and has_subject(
                original, state.start(), state.start(), named=True):
            found.setdefault(state.span(), _CONDITION_KIND)
    for cue, kind in ((_FIELD_CUE, _CONDITION_KIND), (_MEDICINE_FIELD_CUE, _MEDICINE_KIND)):
        for ((_, cue_end),) in spans(cue, (0,)):
            m = _FIELD_AFTER.match(text, cue_end)
            if m and _is_value(value := m.group(1).rstrip(" \t,")):
                found.setdefault((m.start(1), m.start(1) + len(value)), kind)
    for ((start, end),) in spans(_RECORD_NUMBER):
        if sum(c.isdigit() for c in text[start:end]) >= 4:
            found.setdefault((start, end), "medical_record_number")
    for span in _lab_results(text, original, _RECORD in present) if _LAB in present else ():
        found.setdefault(span, "lab_result")
    anchors = sorted([*found, *(span for span, in spans(_RECORD, (0,)))])
    mentions = sorted(span for span, in spans(_SOMEONE, (0,)))  # "my dad", "client Leah", "Mr Gallagher"
    if anchors or mentions:
        starts = [a for a, _ in anchors]
        mention_starts = [a for a, _ in mentions]
        # near a patient record's marker (a date of birth, an age, "Pt.") or a condition already tied to
        # someone, dosed medicines and conditions need no verb ("67 ans, insuffisance cardiaque, sous
        # furosémide 40 mg")
        for regex, kind in ((_BARE_MEDICINE, _MEDICINE_KIND), (_BARE_CONDITION, _CONDITION_KIND)):
            for ((start, end),) in spans(regex):
                if supposed(original, start) or (kind == _CONDITION_KIND and (
                        _AMBIGUOUS.match(text, start) or _LABEL_AFTER.match(text, end))):
                    continue  # "aids to navigation"; a column's or a field's name ("Allergies:")
                nearby = anchors[bisect_left(starts, start - 2 * _NEAR):bisect_left(starts, end + _NEAR)]
                if kind == _MEDICINE_KIND:  # a dosed medicine near someone mentioned: "his pickup is ready - warfarin 5 mg"
                    nearby += mentions[bisect_left(mention_starts, start - 2 * _NEAR):bisect_left(mention_starts,
                                                                                                   end + _NEAR)]
                if any(start - _NEAR < b for _, b in nearby):  # (no anchor is _NEAR long)
                    found.setdefault((start, end), kind)
    for columns, kind in ((w.CONDITION_COLUMNS, _CONDITION_KIND), (w.MEDICINE_COLUMNS, _MEDICINE_KIND)):
        for span in table_cells(text, columns, _is_value):
            found.setdefault(span, kind)
    for (start, end), kind in sorted(found.items()):
        yield kind, start, end


def _lab_results(text: str, original: str, record: bool) -> Iterator[tuple[int, int]]:
    """A test's value ("HbA1c 8.4%", "LDL 172 mg/dL", "CD4 count is 612") in a text about someone's results
    (a patient's `record`, a person and a word for results, or the test owned: "my HbA1c is 8.4%"); not "Is an
    HbA1c of 6.5% high?"."""
    labs = group_spans(_LAB, text, (1,))
    if not labs:
        return
    about_someone = record or found_in(_OWNED_LAB, text) or (
        found_in(_RESULTS, text) and found_in(_PERSON_MENTION, text))
    for ((start, end),) in labs if about_someone else ():
        if any(c.isdigit() for c in text[start:end]) and not supposed(original, start):
            yield start, end


def _is_medicine(value: str) -> bool:
    return _DRUG.match(value) is not None and _CONDITION_MATCH.fullmatch(value) is None


def _is_value(value: str) -> bool:
    """A field's or a cell's value that names something: not "none", "n/a", "---"."""
    return bool(value) and not _NOTHING.match(value) and not _NO_LETTER.fullmatch(value)
