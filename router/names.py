"""People's names where the text marks them as a person's.

A name has no shape of its own: a capitalised word is as often a place, a brand or the start of a
sentence, no list of names is complete, and a question about a famous person ("When was Ada
Lovelace born?") must still reach the cloud whole. So a name counts only where the words around
it say it names someone in the writer's life or records:

- an honorific: "Mr. Smith", "Dr Priya Raman", "Frau Müller", "mevrouw De Vries", "dott. Lombardi"
  (not a title after it: "Mr. President", "Madam Speaker");
- an introduction: "my name is Jane Doe", "her name is zoe", "I'm Dana Whitfield", "je m'appelle
  Léa", "me llamo", "ik ben", "sono", "call me Ishmael", "this is Pham Thi Lan calling";
- a relation or a role: "my son Liam", "his fiancée Meera", "my ex, jake thornton", "mi hija
  Valentina", "meine Kollegin Sarah", "Oma Ingrid", "le patient Jean-Baptiste Moreau";
- a form or record field, a header or a table column: "Name: Jane Doe", "Pt: Nguyen Van Thanh",
  "assignee": "Björn Åkesson", "Attendees: Sarah Kim, Diego Ramírez", "From: Jane Doe <...>",
  a CSV column headed "employee";
- a letter's salutation or sign-off: "Dear Anna,", "hi sarah,", "Best regards,\\nTom Baker",
  "Thanks so much Ifeoma!", "... - Sunita" at the end.

A name found once is the same person wherever else the text writes it ("Dear Anna, ... Anna
said"): every whole-word repeat is found too.

A name is one to four capitalised words (initials and particles such as "van der" or "de la"
inside), each ending in a lower-case letter, so acronyms are not names; where the cue is strong
(an introduction, a relation before a comma, an honorific with its dot, a salutation before a
comma) one or two words in any case, up to the first word that is not a name. Runs on the text
view (router.normalize), in RE2 (linear time).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import re2

from router.addresses import find_addresses
from router.linear_regex import char_offsets, compile_linear, group_spans
from router.name_words import CASELESS_AFTER_NAME, FOLLOWS_A_NAME, NOT_LOWER_NAMES, NOT_NAMES, PERSON_COLUMNS, \
    RELATION, ROLE, THING_NAMES
from router.records import sql_values, table_cells
from router.scan import continues_word

Span = tuple[str, int, int]

_WORD = r"\p{Lu}['’]?\p{L}*\p{Ll}(?:-\p{L}*\p{Ll})?"  # "O'Neil", "McDonald", "García-López", "Al-Rashid"
_INITIAL = r"\p{Lu}\."
_PARTICLES = ("van", "von", "der", "den", "de", "del", "della", "di", "da", "du", "dos", "das", "le", "la", "al", "el",
              "bin", "ibn", "ter", "ten", "zu", "y")
_PARTICLE = f"(?:{'|'.join(_PARTICLES)})"
_NAME = rf"(?:{_PARTICLE} )*(?:{_INITIAL} ?)*{_WORD}(?: (?:{_PARTICLE} )*(?:{_INITIAL} ?)*{_WORD}){{0,3}}"
FULL_NAME = rf"(?:{_WORD} (?:{_PARTICLE} )*(?:{_INITIAL} ?)*){{1,2}}{_WORD}"  # two or three words
_NAMES = rf"{_NAME}(?:(?:, | and | & | und | et | y | e | en ){_NAME})*"  # "Sarah Kim, Diego Ramírez"
_ANY_WORD = r"\p{L}[\p{L}'’-]*"
_CAPS_WORD = r"\p{Lu}['’]?\p{Lu}+(?:-\p{Lu}+)?"
_CAPS_NAME = rf"{_CAPS_WORD}(?: {_CAPS_WORD}){{0,3}}"
_NAME_FIELD = (r"(?i:(?:full|first|last|given|family|middle|maiden|legal|patient|holder)[ _-]?names?|names?|surname|"
               r"vorname|nachname|nom|prénom|nombre|apellidos?|nome|cognome|naam|achternaam|voornaam)")
_ANY_NAME = rf"{_ANY_WORD}(?: {_ANY_WORD})?"  # one or two words in any case, trimmed by find_names

# Case-sensitive but for dotted abbreviations and whole words: "ms" is milliseconds, "miss" a verb.
_HONORIFIC = (r"(?:Mr|Mrs|Ms|Mx|Dr|Prof|Sr|Sra|Srta|Sig|Sig\.ra|Mme|Mlle|Dhr|Mevr|Mw|Dott|Dott\.ssa|Avv)\.?|"
              r"(?:mr|mrs|ms|dr|prof|sr|sra|dott)\.|M\.|Herrn?|Frau|Madame|Monsieur|Señor|Señora|Señorita|Signor|Signora|"
              r"Signorina|Mevrouw|Meneer|Professor|Miss|Mister|Missus|"
              r"mevrouw|meneer|señor|señora|señorita|signor|signora|signorina|monsieur|madame|herr|frau")
_FAMILY_TITLE = (r"(?i:aunt|auntie|uncle|grandma|grandpa|granny|nana|oma|opa|tante|onkel|tía|tío|abuela|abuelo|nonna|"
                 r"nonno|mamie|papi|tita|tito|kuya|lola|lolo)")
_INTRODUCED = (
    r"(?:my|his|her|their|our|your)(?: [a-z]+'s| [a-z]+’s)? (?:full |real |legal |first |last |maiden )?"
    r"name is(?: still| actually| really| now| officially)?|my name's|my name’s|(?:i|he|she|they) (?:go|goes|went) by|name (?:on|under|for) (?:the|my|this|our) [a-z]+ is|"
    r"i am called|i'm called|i’m called|"
    r"mein name ist|ich hei(?:ß|ss)e|je m'appelle|je m’appelle|mon nom est|me llamo|mi nombre es|"
    r"mi chiamo|il mio nome è|mijn naam is|ik heet|(?:o )?meu nome é|me chamo|chamo-me|nazywam się|mam na imię|"
    r"jmenuji se|jag heter|mitt namn är|jeg heter|jeg hedder|mit navn er|benim adım|adım|tên tôi là|tên em là|"
    r"nama saya|the name on (?:it|the card|the account) is|nimeni on|numele meu este|mă numesc|ma numesc|"
    r"jina langu ni|ang pangalan ko ay|pangalan ko ay|меня зовут")
# "I'm" and its kin take a first and last name: one word is as often a nationality or a mood
# ("I'm American", "soy Médico")
_I_AM = (r"I'm|I’m|I am|(?i:ich bin|je suis|soy|sono|ik ben|eu sou|sou a|sou o|le escribe|les escribe|aquí|ben|"
         r"saya|em là|tôi là|anh là|chị là|jestem|это|sunt|olen|mimi ni)")
_FIELD = (
    r"(?:full|first|last|given|family|middle|maiden|legal|patient|customer|client|employee|contact|recipient|"
    r"sender|guest|passenger|tenant|applicant|student|child|spouse|parent|account[ _-]?holder|card[ _-]?holder|"
    r"user|real|display)[ _-]?names?|name|surname|wife|husband|spouse|partner|child|children|son|daughter|mother|father|"
    r"authori[sz]ed (?:adults?|persons?|people)|alıcı|alici|pt|patient|patientin|patiënt|paciente|paziente|nom|"
    r"prénom|nombre|apellidos?|nome|cognome|genitore|"
    r"naam|vorname|nachname|reported by|requested by|submitted by|created by|prepared by|signed by|assigned to|"
    r"assignee|owner|reporter|author|reviewer|approver|holder|cardholder|policyholder|"
    r"payer|witness|contact person|emergency contact|next of kin|guardian|physician|gp|caregiver|"
    r"borrower|lender|insured|claimant|defendant|plaintiff|buyer|seller|landlord|signatory|attn|attention|"
    r"kunde|kundin|ansprechpartner|ansprechpartnerin|kontoinhaber|empfänger|absender|destinataire|"
    r"expéditeur|destinatario|remitente|mittente|klant|rekeninghouder|ontvanger|afzender|"
    r"destinatário|remetente|firma|name on (?:the )?(?:account|card)|manager|mottaker|mottagare|modtager|" + ROLE)
_BY = (r"witnessed by|signed by|prepared by|reported by|submitted by|requested by|approved by|reviewed by|authored by|"
       r"written by|issued to|on behalf of|statement of|signature of|care of|c/o|reports to|reporting to|managed by|"
       r"supervised by|in the name of|a nombre de|au nom de|auf den namen|im namen von|in nome di|em nome de|"
       r"ten name van|ask for|asked for|speak to|speak with|talk to|in my name|under the name|mon nom|a mi nombre|"
       r"em meu nome|auf meinen namen|a nome mio|op mijn naam")
_HOLDER = (r"(?i:name on (?:the )?(?:account|card)|(?:account|card)[ _-]?holder|cardholder|kontoinhaber(?:in)?|"
           r"karteninhaber(?:in)?|inhaber(?:in)?|titular(?: de la (?:cuenta|tarjeta)| da conta| do cart[ãa]o)?|"
           r"titulaire(?: du compte| de la carte)?|intestatari[oa]|rekeninghouder|beneficiary|beneficiari[oa])")
_LIST_FIELD = r"attendees|participants|present|invitees|cc|bcc|team members|members|guests|witnesses|parties|teilnehmer"
_SALUTATION = (r"Dear|Dearest|Hi|Hello|Hey|Liebe|Lieber|Cher|Chère|Querid[oa]|Caro|Cara|Beste|Hallo|Bonjour|Hola|Ciao|"
               r"Olá|Salut|Coucou|Hej|Moin|Servus|Prezad[oa]|Estimad[oa]|Gentile|Egregio")
_SIGN_OFF = (r"sincerely|regards|kind regards|best regards|warm regards|best wishes|yours truly|yours faithfully|"
             r"cheers|signed|thanks|thank you|many thanks|best|all the best|love|take care|"
             r"mit freundlichen grüßen|liebe grüße|viele grüße|beste grüße|lg|cordialement|bien à vous|bisous|"
             r"saludos|atentamente|un abrazo|un saluto|cordiali saluti|saluti|atenciosamente|abraços|beijos|"
             r"groeten|groetjes|met vriendelijke groet|met vriendelijke groeten|un abbraccio|un bacio|baci|besos|"
             r"un beso|abrazos|grüße|gruß|hugs|xoxo|xx|att\.?|firma|unterschrift|signature|signé|assinatura")

# (cue, what follows it with the value as its one group): the cue is found by a small regex of its
# own, the rest matched from there. (Searching the whole pattern costs ~1 ms a match on 32 KB:
# RE2's reverse DFA for the Unicode name classes outgrows its memory and it falls back to the NFA
# over the text before the match. One regex of all the patterns ran 25x slower still.)
_CASED = (
    (_HONORIFIC, rf" +({_NAME})"),
    (_FAMILY_TITLE, rf" ({_NAME})"),
    (rf"(?i:{_INTRODUCED}|call me)", rf"[ :,]{{1,3}}({_NAME})"),
    (_I_AM, rf" ({FULL_NAME})"),
    (r"(?i:this is)", rf" ({FULL_NAME})(?i: calling| from|,? here)"),  # "this is Pham Thi Lan calling"
    (r"(?i:(?:the|a|our|le|la|el|il|der|die|de) (?:patient|patientin|patiente|patiënt|paciente|paziente|client|"
     r"cliente|klant|kunde|kundin|deceased|defendant|plaintiff|applicant|tenant|employee|victim|suspect|minor))",
     rf",? ({_NAME})"),
    # "my son David", and "my wife, Sarah," with the name set off by commas ("his wife, Behold now" is no name)
    (rf"(?i:{RELATION})", rf" ({_NAME})"),
    (rf"(?i:{RELATION})", rf", ({_NAME})(?:[,.;:!?)\n]| \(|$)"),
    (rf"(?i:{RELATION})", rf" \(({_NAME})\)"),  # "Wife (Keiko)"
    # a field's label and its value, as a form, a record or JSON writes it: `Name: `, `"assignee": "`
    (rf"(?i:{_FIELD})", rf"(?:\(s\))?[\"']?[ \t]*[:=][ \t]*[\"']?({_NAME})"),
    (rf"(?i:{_LIST_FIELD})", rf"[ \t]*:[ \t]*({_NAMES})"),
    (rf"(?i:{_LIST_FIELD})", rf"[ \t]+(?i:for|of|at|from|in|für|pour|de|del|para|per|voor)[^:\n]{{1,40}}:[ \t]*({_NAMES})"),
    # a holder named without a colon: "name on card KAVYA KRISHNAN", "Kontoinhaber Jürgen Hoffmann"
    (_HOLDER, rf"[ \t]+({FULL_NAME}|{_CAPS_WORD}(?: {_CAPS_WORD}){{1,3}})(?:[^\p{{L}}]|$)"),
    # the speaker of a timestamped line of a chat or transcript: "[00:12:04] Hannah Lee: okay so ..."
    (r"[0-9]{1,2}:[0-9]{2}(?::[0-9]{2})?\]?", rf" ?({FULL_NAME}):"),
    # a passport's or a form's capitals: "Surname: OKONKWO", "Given names: CHIDI EMEKA"
    (_NAME_FIELD, rf"(?:\(s\))?[\"']?[ \t]*[:=][ \t]*[\"']?({_CAPS_NAME})(?:[ \t]*[\"',;\n|]|[ \t]*$)"),
    (r"(?m:^FN)", rf"[:;]({_NAME})"),  # a vCard's formatted name
    (r"(?im:^(?:from|to|cc|reply-to))", rf"[ \t]*:[ \t]*({_NAMES})[ \t]*<"),  # e-mail headers
    (r"(?im:^(?:from|to|cc))", rf"[ \t]*:[ \t]*({_NAMES})[ \t]*\n(?i:to|cc|subject|sent|date)[ \t]*:"),
    (_SALUTATION, rf"[ \t]*(?:,[ \t]*\n?|\n| )[ \t]*({_NAMES})"),
    (rf"(?i:{_SIGN_OFF})", rf"[ \t]*(?:,[ \t]*\n?|\n)[ \t]*({_NAME})"),
    (r"(?i:thanks|thank you|thx|ty|danke|merci|gracias|grazie|obrigad[oa]|dank je|tack)",
     rf"(?i: so much| a lot| again| dir| schön| beaucoup| mille)?,? ({_NAME})(?:[!.,]|[ \t]*$)"),
    (rf"(?i:{ROLE})", rf"[ \t]+({FULL_NAME})"),  # "Client Rana Haddad"
    (r"(?i:pt)\.", rf"[ \t]+({FULL_NAME})"),  # "Pt. Ruth Abiodun"
    (rf"(?i:{ROLE})", rf"[ \t]+[\"'‘“]({_NAME})[\"'’”]"),  # employee 'Aditya Krishnamurthy'
    (rf"(?i:{_BY})", rf"[ \t:,]+({FULL_NAME})"),  # "Witnessed by Eilidh MacLeod", "à mon nom, Solène Marchetti"
    # a form's label without its colon: "nome Thiago Albuquerque Neves", "mera naam Sunita Deshpande hai"
    (r"(?i:name|nome|nombre|naam|imię i nazwisko|nome completo|nombre completo|volledige naam)", rf"[ \t]+({FULL_NAME})"),
    # "a guy named Tomasz", "I (Shauna Pettigrew)"
    (r"(?i:(?:guy|girl|man|woman|boy|lady|person|friend|someone|somebody|colleague|coworker|kid|child|son|daughter|"
     r"baby|teacher|doctor|nurse|student) (?:named|called))", rf" ({_NAME})"),
    (r"I \(", rf"({FULL_NAME})\)"),
    (r"I, ", rf"({FULL_NAME}),"),  # "I, Mohammed Al-Khatib, hereby ..."
)
# (cue, the value written right before it)
_CASED_BEFORE = (
    # "Lena Hoffmann, geb. 04.07.1985", "Julien Lefèvre, né le 3 février 1979", "Maria Gonzalez, born 7/2/64"
    (r"(?i:, (?:born|geboren|née?|nat[oa]|nacid[oa]|nascid[oa]|urodzon[ya]|f[öø]dd?|dob|geb\.|d\.o\.b\.))"
     r"(?:[^\p{L}\p{N}]|$)", FULL_NAME),
    # "Seo-yeon Park, my wife" ("Sorry, my son": none; the relation a whole word: "your points ex|pire" is none)
    (rf"(?i:, {RELATION})(?:[^\p{{L}}\p{{N}}]|$)", FULL_NAME),
    (r"-(?i:san|sama|kun|chan|sensei)\b", _WORD),  # "Suzuki-san"
)
# Scripts without letter case (Chinese, Japanese, Korean, Arabic, Devanagari): no capital marks a
# name, so only a cue does, and the name is as long as such names are (Han 2-5 characters, Hangul
# 2-3 syllables, up to three Arabic words or two Devanagari ones).
_CASELESS_NAME = (r"(?:\p{Han}{1,3}[ \x{3000}]?\p{Han}{1,3}|\p{Katakana}{2,8}(?:[ \x{3000}・]\p{Katakana}{2,8})?|"
                  r"\p{Hangul}{2,3}|\p{Arabic}{2,}(?: \p{Arabic}{2,}){0,2}|\p{Devanagari}{2,}(?: \p{Devanagari}{2,})?|"
                  r"\p{Hebrew}{2,}(?: \p{Hebrew}{2,}){0,2})")
_CASELESS_CUES = (
    "姓名|收件人|收货人|联系人|开户人|持卡人|户名|申请人|负责人|取件人|我叫|我的名字是|我的名字叫|名字叫|"
    "氏名|お名前|名前|名義は?|フリガナ|担当者|私の名前は|"
    "이름|성명|환자명|받는 ?분|받는 ?사람|보호자|담당자|예금주|고객명|제 이름은|"
    "我老婆|我老公|我妻子|我丈夫|我妈妈|我妈|我爸爸|我爸|我儿子|我女儿|母の|父の|妻の|夫の|息子の|娘の|"
    "الاسم|اسمي|أخي|أختي|زوجي|زوجتي|ابني|ابنتي|السيدة|السيد|"
    "שמי|השם שלי|אשתי|בעלי|"
    "मेरा नाम|नाम|मेरे भाई|मेरी बहन|मेरी बेटी|मेरा बेटा|मेरी पत्नी|मेरे पति")
# Cues whose first letter is not ASCII, for which RE2's \b (ASCII's) never holds: whole words are
# checked by the letter before them instead.
_UNBOUNDED = (
    (_CASELESS_CUES, rf"[ \t]*[:：]?[ \t]*({_CASELESS_NAME})"),
    ("(?i:меня зовут|мене звати|моё имя|мое имя|получатель|получательница|отправитель|фио|имя|одержувач)",
     rf"[ \t]*[:,]?[ \t]*({_NAME})"),
)
# (cue, the name before it): "佐藤美咲と申します", "田中健一様", "김민준입니다" (three syllables: most Korean
# names have them, and "학생입니다", "I am a student", has two)
_CASELESS_BEFORE = (("(?:と申します|様|さん|씨)", _CASELESS_NAME), ("입니다", r"\p{Hangul}{3}"))
# A signature at the very end: "... next week? - Sunita"
_SIGNATURE = compile_linear(rf"(?:[.!?)]|(?i:thx|thanks|ty|cheers))[ \t\n]*[-–—~][ \t]*({_NAME})[ \t]*$")
# (cue, what follows) whose value may be in any case: one or two words after a strong cue
_ANY_CASE = (
    (rf"(?i:{_INTRODUCED})", rf"[ :,]{{1,3}}({_ANY_NAME})"),
    (rf"(?i:{RELATION})", rf", ({_ANY_NAME})[,.;:!?)\n]"),
    (r"(?i:(?:mr|mrs|ms|mx|dr|prof)\.)", rf" ?({_ANY_WORD})"),
    (r"(?i:hi|hello|hey|dear|hola|salut|ciao|hallo)", rf" ({_ANY_WORD})[,!]"),
    # a chat's speaker in lower case ("[21:05] jolene: sent"); a capitalised word is as often a topic ("[09:05] Budget:")
    (r"[0-9]{1,2}:[0-9]{2}(?::[0-9]{2})?\]", r" ?(\p{Ll}[\p{Ll}'’-]+):"),
)
# In lower case a name after a relation counts when a word that often follows one comes next:
# "my bf ryan keeps", "my sister tanvi just got" (not "my mom always says": NOT_NAMES, NOT_LOWER_NAMES).
_RELATION_NEXT = (rf"(?i:{RELATION})", rf" ({_ANY_WORD}) ({_ANY_WORD})")
_CELL_NAME = compile_linear(rf"{_NAME}")


def _is_cell_name(value: str) -> bool:
    return _CELL_NAME.fullmatch(value) is not None


def _word_before(text: str, index: int) -> str:
    """The word that ends right before `index` (spaces, underscores or dashes between), lower case."""
    end = index
    while end > 0 and text[end - 1] in " _-":
        end -= 1
    start = end
    while start > 0 and text[start - 1].isalpha():
        start -= 1
    return text[start:end].casefold()


_STOP = NOT_NAMES | NOT_LOWER_NAMES
_WINDOW = 320  # bytes a name and its punctuation take at most after (or before) its cue


class _Rule:
    """A cue, found by a small regex of its own, and the pattern matched from it: the cue and what
    follows (`rest`, the value its groups), or, for a name written before its cue, the value (`rest`)
    and the cue, searched in the few bytes before the cue."""

    def __init__(self, cue: str, rest: str, *, before: bool = False, bounded: bool = True) -> None:
        # "\b": no search stops inside "which" for "hi" (RE2's \b is ASCII's: caseless scripts' cues go without)
        self.cue = compile_linear(rf"\b(?:{cue})" if bounded and not before else f"(?:{cue})")
        self.pattern = compile_linear(f"({rest}){cue}" if before else f"({cue}){rest}")
        self.before = before

    def spans(self, data: bytes) -> Iterator[tuple[int, int, tuple[tuple[int, int], ...]]]:
        """(cue start, cue end, the value groups' spans) in bytes, for each match."""
        pos = 0
        while (cue := self.cue.search(data, pos)) is not None:
            pos = cue.start() + 1
            if self.before:
                m = self.pattern.search(data, max(0, cue.start() - _WINDOW), cue.end())
                if m is not None and m.end() == cue.end():
                    yield cue.start(), cue.end(), tuple(m.span(g) for g in range(1, self.pattern.groups + 1))
                continue
            before = data[max(0, cue.start() - 4):cue.start()].decode("utf-8", "ignore")[-1:]
            if before and continues_word(before):
                continue  # whole words only: "name" in "filename", "dear" in "endear", not "¡Hola", not "请寄给"
            end = min(len(data), cue.start() + _WINDOW)
            m = self.pattern.match(data, cue.start(), end)
            if m is not None and (m.end() < end or end == len(data)):  # one cut short by the window is none
                yield m.start(1), m.end(1), tuple(m.span(g) for g in range(2, self.pattern.groups + 1))


_CASED_RULES = (*(_Rule(cue, rest) for cue, rest in _CASED),
                *(_Rule(cue, rest, bounded=False) for cue, rest in _UNBOUNDED),
                *(_Rule(cue, value, before=True) for cue, value in _CASELESS_BEFORE),
                *(_Rule(cue, value, before=True) for cue, value in _CASED_BEFORE))
_ANY_CASE_RULES = tuple(_Rule(cue, rest) for cue, rest in _ANY_CASE)
_RELATION_NEXT_RULE = _Rule(*_RELATION_NEXT)
# Every cue at once, in one linear pass (an RE2 set): which rules have a cue in a text at all. Most
# texts hold a few, and only their rules search further.
_RULES = (*_CASED_RULES, *_ANY_CASE_RULES, _RELATION_NEXT_RULE)
_CUE_SET = re2.Set.SearchSet(re2.Options())
for _rule in _RULES:
    _CUE_SET.Add(_rule.cue.pattern)
_CUE_SET.Compile()


def _found(rules: tuple[_Rule, ...], text: str, data: bytes,
           present: set[_Rule]) -> Iterator[tuple[int, int, Sequence[tuple[int, int]]]]:
    """(cue start, cue end, value spans) in characters of `text` (`data` its UTF-8)."""
    hits = [hit for rule in rules if rule in present for hit in rule.spans(data)]
    if len(data) != len(text):
        chars = char_offsets(data, [o for a, b, groups in hits for o in (a, b, *(x for g in groups for x in g))])
        hits = [(chars[a], chars[b], [(chars[x], chars[y]) for x, y in groups]) for a, b, groups in hits]
    yield from hits


def names_someone(name: str) -> bool:
    """Whether a cued name's first word can be a name ("Mr. President", "Dear Customer": no)."""
    return name.split(" ", 1)[0].strip(".,&").casefold() not in NOT_NAMES


def _cued(text: str) -> Iterator[tuple[int, int]]:
    """Names next to a cue: capitalised ones, then lower-case ones after a strong cue."""
    data = text.encode("utf-8")
    present = {_RULES[i] for i in _CUE_SET.Match(data) or ()}
    for cue, cue_end, ((start, end), *_) in _found(_CASED_RULES, text, data, present):
        if text[cue:cue_end].casefold() == "name" and _word_before(text, cue) in THING_NAMES:
            continue  # "Project name: Apollo", "file name = Report"
        words = text[start:end].split(" ")  # "अमित से", "أحمد في البيت": the name, not what follows it
        kept = 1 + next((i for i, word in enumerate(words[1:]) if word in CASELESS_AFTER_NAME), len(words) - 1)
        end = start + len(" ".join(words[:kept]))
        if names_someone(text[start:end]) and text[end:end + 1] != "(":  # `client = WeatherClient(`: code
            yield start, end
    for _, _, ((start, end), *_) in _found(_ANY_CASE_RULES, text, data, present):
        words = text[start:end].split(" ")
        kept = 0
        while kept < len(words) and words[kept].casefold() not in _STOP:
            kept += 1
        while kept and words[kept - 1].casefold() in _PARTICLES:
            kept -= 1  # "sanne de", cut off before "Jong" by the two-word limit
        if kept:
            yield start, start + len(" ".join(words[:kept]))
    for _, _, ((start, end), (after, after_end)) in _found((_RELATION_NEXT_RULE,), text, data, present):
        if text[start:end].casefold() not in _STOP and text[after:after_end].casefold() in FOLLOWS_A_NAME:
            yield start, end
    tail = max(0, len(text) - _WINDOW)  # the signature ends the text
    for (start, end), in group_spans(_SIGNATURE, text[tail:], (1,)):
        yield tail + start, tail + end


# A name written right before an address is the person who lives there: on the line above it ("Ship
# to:\nDaniel Okafor\n2200 W Lake St") or before a comma, after the start of a line, a colon or a
# word sending something to someone ("an Jonas Becker, Lindenweg 7").
_BEFORE_ADDRESS = compile_linear(
    rf"(?:^|\n|[:;(]|\b(?:to|for|attn|an|à|a|para|per|aan|voor|c/o))[ \t]*({FULL_NAME})[ \t]*(?:,[ \t]*\n?|\n)[ \t]*$")


def _before_addresses(text: str, addresses: Sequence[Span]) -> Iterator[tuple[int, int]]:
    for _, start, _ in addresses:
        offset = max(0, start - 80)
        for (name_start, name_end), in group_spans(_BEFORE_ADDRESS, text[offset:start], (1,)):
            if names_someone(text[offset + name_start:offset + name_end]):
                yield offset + name_start, offset + name_end


# Someone named by a handle or a login written like a name ("@sarah.connolly", "@tom_becker", sshd's
# "Failed password for dmitri.ivanov from"): not "@app.route" opening a line (a decorator), "@types/node"
# (a package scope) or an e-mail address; "root" or "deploy" names no one.
_HANDLE = re.compile(r"(?<![\w.+@-])@([^\W\d_]{2,}[._][^\W\d_]{2,}\d*)(?![\w@(/-]|\.\w)")
_CODE_HANDLE = re.compile(  # "@pytest.fixture", "@app.route", "@x.setter": code, not someone
    r"(?i)(?:pytest|app|api|router|bp|blueprint|functools|torch|tf|jax|numba|celery|click|mock|unittest|typing|abc|"
    r"dataclasses|contextlib|self|cls|bot|client|dp|server|types|babel|vue|angular|nestjs|emotion|mui|tanstack)\.\w+|"
    r"\w+\.(?:setter|getter|deleter|route|get|post|put|delete|patch|fixture|mark|task|command|group|option|argument|"
    r"event|listener|cache|lru_cache|jit|register|validator|middleware|callback|handler|on|js|ts|py|io|com)|"
    # an organisation's or a project's account, not a person's: "@tandem_dev", "@acme.support"
    r"\w+?[._](?:dev|devs|app|official|team|hq|news|support|help|labs|inc|org|bot|studio|games|tv|fm|ai|jobs|"
    r"careers|status|updates|community|project|lang|js|rs|py|hub|cloud|db|ui|sdk|api|cli)")
_LOGIN = re.compile(r"(?:(?:Failed|Accepted) [\w/-]+ for (?:invalid user )?|Invalid user |session (?:opened|closed) "
                    r"for user )([^\W\d_]{2,}[._-][^\W\d_]{2,}\d*)\b")


# An account's name after its word, in a log's key, as someone logs in, or quoted after "user": "My username is
# msz_bakes", "user=kpaterniti", "logs into the laptop as kenji.w", "users 'velvetmoth'", "Benutzer hroemer58".
_ACCOUNT_NAME = compile_linear(
    r"(?i)(?:\b(?:user ?name|user ?id|benutzer(?:name)?|usu[áa]rio|utilisateur|nom d'utilisateur|"
    r"gebruikersnaam|kullanıcı adı)(?:[ \t]+(?:is|was|ist|est|es|é|è|there is))?[ \t]*[:=]?[ \t]*[\"'`“]?|"
    r"\blogin(?: name)?(?:[ \t]*[:=]|[ \t]+(?:is|was))[ \t]*[\"'`“]?|"
    r"\buser(?:name)?=|\blogs? ?(?:in|on)(?:to [\w ]{1,30}?)? as[ \t]+|\busers?[ \t]+[\"'“])([\w][\w.@-]{2,31})"
    r"(?:[^\w.@-]|\.(?:[^\w]|$)|$)")
_NOT_AN_ACCOUNT = frozenset("and the for with from that this your admin root user guest test demo none null name "
                            "password email required invalid field box page button prompt screen form column format "
                            "here below above must should can cannot please changed reset forgot incorrect wrong "
                            # system accounts name no one
                            "deploy ubuntu ec2-user postgres mysql www-data nobody service system jenkins git docker "
                            "pi administrator sa".split())


def _usernames(text: str) -> Iterator[tuple[int, int]]:
    for m in _HANDLE.finditer(text) if "@" in text else ():
        opening = not text[text.rfind("\n", 0, m.start()) + 1:m.start()].strip()  # a decorator opens its line
        if not opening and not _CODE_HANDLE.fullmatch(m.group(1)):
            yield m.span(1)
    for m in _LOGIN.finditer(text) if " for " in text or "user " in text else ():
        yield m.span(1)
    lowered = text.lower()
    accounts = any(word in lowered for word in ("user", "login", "log in", "logs in", "benutzer", "usu", "utilisateur",
                                                "gebruiker", "kullan"))
    for ((start, end),) in group_spans(_ACCOUNT_NAME, text, (1,)) if accounts else ():
        value = text[start:end]
        if any(c.isalpha() for c in value) and value.lower() not in _NOT_AN_ACCOUNT and "<" not in value:
            yield start, end


def find_names(text: str, addresses: Sequence[Span] | None = None) -> Iterator[Span]:
    """Each person's name in `text` (the text view) that its context marks as one, as ("person_name", start, end);
    `addresses` are find_addresses' spans in `text` when the caller has them already."""
    addresses = list(find_addresses(text)) if addresses is None else addresses
    found = {*_cued(text), *table_cells(text, PERSON_COLUMNS, _is_cell_name),
             *sql_values(text, PERSON_COLUMNS, _is_cell_name), *_before_addresses(text, addresses),
             *_usernames(text)}
    # the name again elsewhere in the text, without its cue ("Dear Anna, ... Anna said"): the same person
    for value in {text[start:end] for start, end in found}:
        at = text.find(value)
        while at >= 0:
            end = at + len(value)
            if not text[at - 1:at].isalnum() and not text[end:end + 1].isalnum():
                found.add((at, end))
            at = text.find(value, at + 1)
    last_end = -1
    for start, end in sorted(found, key=lambda span: (span[0], -span[1])):
        if end <= last_end:
            continue  # inside a name already found
        last_end = end
        yield "person_name", start, end
