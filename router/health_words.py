"""The words router/health.py reads a person's health by: conditions, medicines and doses, the
verbs and cues that tie them to someone, the fields and columns of medical records. Regex
fragments (matched case-insensitively, whole words), data only, kept apart from the rules.
"""

from __future__ import annotations

# Conditions people write about themselves and their family, in English and the six other
# languages of the detectors.
CONDITIONS = (
    r"(?:type[ -]?[12i]{1,2} |gestational )?diabet(?:es|ic|e)(?: type [12])?|prediabetes|hypertension|high blood pressure|asthma|copd|"
    r"(?:[^\W\d_]+ )?cancer|leuk(?:a)?emia|lymphoma|melanoma|tumou?r|hiv|aids|hepatitis(?: [abc])?|tuberculosis|"
    r"covid(?:-?19)?|long covid|pneumonia|(?:chest|kidney|urinary tract|ear) infection|sepsis|"
    r"(?:major |post-?natal |postpartum )?depression|(?:generali[sz]ed )?anxiety(?: disorder)?|panic (?:disorder|attacks)|"
    r"ansiedad|ansia|angoisse|anxi[ée]t[ée]|angststörung|"
    r"(?:poly)?arthrite(?: rhumato[iï]de)?|artrite(?: reumato[ij]de)?|h[ée]patite|epatite|bronchite|bronquitis|"
    r"gastrite|gastritis|m[ée]ningite|meningitis|"
    r"bipolar(?: (?:i{1,2}|[12]))?(?: disorder)?|schizophrenia|c?ptsd|ocd|adhd|autism|asperger(?:'?s)?|"
    r"suicidal (?:ideation|thoughts)|self[- ]harm(?:ing)?|burn-?out|insomnia|"
    r"dementia|alzheimer(?:'?s)?(?: disease)?|parkinson(?:'?s)?(?: disease)?|"
    r"epilepsy|multiple sclerosis|motor neurone disease|stroke|(?:congestive )?heart failure|heart disease|"
    r"coronary artery disease|atrial fibrillation|a-?fib|angina|heart attack|arrhythmia|"
    r"chlamydia|gonorrh?o?ea|syphilis|herpes|hpv|endometriosis|pcos|infertility|miscarriage|"
    r"anorexia(?: nervosa)?|bulimia(?: nervosa)?|eating disorder|alcoholism|addiction|substance use disorder|"
    r"migraines?|(?:[^\W\d_]+ )?allerg(?:y|ies)|"
    r"(?:rheumatoid |psoriatic |osteo)?arthritis|lupus|crohn(?:'?s)?(?: disease)?|ulcerative colitis|coeliac disease|"
    r"celiac disease|ibs|(?:chronic )?kidney disease|ckd|cirrhosis|hypothyroidism|hyperthyroidism|sleep apno?ea|"
    r"alcohol use disorder|opioid use disorder|vorhofflimmern|avc(?: isqu[eê]mico| isch[ée]mique)?|ivf|"
    r"(?:alcohol |drug |addiction )?rehab(?: program(?:me)?)?|manic episode|(?:major )?depressive episode|"
    r"depressive[nr]? episode|(?:hip|knee) replacement|dyslexia|dyspraxia|autism spectrum disorder|asd|"
    r"rupture des ligaments crois[ée]s|torn acl|[a-zäöü]{3,}(?:karzinom|carcinoma|itis|opathy|opathie)|"
    r"glaucoma|osteoporosis|fibromyalgia|chronic fatigue syndrome|psoriasis|eczema|gout|sickle cell(?: disease)?|"
    r"cystic fibrosis|down syndrome|cerebral palsy|"
    # German, French, Spanish, Italian, Portuguese, Dutch
    r"zucker|krebs|demenz|epilepsie|herzinsuffizienz|bluthochdruck|schlaganfall|depressionen|angststörung|"
    r"diabète|dépression|épilepsie|insuffisance cardiaque|maladie de (?:parkinson|crohn|lyme|alzheimer)|"
    r"sclérose en plaques|troubles? (?:anxieux|bipolaire|obsessionnel)(?: généralisé)?|"
    r"cáncer|depresión|epilepsia|insuficiencia cardíaca|hipertensión|esclerosis múltiple|esquizofrenia|"
    r"diabete|cancro|depressione|epilessia|sclerosi multipla|ipertensione|schizofrenia|"
    r"câncer|depressão|esclerose múltipla|hipertensão|esquizofrenia|"
    r"suikerziekte|kanker|depressie|hartfalen|"
    r"(?:ziekte van|doença de|enfermedad de|malattia di|morbus|maladie de) (?:parkinson|alzheimer|crohn|lyme)"
)
QUALIFIER = (r"(?:(?:poorly|well|badly|un)?-?controlled |severe |mild |moderate |chronic |acute |early[- ]onset |"
             r"late[- ]stage |stage [0-4iv]+ |metastatic |advanced |terminal |recurrent |suspected |confirmed |"
             r"passive |active |treatment[- ]resistant |obstructive |[a-z]+-(?:acquired|related|induced|dependent|"
             r"resistant|onset) )*")
# what follows a condition and is part of it: "COPD exacerbation", "a Crohn's flare-up"
AFTER_CONDITION = r"(?: (?:exacerbation|flare(?:-up)?|relapse|episode))?"

# Cues after which a condition is someone's, with no subject needed.
DIAGNOSED = (
    r"diagnosed with|diagnosis of|suffers from|suffering from|living with|lives with|history of|hx of|"
    r"tested positive for|being treated for|treated for|recovering from|in remission from|admitted (?:with|for)|"
    r"diagnosis (?:is|was)|dealing with|struggling with|in recovery from|(?:sick )?leave for|off sick with|"
    r"de baja por|krankgeschrieben wegen|in malattia per|en arrêt maladie pour|"
    r"presents with|presented with|presenting with|complains of|c/o|"
    r"hospitali[sz]ed (?:with|for)|discharged (?:[\pL'’]+ ){0,5}with|came down with|"
    r"diagnostiziert|leidet an|leidet unter|erkrankt an|diagnostiqué(?:e)? (?:avec|d'une?)|atteint(?:e)? d(?:e|'une?)|"
    r"souffre d(?:e|'une?)|suivie? pour|en arrêt (?:maladie )?pour|"
    r"diagnosticad[oa] con|padece(?: de)?|sufre de|diagnosticat[oa] con|soffre di|"
    r"diagnosticad[oa] com|sofre de|gediagnosticeerd met|lijdt aan"
)
# Having it: a verb whose subject is checked before it. French "a" only after its subject: it is
# English's article.
HAS = (r"has|have|had|'s got|'ve got|reports|reported|habe|hat|tengo|tiene|tenho|tem|heeft|heb|ha|ho|j'ai|battling|fighting|"
       r"(?:il|elle|on) a|(?:mon|ma|ta|son|sa) [a-zà-ÿ]+ a")
# Someone's: a possessive right before a condition or a medicine ("her OCD", "my Adderall"); not a
# word with other senses alone ("my stroke", "our anxiety for", "our depression": an economy's).
OWNED_ONLY_QUALIFIED = r"stroke|anxiety|d[eé]pres(?:sion|ión|sione|são|sie)|addiction"
POSSESSIVE = (r"my|his|her|their|our|mein(?:e[mnrs]?)?|sein(?:e[mnrs]?)?|ihr(?:e[mnrs]?)?|mon|ma|mes|son|sa|ses|"
              r"su|sus|mi|mis|seu|sua|zijn|haar|mijn")

# Being it: "is pregnant", "'s HIV positive", "ist schwanger", "allergic to penicillin".
STATES = (r"pregnant|hiv[- ]?positive|hiv\+|diabetic|epileptic|autistic|bipolar|schizophrenic|anorexic|"
          r"bulimic|asthmatic|suicidal|infertile|in (?:therapy|rehab|remission)|"
          r"allergic to [\w-]+|allergique (?:à|aux?) [\w-]+|al[eé]rgic[oa] (?:a|al) [\w-]+|allergisch (?:gegen|voor) [\w-]+|"
          r"schwanger|in der \d+\.[ \t]*(?:schwangerschaftswoche|ssw)|hiv-positiv|enceinte|séropositi(?:f|ve)|"
          r"embarazada|incinta|sieropositiv[oa]|grávida|zwanger|hiv-positief")
IS = (r"is|am|are|was|were|ist|bin|war|est|suis|était|está|estoy|estaba|estou|è|sono|era|ben")
# German puts the verb last: "dass er HIV-positiv ist".
VERB_LAST = r"ist|bin|sind|war|bist"

# Medicines: common ones by name (generic and brand, as people write them), the rest by a generic
# name's stem (-statin, -pril, ...; "atorvastatina", "omeprazol" too), or by the dose after any name.
DRUG_NAMES = (
    r"(?:insulin|metformin|warfarin|lithium|aspirin|ibuprofen|paracetamol|acetaminophen|tylenol|advil|naproxen|"
    r"prednisone|prednisolone|methotrexate|levothyroxine|thyroxine|synthroid|eltroxin|ozempic|wegovy|mounjaro|"
    r"semaglutide|tirzepatide|adderall|ritalin|concerta|vyvanse|methylphenidate|xanax|valium|ativan|klonopin|"
    r"diazepam|lorazepam|alprazolam|clonazepam|prozac|zoloft|lexapro|celexa|paxil|wellbutrin|bupropion|"
    r"venlafaxine|effexor|mirtazapine|trazodone|quetiapine|seroquel|olanzapine|risperidon[ea]?|aripiprazole|abilify|"
    r"clozapine|lamotrigine|lamictal|valproate|depakote|levetiracetam|keppra|carbamazepine|gabapentin|pregabalin|"
    r"lyrica|tramadol|oxycodone|codeine|morphine|fentanyl|methadone|suboxone|buprenorphine|naltrexone|naloxone|"
    r"truvada|descovy|biktarvy|prep|eliquis|xarelto|clopidogrel|plavix|digoxin|spironolactone|"
    r"lipitor|crestor|salbutamol|albuterol|ventolin|symbicort|seretide|epipen(?: jr)?|"
    r"antidepressants?|antipsychotics?|antibiotics|chemo(?:therapy)?|radiotherapy|dialysis|"
    r"birth control|the pill|hrt|testosterone|estradiol|oestrogen|estrogen|progesterone|tamoxifen|letrozole|"
    r"herceptin|keytruda|humira|enbrel|stelara|isotretinoin|accutane|finasteride|minoxidil|viagra|cialis|"
    r"hydroxychloroquine|allopurinol|colchicine|donepezil|levodopa|carbidopa|sinemet|"
    r"(?:es)?citalopram|fluvoxamin|sertralin|amoxicillin|ceftriaxon|cef[a-z]{4,}|omeprazol)(?:e|a|o|um)?|"
    r"[a-zà-ÿ]{2,}(?:statin|pril|sartan|olol|dipin|prazol|oxetin|azepam|azolam|cillin|mycin|cyclin|floxacin|"
    r"tidin|gliptin|gliflozin|glutid|parin|xaban|gatran|s[eé]mid|thiazid|triptan|codon|morphon|setron|"
    r"lukast|navir|tegravir|fovir|vudin|afil|umab|imab|inib)(?:e|a|o|um)?"
)
_AMOUNT = r"\d+(?:[.,]\d+)?(?:/\d+(?:[.,]\d+)?)?[ \t]?"
_UNITS = r"mg|mcg|µg|μg|ml|iu|units?|mg/kg|mg/ml|milligrams?|micrograms?"
# a medicine's dose ("20 mg", "100/25 mg", "2 puffs"); a bare unknown name needs a unit of weight or volume
DOSE = rf"{_AMOUNT}(?:{_UNITS}|g|puffs?|tablets?|tabs?|pills?|capsules?|drops)\b"
DOSE_OF_ANY = rf"{_AMOUNT}(?:{_UNITS})\b"
OF = r"of|de|di|do|da|van|von"
# Taking it: the verb, then (its subject checked before) the medicine.
TAKES = (r"tak(?:e|es|ing)|took|started(?: on)?|starting|stopped|prescribed|injects?|injecting|"
         r"(?:started|put|switched) (?:him|her|me|them|us) on|"
         r"nimmt|nehme|nahm|bekommt|prend|prends|pris|toma|tomo|tomaba|prende|prendo|neemt|neem|slikt")
ON = r"(?:is|am|are|was|were|been|be)[ \t]+(?:(?:still|now|also|currently|already)[ \t]+)?on"
ON_AFTER_APOSTROPHE = r"(?:s|m|re)[ \t]+(?:(?:been|still|now|also|currently|already)[ \t]+)?on"
# "20 mg of atorvastatin and 5 mg of amlodipine": the next medicine of a list
AND = r"(?:[ \t]*,[ \t]*|[ \t]+)(?:and|plus|y|e|und|et|en|&)?[ \t]*"

# Fields of a record whose value is a condition, or a medicine.
FIELDS = (r"diagnos[ie]s|diagnose|diagnostic|diagnóstico|diagnosi|dx|hx|pmhx?|medical history|medical(?: notes?| info)?|"
          r"health notes?|medical conditions|befund|"
          r"medical conditions?|past medical history|comorbidit(?:y|ies)|krankheit|erkrankung|vorerkrankungen|"
          r"antécédents|antecedentes|anamnese|aandoening|allerg(?:y|ies|ien)|alergias?|allergie")
MEDICINE_FIELDS = (r"(?:current |regular |home )?(?:medications?|medicines|meds)|rx|prescriptions?|treatment|"
                   r"medikamente|medikation|behandlung|médicaments?|traitement|medicación|medicamentos|tratamiento|"
                   r"trattamento|tratamento|farmaci|terapia|medicatie|medicijnen|behandeling")
# the same as a table's columns (letters only, lower case)
CONDITION_COLUMNS = frozenset("""
diagnosis diagnoses dx diagnose diagnostic diagnostico diagnosi medicalcondition medicalconditions medicalhistory
pmh allergies allergy allergien alergias comorbidities
""".split())
MEDICINE_COLUMNS = frozenset("""
medication medications meds currentmedications medicine medicines prescription prescriptions rx drug drugs
medikamente medikation medicamentos medicacion medicaments farmaci medicatie
""".split())
# a field's value that says there is nothing: "Allergies: none", "Meds: n/a", "NKDA"
NOTHING = (r"(?:none|nil|n/?a|-+|unknown|nkda|nka|no known\b.*|not applicable|keine|aucune?|ninguna?|nessuna?|"
           r"nenhuma?|geen)(?:[ \t]+(?:known|reported|noted|bekannt|connue?s?))?")
# a condition named as a thing's kind is no one's: "cancer coverage", "diabetes research"
THING_AFTER = (r"coverage|insurance|screening|research|awareness|risk|policy|care|cent(?:er|re)|ward|unit|drugs?|"
               r"medications?|treatments?|tests?|testing|patients|charity|foundation|clinic|specialist|rates?|levels|"
               r"cases|statistics|prevalence|epidemic|outbreak")
# Labels of a patient's record number: "MRN 00734192", "patient no. KNH-0048271", "Fallnummer 2024-5531"
RECORD_NUMBER_LABELS = (r"mrn|medical record (?:number|no\.?|#)|patient (?:id|no\.?|number|#)|hospital (?:number|no\.?)|"
                        r"chart (?:number|no\.?|#)|case (?:number|no\.?) at|fallnummer|patientennummer|patienten-id|"
                        r"n° de dossier|numéro de dossier|número de historia(?: clínica)?|nhc|numero di cartella|"
                        r"número do prontuário|prontuário|patiëntnummer")
# Laboratory tests and vital signs whose value is someone's result ("HbA1c 8.4%", "LDL 172 mg/dL")
LAB_TESTS = (r"hba1c|a1c|(?:cholesterol |colesterolo |cholestérol )?(?:ldl|hdl)|(?:total )?cholesterol|colesterol(?:o)?|"
             r"cholest[ée]rol|triglycerides?|(?:fasting )?(?:blood )?glucose|blood sugar|glukose|glukoza(?: na czczo)?|"
             r"glucosa|glicemia|glyc[ée]mie|glucemia|psa|tsh|ft4|ft3|creatinine|kreatinin|créatinine|creatinina|egfr|"
             r"alt|ast|ggt|h[ae]moglobin|hämoglobin|h[ée]moglobine|hemoglobina|emoglobina|wbc|white (?:blood )?cell count|"
             r"platelets?|crp|esr|inr|vitamin d|ferritin[ae]?|ferritine|cd4(?: count)?|viral load|hiv-1 rna|"
             r"oxygen saturation|spo2|blood pressure|bp|heart rate|bmi|serum (?:potassium|sodium|iron)|b12|troponin|"
             r"pression art[ée]rielle|tension|blutdruck|presi[óo]n(?: arterial)?|pressione(?: arteriosa)?|"
             r"press[ãa]o(?: arterial)?|bloeddruk")
LAB_UNITS = (r"%|mg/dl|mmol/l|mmol/mol|ng/ml|ng/dl|pg/ml|µ?g/l|g/dl|g/l|m?u[il]?/l|µ?iu/ml|m?ui/l|mui/ml|copies/ml|"
             r"cells/mm3|/mm3|/µl|/ul|x ?10\^?9/l|bpm|mmhg|kg/m2|u/l|µmol/l|umol/l|ml/min(?:/1\.73 ?m2)?|iu/l")
# A text about someone's results: "results", "bloodwork", "esami del sangue", "wyniki", "Ergebnisse"
RESULTS_WORDS = (r"results?|bloodwork|blood ?tests?|blood ?work|labs?|lab (?:report|values)|panel|report|esami|"
                 r"analisi|ergebnisse|blutwerte|laborwerte|r[ée]sultats|bilan sanguin|resultados|an[áa]lisis|wyniki|"
                 r"uitslagen|bloedwaarden|exames")
# ... and about a person: a relation, a possessive, a patient, an honorific
PERSON_MENTION = (r"\b(?:my|his|her|their|mein(?:e[smnr]?)?|sein(?:e[smnr]?)?|ihr(?:e[smnr]?)?|mon|ma|mes|son|sa|ses|mi|mis|su|sus|mio|mia|"
                  r"meu|minha|mijn|zijn|haar)\s+\pL+|\bpatient|\bpaciente|\bpaziente|\bpatiënt|\bclient|"
                  r"\b(?:mr|mrs|ms|dr|herr|frau|mme|sr|sra|sig)\.?\s+\p{Lu}|\btaty\b|\bmamy\b|\b(?:dad|mum|mom)['’]s\b")
# A patient's record (a date of birth, a record number, an age, "Pt."): its dosed medicines and its
# conditions count with no verb ("Pt. Harriet O., DOB ..., admitted with pneumonia ... amoxicillin 1 g TID";
# "M. Lenoir, 67 ans, insuffisance cardiaque, sous furosémide 40 mg"); so do they in a text that already
# ties a condition to someone. The word "patient" alone is no record ("a general question, no patient").
RECORD_WORDS = (r"pt\.|mrn|dob|d\.o\.b\.?|geb\.|née? le|nhs (?:number|no)|"
                r"[0-9]{1,3}[ -]?(?:ans|años|anni|jahre|jaar|anos|years? old|y/?o)|[0-9]{1,3}(?-i:[MF])")
