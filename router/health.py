"""Someone's health: a condition the text says a person has, or a diagnosis field's value.

A question about an illness ("What are the symptoms of diabetes?", "Can ADHD start in adults?")
is no one's record and must reach the cloud whole; "my son has been diagnosed with ADHD",
"Diagnosis: Type 2 diabetes" and "Mein Vater hat Parkinson" are. So a condition counts only
where the words before it tie it to a person:

- a diagnosis or history: "diagnosed with", "diagnosis of", "suffers from", "living with",
  "history of", "tested positive for", "being treated for" (and in German, French, Spanish,
  Italian, Portuguese, Dutch), the condition within a few words of it;
- having it: "I have", "my dad has", "the patient has", "hat", "il a", "tiene", "tem", "heeft",
  with a condition from the list right after (not "cancer coverage"), unless a question makes
  it a supposition ("How do I know if I have diabetes?");
- a record's field: "Diagnosis:", "Dx:", "Medical history:", "PMH:", "Diagnose:",
  "Diagnostic :", "Diagnóstico:", "Diagnosi:", its value up to the end of the field.

The span is the condition with the words that qualify it ("poorly controlled type 1 diabetes").
Runs on the text view (router.normalize): RE2 finds the cues, each followed up from there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from router.linear_regex import compile_linear, match_spans

Span = tuple[str, int, int]

# Conditions people write about themselves and their family, in the seven languages of the other
# detectors (matched case-insensitively, whole words).
_CONDITIONS = (
    r"(?:type[ -]?[12i]{1,2} |gestational )?diabet(?:es|ic|e)|prediabetes|hypertension|high blood pressure|asthma|copd|"
    r"(?:[^\W\d_]+ )?cancer|leuk(?:a)?emia|lymphoma|melanoma|tumou?r|hiv|aids|hepatitis(?: [abc])?|tuberculosis|"
    r"covid(?:-?19)?|long covid|pneumonia|(?:chest|kidney|urinary tract|ear) infection|sepsis|"
    r"(?:major |post-?natal |postpartum )?depression|anxiety(?: disorder)?|panic disorder|bipolar(?: disorder)?|"
    r"schizophrenia|ptsd|ocd|adhd|autism|asperger(?:'?s)?|dementia|alzheimer(?:'?s)?(?: disease)?|parkinson(?:'?s)?(?: disease)?|"
    r"epilepsy|multiple sclerosis|motor neurone disease|stroke|(?:congestive )?heart failure|heart disease|"
    r"coronary artery disease|atrial fibrillation|a-?fib|angina|heart attack|arrhythmia|"
    r"chlamydia|gonorrh?o?ea|syphilis|herpes|hpv|endometriosis|pcos|infertility|miscarriage|"
    r"anorexia|bulimia|eating disorder|alcoholism|addiction|substance use disorder|migraines?|"
    r"(?:rheumatoid |psoriatic |osteo)?arthritis|lupus|crohn(?:'?s)?(?: disease)?|ulcerative colitis|coeliac disease|"
    r"celiac disease|ibs|(?:chronic )?kidney disease|ckd|cirrhosis|hypothyroidism|hyperthyroidism|sleep apnea|"
    r"glaucoma|osteoporosis|fibromyalgia|chronic fatigue syndrome|psoriasis|eczema|gout|sickle cell(?: disease)?|"
    r"cystic fibrosis|down syndrome|cerebral palsy|"
    # German, French, Spanish, Italian, Portuguese, Dutch
    r"zucker|krebs|demenz|epilepsie|herzinsuffizienz|bluthochdruck|schlaganfall|depressionen|"
    r"diabète|dépression|épilepsie|insuffisance cardiaque|maladie de (?:parkinson|crohn|lyme)|sclérose en plaques|"
    r"cáncer|depresión|epilepsia|insuficiencia cardíaca|hipertensión|esclerosis múltiple|"
    r"diabete|cancro|depressione|epilessia|sclerosi multipla|ipertensione|"
    r"câncer|depressão|esclerose múltipla|hipertensão|"
    r"suikerziekte|kanker|depressie|hartfalen"
)
_QUALIFIER = r"(?:(?:poorly|well|badly|un)?-?controlled |severe |mild |moderate |chronic |acute |early[- ]onset |" \
             r"late[- ]stage |stage [0-4iv]+ |metastatic |advanced |terminal |recurrent |suspected |confirmed )*"
_CONDITION = rf"{_QUALIFIER}(?:{_CONDITIONS})"
_DIAGNOSED = (
    r"diagnosed with|diagnosis of|suffers from|suffering from|living with|lives with|history of|hx of|"
    r"tested positive for|being treated for|treated for|recovering from|in remission from|admitted (?:with|for)|"
    r"diagnosis (?:is|was)|"
    r"hospitali[sz]ed (?:with|for)|discharged (?:[\pL'’]+ ){0,5}with|came down with|"
    r"diagnostiziert|leidet an|leidet unter|erkrankt an|diagnostiqué(?:e)? (?:avec|d'une?)|atteint(?:e)? d(?:e|'une?)|"
    r"souffre d(?:e|'une?)|diagnosticad[oa] con|padece(?: de)?|sufre de|diagnosticat[oa] con|soffre di|"
    r"diagnosticad[oa] com|sofre de|gediagnosticeerd met|lijdt aan"
)
# Having it: a verb (one linear pass finds them; French "a" only after its subject, it is English's article),
# then a subject right before it, checked from there.
_HAS = (r"has|have|had|'s got|'ve got|habe|hat|tengo|tiene|tenho|tem|heeft|heb|ha|ho|j'ai|battling|fighting|"
        r"(?:il|elle|on) a|(?:mon|ma|ta|son|sa) [a-zà-ÿ]+ a")
_SUBJECT = re.compile(
    r"(?i)(?:\b(?:i|he|she|they|we|i'm|he's|she's|ich|er|sie|il|elle|ik|hij|zij|yo|él|ella|eu|ele|ela|io|lui|lei|"
    r"patient|patientin|patiente|paciente|paziente|patiënt)|"
    r"\b(?:my|our|his|her|their|mein|meine|mon|ma|mes|mi|mio|mia|meu|minha|mijn|onze)\s+[^\W\d_]+|,|^)\s*"
    r"(?:(?:also|still|now|just|already|auch|jetzt|ya|también|ora|já|ook)\s+)?$")
_SUBJECT_WINDOW = 40
_SUBJECT_IN_CUE = ("il ", "elle ", "on ", "mon ", "ma ", "ta ", "son ", "sa ", "j'ai")
_FIELD = (r"diagnos[ie]s|diagnose|diagnostic|diagnóstico|diagnosi|dx|medical history|"
          r"medical conditions?|pmh|past medical history|krankheit|erkrankung|vorerkrankungen|antécédents|"
          r"antecedentes|anamnese|aandoening")

_ARTICLE = r"(?:a|an|the|une?|de|el|la|il|lo|o|uma?|een|der|die|das|eine?r?)[ \t]+"
# Where a cue ends, in one linear pass (RE2) each; what follows is matched from there (Python's re, anchored).
# (One RE2 pattern of cue and condition together outgrew RE2's DFA memory: 0.5 ms on 1 KB.)
_DIAGNOSED_CUE = compile_linear(rf"(?i)(?:^|[^\pL])(?:{_DIAGNOSED})")
_HAS_CUE = compile_linear(rf"(?i)(?:^|[^a-z'])(?:{_HAS})")
_FIELD_CUE = compile_linear(rf"(?i)(?:^|[^\pL])(?:{_FIELD})[ \t]*[:=]")
# a condition named as a thing's kind is no one's: "cancer coverage", "diabetes research"
_NOT_AFTER = (r"(?![^\W\d_]| (?:coverage|insurance|screening|research|awareness|risk|policy|care|cent(?:er|re)|ward|"
              r"unit|drugs?|medications?|treatments?|tests?|testing|patients|charity|foundation|clinic|specialist)\b)")
_AFTER_DIAGNOSED = re.compile(rf"(?i)[ \t:]+(?:{_ARTICLE})?(?:[^\W\d_]+[ \t]+){{0,2}}?({_CONDITION}){_NOT_AFTER}")
_AFTER_HAS = re.compile(rf"(?i)[ \t]+(?:{_ARTICLE})?({_CONDITION}){_NOT_AFTER}")
_FIELD_AFTER = re.compile(r"[ \t]*([^\n|;.]{2,80})")
# "How do I know if I have diabetes?", "if I were diagnosed with cancer": a supposition, not a record.
_SUPPOSED = re.compile(r"(?i)\b(?:if|whether|might|could|would|should|when|how|what if|suppose)\b[^.?!\n]*$")


def find_health(text: str) -> Iterator[Span]:
    """Each condition or diagnosis the text ties to a person, as ("health_condition", start, end)."""
    found: set[tuple[int, int]] = set()
    for cue, after in ((_DIAGNOSED_CUE, _AFTER_DIAGNOSED), (_HAS_CUE, _AFTER_HAS)):
        for cue_start, cue_end in match_spans(cue, text):
            m = after.match(text, cue_end)
            if m is None or _SUPPOSED.search(text, max(0, cue_end - 80), cue_end):
                continue
            if cue is _HAS_CUE and not _has_subject(text, cue_start, cue_end):
                continue  # "the car has", "this app has": no one's
            found.add(m.span(1))
    for _, cue_end in match_spans(_FIELD_CUE, text):
        m = _FIELD_AFTER.match(text, cue_end)
        if m and (value := m.group(1).rstrip(" \t,")):
            found.add((m.start(1), m.start(1) + len(value)))
    for start, end in sorted(found):
        yield "health_condition", start, end


def _has_subject(text: str, cue_start: int, cue_end: int) -> bool:
    """Whether a person has it: the French cues hold their subject ("il a", "ma mère a", "j'ai"); the
    others need one right before the verb ("my dad has", "I have", "..., hat")."""
    verb = cue_start + (not text[cue_start].isalpha())
    if text[verb:cue_end].lower().startswith(_SUBJECT_IN_CUE):
        return True
    return _SUBJECT.search(text, max(0, verb - _SUBJECT_WINDOW), verb) is not None
