"""What data-protection law calls special categories, beside health (router/health.py): a person's
sexual orientation or gender identity, religion, political opinion or trade-union membership.

As for health, a word counts only where the text ties it to someone: "my brother is gay", "Devorah
is an Orthodox Jew", "Vikram is an active member of the Green Party", "she voted for Le Pen",
"Matteo è bisessuale", "he came out as trans", "I'm in the union", and a criminal record ("my brother was
convicted of fraud in 2019", GDPR's Article 10); not "What is Islam?", "gay
marriage became legal in 2015", "the Labour Party won" or "Is it true that ...?". The subject is
read as router/subjects.py reads it; RE2 finds each cue with what must follow it, in one linear pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from router.linear_regex import RegexSet, compile_linear, group_spans
from router.subjects import follows_a_finding, has_subject, mentions_person, supposed

Span = tuple[str, int, int]

# Who someone is (matched case-insensitively, whole words), by kind.
_STATES = {
    "sexual_orientation": (
        r"gay|lesbian|bisexual|bi|pansexual|asexual|queer|homosexual|trans(?:gender)?|a trans (?:man|woman)|"
        r"non-?binary|genderqueer|genderfluid|intersex|in the closet|schwul|lesbisch|bisexuell|homosexuell|"
        r"transgender|homosexuel(?:le)?|lesbienne|bisexuel(?:le)?|transgenre|lesbiana|bisexual|transexual|"
        r"homosexual|lesbica|bisessuale|omosessuale|lésbica|bissexual|homossexual|homo|biseksueel|homoseksueel"),
    "religion": (
        r"(?:(?:devout|practi[cs]ing|observant|orthodox|ultra-orthodox|born-again|lapsed) )?"
        r"(?:muslim|jewish|jew|christian|catholic|protestant|evangelical|mormon|hindu|sikh|buddhist|jain|"
        r"baha'i|jehovah's witness|quaker|atheist|agnostic|scientologist|rastafarian|wiccan|pagan)|"
        r"testigo de jehov[áa]|t[ée]moin de j[ée]hovah|zeuge jehovas|testimone di geova|testemunha de jeov[áa]|"
        r"muslim(?:in|isch)?|jüdisch|jude|jüdin|katholisch|evangelisch|musulman(?:e)?|juif|juive|catholique|"
        r"protestante?|athée|musulmán|musulmana|judío|judía|católic[oa]|evangélic[oa]|ateo|atea|musulman[oa]|"
        r"ebre[oa]|cattolic[oa]|muçulman[oa]|judeu|judia|moslim|joods|katholiek"),
    "political_opinion": (
        r"(?:(?:registered|lifelong|staunch|card-carrying|die-hard) )?(?:republican|democrat|tory|labour voter|"
        r"communist|socialist|libertarian|anarchist|fascist|nazi|marxist|trump supporter|maga)"),
}
_IS = (r"is|am|are|was|were|been|ist|bin|war|est|suis|était|es|soy|era|è|sono|é|sou|ben")
_BEFORE_STATE = (r"(?:(?:now|also|still|been|openly|secretly|actually|really|quietly|proudly|a|an|ein|eine|un|une|"
                 r"uno|una|um|uma|een)[ \t]+){0,3}")
# Joining or backing a party or a union: "member of the Green Party", "voted for Le Pen", "Mitglied der SPD".
_ALL_STATES = "|".join(_STATES.values())
# German puts the verb last ("da sie jüdisch ist"); a list puts the state in brackets after the name
# ("Shauna Petrakis (lesbian, out at work)")
_STATE_THEN_VERB = compile_linear(rf"(?i)(?:^|[^\pL])((?:{_ALL_STATES}))[ \t]+((?:ist|bin|sind|war|bist))(?:[^\pL]|$)")
_STATE_IN_BRACKETS = compile_linear(rf"(?i)(?-i:\p{{Lu}}\pL+) \(((?:{_ALL_STATES}))[,;)]")
_JOINS = (r"(?:an? )?(?:active |paying |founding |long-time |registered |card-carrying |lifelong |proud )?"
          r"(?:member|supporter|volunteer|activist|candidate|organi[sz]er|donor|delegate) (?:of|for|to|in)|"
          r"votes? for|voted for|voting for|campaigns? for|campaigned for|canvass(?:es|ed|ing)? for|joined|"
          r"mitglied (?:der|im|in der)|"
          r"membre (?:du|de la|des)|(?:afiliad[oa]|militante) (?:al|a la|del)|iscritt[oa] (?:al|alla|a)|"
          r"filiad[oa] (?:ao|à)|lid van|vot(?:a|o|é|ó|amos|aba|ei|ou|erà|ato) (?:a|al|por|per|para|no|na|em|in)|"
          r"vote pour|wählt|gewählt|militante? (?:de|du|d'|di|del|della)|adh[ée]rente? (?:de|du|au)|lid van|"
          r"afiliad[oa] a|iscritt[oa] a|"
          r"registered as(?: an?)?")
_ARTICLE = r"(?:the|der|die|das|du|de la|des|del|al|el|la|le|les|il|lo|los|o|a|ao|à|de|het)[ \t]+"
_PARTY_OR_UNION = (r"(?:(?:far|extreme|hard|radical|alt)[- ](?:right|left))|(?:\p{Lu}[\pL'’.-]*|of|the|for|and|de|la|del|der|die)(?:[ \t]+(?:\p{Lu}[\pL'’.-]*|of|the|for|"
                   r"and|de|la|del|der|die)){0,4}")
# Unions by name (their members name them so: "UNISON steward", "Mitglied der IG Metall", "déléguée CGT")
_UNION_NAMES = (r"unison|gmb|rmt|teamsters|seiu|uaw|afl-cio|afscme|ufcw|ig metall|ver\.?di|ig bce|cgt|cfdt|cgil|cisl|"
                r"uil|fnv|cnv|ccoo|ugt|unia")
_UNION = compile_linear(rf"(?i)\b(?:union|gewerkschaft|syndicat|sindicato|sindacato|vakbond|{_UNION_NAMES})\b")
_UNION_STATE = (r"in the union|a union member|a member of the union|a shop steward|(?:un |una )?sindicalizad[oa]|"
                r"syndiqu[ée]e?|gewerkschaftsmitglied|in der gewerkschaft|iscritt[oa] al sindacato|vakbondslid|"
                r"d[ée]l[ée]gu[ée]e? (?:syndical(?:e)? )?(?:de la |du )?(?-i:[A-Z]{2,5})")
# "UNISON steward", "(SEIU Local 1000)", "Teamsters Local 710 members": a union named beside a member's role
_UNION_ROLE = compile_linear(rf"(?i)(?:^|[^\pL])((?:{_UNION_NAMES})(?: local [0-9]+)? (?:members?|stewards?|reps?|"
                             rf"representatives?|delegates?|organi[sz]ers?|shop stewards?)|union dues:? (?:{_UNION_NAMES})"
                             r"(?: local [0-9]+)?)(?:[^\pL]|$)")

# A state right before one of these nouns describes a thing, not a person: "a Catholic school teacher", "a
# gay rights activist", "a Muslim neighbourhood".
_THING_AFTER = (r"schools?|church(?:es)?|mosques?|synagogues?|temples?|communit(?:y|ies)|rights|bars?|clubs?|culture|"
                r"cinema|films?|movies?|music|food|deli|restaurants?|neighbou?rhoods?|areas?|districts?|holidays?|"
                r"festivals?|weddings?|marriages?|traditions?|values|voters|part(?:y|ies)|politicians?|politics|groups?|"
                r"organi[sz]ations?|charit(?:y|ies)|hospitals?|universit(?:y|ies)|colleges?|teachers?|priests?|"
                r"leaders?|icons?|movements?|activists?|activism|history|art|literature|studies|names?|laws?|news|"
                r"media|pride|parades?|characters?|couples?|friendly|owned|run|majority|minority|countries|country|"
                r"state|states|faith|scriptures?|prayers?|kitchen|cuisine|calendar|dating|porn|scene|icon")
_STATE_CUE = compile_linear(
    rf"(?i)((?:^|[^\pL'’])(?:{_IS})|['’](?:s|m|re))[ \t]+{_BEFORE_STATE}"
    rf"(?:{'|'.join(_STATES.values())}|{_UNION_STATE})(?:[^\pL'’-]|$)")
_STATE_AFTER = re.compile(rf"(?i)[ \t]+{_BEFORE_STATE}(?:(?P<sexual_orientation>{_STATES['sexual_orientation']})|"
                          rf"(?P<religion>{_STATES['religion']})|(?P<political_opinion>{_STATES['political_opinion']})|"
                          rf"(?P<trade_union>{_UNION_STATE}))(?![\w'’-])(?![ \t]+(?:{_THING_AFTER})\b)")
_JOIN_CUE = compile_linear(rf"(?i)((?:^|[^\pL'’])(?:{_JOINS})[ \t]+(?:{_ARTICLE})?)(?-i:{_PARTY_OR_UNION})")
_JOIN_AFTER = re.compile(r"(?:far|extreme|hard|radical|alt)[- ](?:right|left)(?:[- ]wing)?(?: (?:party|candidate|list|"
                         r"movement|group))?|(?:[A-ZÀ-Ý][\w'’-]*|of|the|for|and|de|la|del|der|die)(?![\w'’-])"
                         r"(?:[ \t]+(?:[A-ZÀ-Ý][\w'’-]*|of|the|for|and|de|la|del|der|die)(?![\w'’-])){0,4}"
                         r"(?:[ \t]+(?:party|partei|parti|partido|partito|partij|union)\b)?")
_CAME_OUT = compile_linear(rf"(?i)(came|coming|come|comes) out(?: to (?:\pL+ ){{0,3}}?\pL+)? as "
                           rf"((?:an? )?(?:{_STATES['sexual_orientation']}))(?:[^\pL'’-]|$)")
_TRAILING_WORDS = re.compile(r"(?:[ \t]+(?:of|the|for|and|de|la|del|der|die))+$")
# A conviction, an arrest, a sentence: the verb (with its auxiliary), then what for, to the clause's end.
_YEAR = r"(?:[ \t]+(?:in|en|em|im|nel)[ \t]+[0-9]{4})?"
_CONVICTION = (rf"convicted{_YEAR} (?:of|for)|arrested{_YEAR} (?:for|on)|charged"
               rf"(?:{_YEAR}| (?:last|this) (?:week|month|year)| yesterday| today)? with|jailed{_YEAR} for|"
               rf"imprisoned{_YEAR} for|sentenced{_YEAR} (?:to|for)|indicted{_YEAR} (?:for|on)|incarcerated{_YEAR} for|"
               rf"pleaded guilty to|served time for|on (?:probation|parole) for|condamn[ée]e?{_YEAR} (?:pour|à)|"
               rf"condenad[oa]{_YEAR} (?:por|a)|verurteilt{_YEAR} (?:wegen|zu)|condannat[oa]{_YEAR} (?:per|a)|"
               rf"veroordeeld{_YEAR} (?:voor|wegens|tot)|arrestat[oa]{_YEAR} per|detenid[oa]{_YEAR} por|"
               rf"pres[oa]{_YEAR} por")
# a record as a noun: "a 2016 conviction for DUI", "a prior conviction for assault", "eine Vorstrafe wegen Betrugs",
# "precedenti penali per spaccio", "serving four years for aggravated burglary"
_RECORD_NOUN = (r"(?:(?:prior|previous|past|criminal|misdemeanou?r|felony|[0-9]{4}) )+convictions? (?:for|of)|"
                r"convictions? for|criminal record for|"
                r"serv(?:ed|ing) (?:time|\w+ (?:years?|months?)) for|vorstrafen? wegen|precedenti penali per|"
                r"ant[ée]c[ée]dents judiciaires pour|antecedentes penales por|casier judiciaire pour|"
                r"strafblad voor|antecedentes criminais por")
_CONVICTED = compile_linear(
    r"(?i)((?:^|[^\pL])(?:(?:was|were|has been|had been|have been|got|is|been|a été|ha sido|fue|foi|wurde|ist|"
    rf"è stat[oa]|werd)[ \t]+)?(?:{_CONVICTION}|{_RECORD_NOUN}))[ \t]+\pL")
_CONVICTION_VERB = re.compile(rf"(?i)(?:{_CONVICTION}|{_RECORD_NOUN})")
_RECORD_NOUN_START = re.compile(rf"(?i){_RECORD_NOUN}")
_NAME_START = re.compile(r"[A-Z][a-zà-ÿ]")
_CHARGED_AFTER = re.compile(r"(?i)(?:\b(?:was|were|been|being|is|got)|,)\s*$")
# "a misdemeanor shoplifting conviction", "a registered Green Party member": the record before its noun
_RECORD_BEFORE = compile_linear(r"(?i)(?:^|[^\pL])((?:misdemeanou?r|felony|dui|dwi|drink[- ]driving|assault|fraud|theft|"
                                r"drugs?|possession|burglary|shoplifting)(?: [\pL]+){0,2} convictions?)(?:[^\pL]|$)")
_PARTY_ROLE = compile_linear(r"(?i)(?:^|[^\pL])((?-i:\p{Lu}[\pL'’-]+(?: (?:\p{Lu}[\pL'’-]+|UK|US)){0,3})(?: party)? "
                             r"(?:members?|supporters?|voters?|activists?|donors?|candidates?))(?:[^\pL]|$)")
# what for, not a duty or a place ("charged with the conduct of", "arrested on the high seas")
_OFFENCE = re.compile(r"[ \t]+(?!(?:the|its|their|our|his|her|my|your|this|that|these|those|an)\b)[^.;\n?!]{2,80}?(?=[.;\n?!]|$|,? (?:and|but|so|because|which|who|est-ce|posso|can)\b)")
# a party member by role or a registered voter: any name will do ("militant de La France insoumise")
_BY_ROLE = re.compile(r"(?i)militant|adh[ée]rent|registered as|afiliad|canvass")
_VOTED = re.compile(r"(?i)vot(?:e|es|ed|ing|a|o|é|ó|amos|aba|ei|ou|erà|ato)\b|wählt|gewählt")  # a person's vote is an opinion whatever for
_PARTY = re.compile(rf"(?i)\b(?:{_UNION_NAMES}|party|partei|parti|partido|partito|partij|democrats?|republicans?|labour|tory|tories|"
                    r"conservatives?|greens?|liberals?|socialists?|communists?|union|(?:far|extreme|hard|radical|alt)[- ]"
                    r"(?:right|left)|gewerkschaft|syndicat|sindicato|sindacato|vakbond|teamsters)\b"
                    r"|\b(?:SPD|CDU|CSU|AfD|FDP|BSW|PSOE|PP|RN|LFI|PD|PVV|VVD|GOP|SNP|ANC|BJP|DSA|PiS|KO|CDA|D66|PvdA)\b"
                    # parties by name
                    r"|(?i:reform uk|lib ?dems?|liberal democrats|plaid cymru|sinn f[ée]in|fine gael|fianna f[áa]il|"
                    r"die linke|gr[üu]nen?|renaissance|les r[ée]publicains|reconqu[êe]te|la france insoumise|vox|"
                    r"podemos|sumar|fratelli d'italia|lega|movimento 5 stelle|forza italia|groenlinks|chega|"
                    r"democratic socialists)")


_CUES = RegexSet([_STATE_CUE, _JOIN_CUE, _UNION_ROLE, _PARTY_ROLE, _RECORD_BEFORE, _STATE_THEN_VERB, _STATE_IN_BRACKETS,
                  _CAME_OUT, _CONVICTED])


def find_special_categories(text: str) -> Iterator[Span]:
    """Each orientation, religion, political opinion, union membership or criminal record the text ties
    to a person, as (kind, start, end)."""
    present = _CUES.present(text)  # one pass: most texts hold no cue at all

    def spans(regex, groups):
        return group_spans(regex, text, groups) if regex in present else []

    found: dict[tuple[int, int], str] = {}

    def someones(cue_start: int, cue_end: int, *, noun: bool = False) -> bool:
        """A person is the verb's subject, or the verb follows "and" after another of their findings
        ("es testigo de Jehová y vota a Podemos"); for a record written as a noun ("a conviction for",
        "Mitglied der"), someone named in the sentence before it."""
        return has_subject(text, cue_start, cue_end, named=True) or (noun and mentions_person(text, cue_start)) or (
            follows_a_finding(text, cue_start, (end for _, end in found)))

    for ((cue_start, cue_end),) in spans(_STATE_CUE, (1,)):
        m = _STATE_AFTER.match(text, cue_end)
        if m and not supposed(text, cue_end) and someones(cue_start, cue_end):
            found.setdefault(m.span(m.lastgroup), m.lastgroup)
    for ((cue_start, cue_end),) in spans(_JOIN_CUE, (1,)):
        m = _JOIN_AFTER.match(text, cue_end)
        voted = _VOTED.search(text, cue_start, cue_end) is not None
        if m is None or supposed(text, cue_end) or not (
                voted or _BY_ROLE.search(text, cue_start, cue_end) or _PARTY.search(m.group())):
            continue  # "a member of the Rotary Club": no party, no union
        end = m.start() + len(_TRAILING_WORDS.sub("", m.group()))  # "the Green Party and": not "and"
        if text[m.start():end] not in ("", "the") and someones(cue_start, cue_start, noun=True):
            found.setdefault((m.start(), end), "trade_union" if _UNION.search(m.group()) else "political_opinion")
    for ((start, end),) in spans(_UNION_ROLE, (1,)):
        found.setdefault((start, end), "trade_union")
    for ((start, end),) in spans(_PARTY_ROLE, (1,)):
        if _PARTY.search(text, start, end) and not supposed(text, start) and mentions_person(text, start):
            found.setdefault((start, end), "trade_union" if _UNION.search(text[start:end]) else "political_opinion")
    for ((start, end),) in spans(_RECORD_BEFORE, (1,)):
        if not supposed(text, start) and mentions_person(text, start):
            found.setdefault((start, end), "criminal_record")
    for (state_start, state_end), (verb, _) in spans(_STATE_THEN_VERB, (1, 2)):
        m = _STATE_AFTER.match(" " + text[state_start:state_end])  # "dass sie jüdisch ist"
        if m and not supposed(text, state_start) and has_subject(text, state_start, state_start, named=True):
            found.setdefault((state_start, state_end), m.lastgroup)
    for ((start, end),) in spans(_STATE_IN_BRACKETS, (1,)):
        if (m := _STATE_AFTER.match(" " + text[start:end])) is not None:
            found.setdefault((start, end), m.lastgroup)
    for (_, (start, end)) in spans(_CAME_OUT, (1, 2)):
        if not supposed(text, start):
            found.setdefault((start, end), "sexual_orientation")
    for ((cue_start, cue_end),) in spans(_CONVICTED, (1,)):
        m = _OFFENCE.match(text, cue_end)
        verb = _CONVICTION_VERB.search(text, cue_start, cue_end)
        if verb.group().lower().startswith("charged") and not _CHARGED_AFTER.search(text, max(0, verb.start() - 12),
                                                                                     verb.start()):
            continue  # "he charged with folly", "the wool charged with that sum": one charged, not someone charged
        noun = _RECORD_NOUN_START.match(verb.group()) is not None  # "a conviction for": no verb, no subject
        if m and verb.group().lower().startswith("serv") and _NAME_START.match(m.group().lstrip()):
            continue  # "Jacob served seven years for Rachel": for someone, not for an offence
        if m and not supposed(text, cue_start) and someones(cue_start, cue_start, noun=noun):  # the span leaves out "was", "a été"
            found.setdefault((verb.start(), m.end()), "criminal_record")
    for (start, end), kind in sorted(found.items()):
        yield kind, start, end
