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
- being it: "I'm pregnant", "she is 12 weeks pregnant", "he's HIV positive", "ist schwanger";
- a medicine someone takes ("medication"): "my mum takes 20 mg of atorvastatin", "Dad's on
  warfarin 5 mg", "she was prescribed sertraline", "nimmt Metformin 500 mg": a verb of taking
  with its subject, then a medicine from the list, one with a common generic ending (-statin,
  -pril, -sartan, -olol, ...) or any name with a dose after it; not "What dose of ibuprofen is
  safe?" nor "Patients on warfarin should ...";
- a record's field: "Diagnosis:", "Dx:", "Medical history:", "PMH:", "Diagnose:",
  "Diagnostic :", "Diagnóstico:", "Diagnosi:", "Medications:", "Rx:", "Allergies:", its value
  up to the end of the field (not "none", "n/a", "NKDA").

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
_PERSON = (
    r"\b(?:i|he|she|they|we|i'm|he's|she's|i've|we've|they've|ich|er|sie|il|elle|ik|hij|zij|yo|él|ella|eu|ele|ela|io|lui|lei|"
    r"patient|patientin|patiente|paciente|paziente|patiënt|pt|"
    r"mum|mom|mam|dad|mother|father|grandma|grandpa|granny|nan|grandmother|grandfather|wife|husband|son|"
    r"daughter|brother|sister|partner|boyfriend|girlfriend|fiancée?|baby|aunt|uncle|papa|mama|mutter|vater|"
    r"mère|père|madre|padre|mãe|pai|moeder|vader)(?:'s|’s)?|"
    r"\b(?:my|our|his|her|their|mein|meine|mon|ma|mes|mi|mio|mia|meu|minha|mijn|onze)\s+[^\W\d_]+(?:'s|’s)?"
)
_STILL = (r"(?:(?:also|still|now|just|already|currently|is|am|are|was|were|has been|have been|had been|been|"
          r"auch|jetzt|ya|también|ora|já|ook)\s+){0,2}$")
# who has it: a person right before the verb, or (for "has" in a list: "..., hat") a comma or the start
_SUBJECT = re.compile(rf"(?i)(?:{_PERSON}|,|^)\s*{_STILL}")
_SUBJECT_PERSON = re.compile(rf"(?i)(?:{_PERSON})\s*{_STILL}")
# or someone named: "Sarah takes", "Mr Okafor is on" (not "Patients", "Adults", "You" ...)
_NAMED_SUBJECT = re.compile(rf"(?:^|[^\w'’])(?!(?:Patients|People|Adults|Children|Kids|Women|Men|Doctors|Everyone|"
                            rf"Nobody|Someone|Anyone|You|It|This|That|Who|What|Which|Many|Most|Some|Users|Athletes|"
                            rf"Pregnant|Elderly|Seniors|Teens)\b)[A-Z][a-zà-ÿ]+(?:'s|’s)?\s*{_STILL}")
_SUBJECT_WINDOW = 40
_SUBJECT_IN_CUE = ("il ", "elle ", "on ", "mon ", "ma ", "ta ", "son ", "sa ", "j'ai")
_FIELD = (r"diagnos[ie]s|diagnose|diagnostic|diagnóstico|diagnosi|dx|medical history|"
          r"medical conditions?|pmh|past medical history|krankheit|erkrankung|vorerkrankungen|antécédents|"
          r"antecedentes|anamnese|aandoening|allerg(?:y|ies|ien)|alergias?|allergie")
_MEDICINE_FIELD = (r"(?:current |regular |home )?(?:medications?|medicines|meds)|rx|prescriptions?|"
                   r"medikamente|medikation|médicaments?|traitement|medicación|medicamentos|farmaci|terapia|"
                   r"medicatie|medicijnen")

# Medicines: common ones by name (generic and brand, as people write them), the rest by a
# generic name's ending, or by the dose written after any name ("Eltroxin 100 mcg").
_DRUG_NAMES = (
    r"insulin|metformin|warfarin|lithium|aspirin|ibuprofen|paracetamol|acetaminophen|tylenol|advil|naproxen|"
    r"prednisone|prednisolone|methotrexate|levothyroxine|thyroxine|synthroid|eltroxin|ozempic|wegovy|mounjaro|"
    r"semaglutide|tirzepatide|adderall|ritalin|concerta|vyvanse|methylphenidate|xanax|valium|ativan|klonopin|"
    r"diazepam|lorazepam|alprazolam|clonazepam|prozac|zoloft|lexapro|celexa|paxil|wellbutrin|bupropion|"
    r"venlafaxine|effexor|mirtazapine|trazodone|quetiapine|seroquel|olanzapine|risperidone|aripiprazole|abilify|"
    r"clozapine|lamotrigine|lamictal|valproate|depakote|levetiracetam|keppra|carbamazepine|gabapentin|pregabalin|"
    r"lyrica|tramadol|oxycodone|codeine|morphine|fentanyl|methadone|suboxone|buprenorphine|naltrexone|naloxone|"
    r"truvada|descovy|biktarvy|prep|eliquis|xarelto|apixaban|rivaroxaban|clopidogrel|plavix|digoxin|furosemide|"
    r"spironolactone|amlodipine|bisoprolol|ramipril|lisinopril|losartan|atorvastatin|simvastatin|rosuvastatin|"
    r"lipitor|crestor|omeprazole|pantoprazole|salbutamol|albuterol|ventolin|symbicort|seretide|montelukast|"
    r"epipen|antidepressants?|antipsychotics?|antibiotics|chemo(?:therapy)?|radiotherapy|dialysis|"
    r"birth control|the pill|hrt|testosterone|estradiol|oestrogen|estrogen|progesterone|tamoxifen|letrozole|"
    r"herceptin|keytruda|humira|enbrel|stelara|isotretinoin|accutane|finasteride|minoxidil|viagra|cialis|"
    r"sildenafil|hydroxychloroquine|allopurinol|colchicine|donepezil|levodopa|sinemet|"
    r"[a-z]{2,}(?:statin|pril|sartan|olol|dipine|prazole|oxetine|azepam|azolam|cillin|mycin|cycline|floxacin|"
    r"tidine|gliptin|gliflozin|glutide|parin|xaban|gatran|semide|thiazide|triptan|codone|morphone|setron|"
    r"lukast|navir|tegravir|fovir|vudine|afil|umab|imab|inib)"
)
_DOSE = (r"\d+(?:[.,]\d+)?[ \t]?(?:mg|mcg|µg|μg|g|ml|iu|units?|puffs?|tablets?|tabs?|pills?|capsules?|"
         r"drops|mg/kg|mg/ml|milligrams?|micrograms?)\b")
_MEDICINE = (rf"(?:{_DOSE}[ \t]+(?:of[ \t]+)?)?(?:{_DRUG_NAMES})\b(?:[ \t]+{_DOSE})?|"
             rf"[^\W\d_][\w-]{{2,}}[ \t]+{_DOSE}")
# Taking it: the verb (RE2 finds them in one pass), a subject before it, the medicine after.
_TAKES = (r"tak(?:e|es|ing)|took|started(?: on)?|starting|stopped|prescribed|injects?|injecting|"
          r"nimmt|nehme|nahm|bekommt|prend|prends|pris|toma|tomo|tomaba|prende|prendo|neemt|neem|slikt")
_ON = r"(?:is|am|are|was|were|been|be)[ \t]+(?:(?:still|now|also|currently|already)[ \t]+)?on"
_ON_AFTER_APOSTROPHE = r"(?:s|m|re)[ \t]+(?:(?:been|still|now|also|currently|already)[ \t]+)?on"
_TAKES_CUE = compile_linear(rf"(?i)(?:^|[^\pL'’])(?:{_TAKES}|{_ON})|['’](?:{_ON_AFTER_APOSTROPHE})", longest=True)
_AFTER_TAKES = re.compile(rf"(?i)[ \t]+(?:(?:a|an|the|some|daily|his|her|their|my|low[- ]dose|high[- ]dose)[ \t]+)?"
                          rf"({_MEDICINE})(?![^\W\d_])")
# Being it: "is pregnant", "'s HIV positive", "ist schwanger" (the subject checked as for having).
_STATES = (r"pregnant|hiv[- ]?positive|hiv\+|diabetic|epileptic|autistic|bipolar|schizophrenic|anorexic|"
           r"bulimic|asthmatic|suicidal|infertile|schwanger|hiv-positiv|enceinte|séropositi(?:f|ve)|embarazada|"
           r"incinta|sieropositiv[oa]|grávida|zwanger")
_IS_CUE = compile_linear(r"(?i)(?:^|[^\pL'’])(?:is|am|are|was|were|ist|bin|war|est|suis|était|está|estoy|estaba|"
                         r"estou|è|sono|era|ben)|['’](?:s|m|re)", longest=True)
_AFTER_IS = re.compile(rf"(?i)[ \t]+(?:(?:now|currently|also|still|already|jetzt|actuellement|ahora|ora)[ \t]+)?"
                       rf"(?:(?:\d+|a few|two|three|four|five|six|seven|eight|nine)[ \t]+(?:weeks?|months?)[ \t]+)?"
                       rf"({_STATES})(?![^\W\d_])")

_ARTICLE = r"(?:a|an|the|une?|de|el|la|il|lo|o|uma?|een|der|die|das|eine?r?)[ \t]+"
# Where a cue ends, in one linear pass (RE2) each; what follows is matched from there (Python's re, anchored).
# (One RE2 pattern of cue and condition together outgrew RE2's DFA memory: 0.5 ms on 1 KB.)
_DIAGNOSED_CUE = compile_linear(rf"(?i)(?:^|[^\pL])(?:{_DIAGNOSED})")
_HAS_CUE = compile_linear(rf"(?i)(?:^|[^a-z'])(?:{_HAS})")
_FIELD_CUE = compile_linear(rf"(?i)(?:^|[^\pL])(?:{_FIELD})[ \t]*[:=]")
_MEDICINE_FIELD_CUE = compile_linear(rf"(?i)(?:^|[^\pL])(?:{_MEDICINE_FIELD})[ \t]*[:=]")
# a field's value that says there is nothing: "Allergies: none", "Meds: n/a", "NKDA"
_NOTHING = re.compile(r"(?i)(?:none|nil|n/?a|-+|unknown|nkda|nka|no known\b.*|not applicable|keine|aucune?|"
                      r"ninguna?|nessuna?|nenhuma?|geen)(?:[ \t]+(?:known|reported|noted|bekannt|connue?s?))?[ \t]*$")
# a condition named as a thing's kind is no one's: "cancer coverage", "diabetes research"
_NOT_AFTER = (r"(?![^\W\d_]| (?:coverage|insurance|screening|research|awareness|risk|policy|care|cent(?:er|re)|ward|"
              r"unit|drugs?|medications?|treatments?|tests?|testing|patients|charity|foundation|clinic|specialist)\b)")
_AFTER_DIAGNOSED = re.compile(rf"(?i)[ \t:]+(?:{_ARTICLE})?(?:[^\W\d_]+[ \t]+){{0,2}}?({_CONDITION}){_NOT_AFTER}")
_AFTER_HAS = re.compile(rf"(?i)[ \t]+(?:{_ARTICLE})?({_CONDITION}){_NOT_AFTER}")
_FIELD_AFTER = re.compile(r"[ \t]*([^\n|;.]{2,80})")
# a word for an economy's slump too: a person's only right after the cue ("suffers from depression")
_ECONOMIC = re.compile(r"(?i)d[eé]pres(?:sion|ión|sione|são|sie)\b")
# "How do I know if I have diabetes?", "if I were diagnosed with cancer": a supposition, not a record.
_SUPPOSED = re.compile(r"(?i)\b(?:if|whether|might|could|would|should|can|may|when|how|what if|suppose)\b"
                       r"[^.?!\n]*$")


def find_health(text: str) -> Iterator[Span]:
    """Each condition, diagnosis or medicine the text ties to a person, as ("health_condition" or
    "medication", start, end)."""
    found: dict[tuple[int, int], str] = {}
    for cue, after, kind in ((_DIAGNOSED_CUE, _AFTER_DIAGNOSED, "health_condition"),
                             (_HAS_CUE, _AFTER_HAS, "health_condition"),
                             (_IS_CUE, _AFTER_IS, "health_condition"),
                             (_TAKES_CUE, _AFTER_TAKES, "medication")):
        for cue_start, cue_end in match_spans(cue, text):
            m = after.match(text, cue_end)
            if m is None or _SUPPOSED.search(text, max(0, cue_end - 80), cue_end):
                continue
            if _ECONOMIC.match(m.group(1)) and text[cue_end:m.start(1)].strip(" \t:"):
                continue  # "recovering from the depression of 1921", "distress and depression": an economy's
            named = cue is _TAKES_CUE or cue is _IS_CUE
            if cue is not _DIAGNOSED_CUE and not _has_subject(text, cue_start, cue_end, named=named):
                continue  # "the car has", "this app has", "patients on warfarin": no one's
            found.setdefault(m.span(1), kind)
    for cue, kind in ((_FIELD_CUE, "health_condition"), (_MEDICINE_FIELD_CUE, "medication")):
        for _, cue_end in match_spans(cue, text):
            m = _FIELD_AFTER.match(text, cue_end)
            if m and (value := m.group(1).rstrip(" \t,")) and not _NOTHING.match(value):
                found.setdefault((m.start(1), m.start(1) + len(value)), kind)
    for (start, end), kind in sorted(found.items()):
        yield kind, start, end


def _has_subject(text: str, cue_start: int, cue_end: int, *, named: bool = False) -> bool:
    """Whether a person has it: the French cues hold their subject ("il a", "ma mère a", "j'ai"); the
    others need one right before the verb ("my dad has", "I have", "..., hat"). `named`: taking a
    medicine or being pregnant needs a person ("Take 400 mg" is advice), who may be named ("Sarah")."""
    verb = cue_start + (text[cue_start] not in "'’" and not text[cue_start].isalpha())
    if text[verb:cue_end].lower().startswith(_SUBJECT_IN_CUE):
        return True
    window = max(0, verb - _SUBJECT_WINDOW)
    if not named:
        return _SUBJECT.search(text, window, verb) is not None
    return bool(_SUBJECT_PERSON.search(text, window, verb) or _NAMED_SUBJECT.search(text, window, verb))
