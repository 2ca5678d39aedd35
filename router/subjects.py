"""Who a sentence is about: the person right before a verb ("my dad has", "Sarah takes", "she is"), for
the detectors that count a word only when the text ties it to someone (router/health.py,
router/special_categories.py). "Patients on warfarin should ..." and "Take 400 mg" name no one, and a
question or a supposition ("How do I know if I have diabetes?") is no one's record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# A person right before the verb ("my dad", "she", "the patient"), perhaps named after it ("Mi
# padre, Ernesto Villalobos, toma"). Casual spellings too ("ive had", "shes").
PERSON = (
    r"\b(?:i|he|she|they|we|je|i'm|he's|she's|i've|we've|they've|ive|im|shes|hes|ich|er|sie|il|elle|ik|hij|zij|yo|él|"
    r"ella|eu|ele|ela|io|lui|lei|patient|patientin|patiente|paciente|paziente|patiënt|pt|client|"
    r"mum|mom|mam|dad|mother|father|grandma|grandpa|granny|nan|grandmother|grandfather|wife|husband|son|"
    r"daughter|brother|sister|partner|boyfriend|girlfriend|gf|bf|fiancée?|baby|aunt|uncle|papa|mama|mutter|vater|"
    r"mère|père|madre|padre|mãe|pai|moeder|vader)(?:'s|’s)?|"
    r"\b(?:my|our|his|her|their|mein|meine|mon|ma|mes|mi|mio|mia|meu|minha|mijn|onze)\s+[^\W\d_]+(?:-[^\W\d_]+)*(?:'s|’s)?"
    r"(?:,?\s+[A-Z][\w'’-]+(?:\s+(?:[A-Z][\w'’-]+|van|der|den|de|da|di|von|le|la|del|dos|bin|binti)){0,3}"
    r"(?:\s+\([0-9]{1,3}\))?,?)?"
)
STILL = (r"(?:(?:also|still|now|just|already|currently|recently|finally|is|am|are|was|were|has been|have been|"
         r"had been|been|auch|jetzt|ya|también|ora|já|ook)\s+){0,2}$")
# Not someone: the plural and generic subjects of advice ("Patients on warfarin", "Adults take").
NOT_A_SUBJECT = (r"Patients|People|Adults|Children|Kids|Women|Men|Doctors|Everyone|Nobody|Someone|Anyone|You|It|"
                 r"This|That|Who|Whoever|Those|Everybody|Somebody|Each|Every|All|Any|What|Which|Many|Most|Some|Users|Athletes|"
                 r"Pregnant|Elderly|Seniors|Teens")

# First-person forms carry their subject ("Sono incinta", "Estoy embarazada").
FIRST_PERSON_VERBS = ("am", "'m", "’m", "bin", "suis", "estoy", "estou", "sono", "ben")
# "and" before a verb whose subject came with the finding before it: "heeft Parkinson en slikt levodopa"
AND_THEN = re.compile(r"(?i)\b(?:and|en|und|et|y|e)\s*$")
# French cues that hold their subject ("il a", "ma mère a", "j'ai"); "put her on" names its person
_SUBJECT_IN_CUE = ("il ", "elle ", "on ", "mon ", "ma ", "ta ", "son ", "sa ", "j'ai")
_PUT_ON = re.compile(r" (?:him|her|me|them|us) on$")
WINDOW = 60
# who: a person right before the verb, or (for "has" in a list: "..., hat") a comma or the start
_SUBJECT = re.compile(rf"(?i)(?:{PERSON}|,|^)\s*{STILL}")
_SUBJECT_PERSON = re.compile(rf"(?i)(?:{PERSON})\s*{STILL}")
# or someone named: "Sarah takes", "Mr Okafor is on", "Larissa Quintela, está"
# (not after "the": "the Government", "the Commissioners" are no one's names)
_NAMED_SUBJECT = re.compile(rf"(?:^|[^\w'’])(?<![Tt]he )(?<![Oo]ur )(?<![Ii]ts )(?!(?:{NOT_A_SUBJECT})\b)"
                            rf"[A-Z][a-zà-ÿ]+(?:'s|’s)?,?\s*{STILL}")
# "How do I know if I have diabetes?", "Can I take ibuprofen 400 mg?": a supposition, not a record.
# ("Can you write to my GP ...?" asks for help; it supposes nothing)
_SUPPOSED = re.compile(r"(?i)\b(?:if|whether|(?:might|could|would|should|can|may)(?!n?['’]t)(?! (?:you|u)\b)|what if|suppose|"
                       r"how (?:do|can|would|could|should) (?:i|you|we|one) (?:know|tell|find out) (?:if|whether))\b"
                       r"[^.?!\n]*$")


def supposed(text: str, at: int) -> bool:
    """Whether the sentence up to `at` asks or supposes rather than tells ("if I have", "Can I take")."""
    return _SUPPOSED.search(text, max(0, at - 80), at) is not None


def follows_a_finding(text: str, at: int, ends: Iterable[int]) -> bool:
    """Whether the verb at `at` follows "and" right after another finding of its sentence (ending at one of
    `ends`), whose subject it shares: "heeft Parkinson en slikt levodopa", "es testigo de Jehová y vota a"."""
    return AND_THEN.search(text, max(0, at - 8), at + 1) is not None and any(0 < at - end < WINDOW for end in ends)


def has_subject(text: str, cue_start: int, cue_end: int, *, named: bool = False) -> bool:
    """Whether a person is the subject of the verb at `cue_start` (the character before it, when not a
    letter or an apostrophe, is the cue's boundary). The French cues hold their subject ("il a", "ma mère
    a", "j'ai"), a first-person verb is its own ("bin", "sono"), "put her on" names its person; the others
    need one right before the verb ("my dad has", "I have", "Sarah has", "..., hat"). `named`: a person,
    not a comma or the text's start ("Take 400 mg" is advice)."""
    verb = cue_start + (text[cue_start] not in "'’" and not text[cue_start].isalpha())
    said = text[verb:cue_end].lower()
    if said.startswith(_SUBJECT_IN_CUE) or said in FIRST_PERSON_VERBS and said != "am" or _PUT_ON.search(said):
        return True
    window = max(0, verb - WINDOW)
    subject = _SUBJECT_PERSON if named else _SUBJECT
    return bool(subject.search(text, window, verb) or _NAMED_SUBJECT.search(text, window, verb))


# someone named in the same sentence: a person word, or a name of two capitalised words ("Dominik Wacker")
_MENTION = re.compile(
    r"(?i:\b(?:my|our|his|her|their|your|mein\w*|mon|ma|mes|mi|mio|mia|meu|minha|mijn|onze)\s+[^\W\d_]+|"
    r"\b(?:he|she|they|i|we|er|sie|il|elle|lui|lei|ele|ela|hij|zij)\s+(?:has|had|have|got|is|was|hat|hatte|a|ha|tem|"
    r"tiene|heeft)\b)|"
    r"(?<![Tt]he )(?<!of )(?<!\. )(?<!^)\b(?!(?:And|But|Or|So|Then|When|If|The|This|That|In|On|At|For|With|As|By|"
    r"From|To|Of|After|Before|While|Since)\b)[A-Z][a-zà-ÿ'’-]+ [A-Z][a-zà-ÿ'’-]+\b(?! (?:of|Court|Party|Union|States?)\b)|"
    r"\b(?:Mr|Mrs|Ms|Dr|Herr|Frau|M|Mme|Sr|Sra|Sig|signor|signora)\.? [A-Z]")
_SENTENCE = re.compile(r"[.!?\n][^.!?\n]*$")


def mentions_person(text: str, at: int) -> bool:
    """Whether the sentence before `at` names or points at someone ("Herr Dominik Wacker hat eine Vorstrafe",
    "my brother, charged last week with"): for records written as nouns, whose verb has no subject."""
    start = max(0, at - 2 * WINDOW)
    if (stop := _SENTENCE.search(text, start, at)) is not None:
        start = stop.start() + 1
    return _MENTION.search(text, start, at) is not None
