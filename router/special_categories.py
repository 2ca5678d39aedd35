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

from router.linear_regex import compile_linear, group_spans
from router.subjects import AND_THEN, WINDOW, has_subject, supposed

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
_JOINS = (r"(?:an? )?(?:active |paying |founding |long-time |registered |card-carrying |lifelong |proud )?"
          r"(?:member|supporter|volunteer|activist|candidate|organi[sz]er|donor|delegate) (?:of|for|to|in)|"
          r"votes? for|voted for|voting for|campaigns? for|campaigned for|joined|mitglied (?:der|im|in der)|"
          r"membre (?:du|de la|des)|(?:afiliad[oa]|militante) (?:al|a la|del)|iscritt[oa] (?:al|alla|a)|"
          r"filiad[oa] (?:ao|à)|lid van|vot(?:a|o|é|ó|amos|aba|ei|ou|erà|ato) (?:a|al|por|per|para|no|na|em|in)|"
          r"vote pour|wählt|gewählt")
_ARTICLE = r"(?:the|der|die|das|du|de la|des|del|al|el|la|le|les|il|lo|los|o|a|ao|à|de|het)[ \t]+"
_PARTY_OR_UNION = (r"(?:(?:far|extreme|hard|radical|alt)[- ](?:right|left))|(?:\p{Lu}[\pL'’.-]*|of|the|for|and|de|la|del|der|die)(?:[ \t]+(?:\p{Lu}[\pL'’.-]*|of|the|for|"
                   r"and|de|la|del|der|die)){0,4}")
_UNION = compile_linear(r"(?i)\b(?:union|gewerkschaft|syndicat|sindicato|sindacato|vakbond|teamsters)\b")
_UNION_STATE = (r"in the union|a union member|a member of the union|a shop steward|(?:un |una )?sindicalizad[oa]|"
                r"syndiqu[ée]e?|gewerkschaftsmitglied|in der gewerkschaft|iscritt[oa] al sindacato|vakbondslid")

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
_CONVICTION = (rf"convicted{_YEAR} (?:of|for)|arrested{_YEAR} (?:for|on)|(?:was|were|been|being|is|got) charged{_YEAR} with|jailed{_YEAR} for|"
               rf"imprisoned{_YEAR} for|sentenced{_YEAR} (?:to|for)|indicted{_YEAR} (?:for|on)|incarcerated{_YEAR} for|"
               rf"pleaded guilty to|served time for|on (?:probation|parole) for|condamn[ée]e?{_YEAR} (?:pour|à)|"
               rf"condenad[oa]{_YEAR} (?:por|a)|verurteilt{_YEAR} (?:wegen|zu)|condannat[oa]{_YEAR} (?:per|a)|"
               rf"veroordeeld{_YEAR} (?:voor|wegens|tot)|arrestat[oa]{_YEAR} per|detenid[oa]{_YEAR} por|"
               rf"pres[oa]{_YEAR} por")
_CONVICTED = compile_linear(
    r"(?i)((?:^|[^\pL])(?:(?:was|were|has been|had been|have been|got|is|been|a été|ha sido|fue|foi|wurde|ist|"
    rf"è stat[oa]|werd)[ \t]+)?(?:{_CONVICTION}))[ \t]+\pL")
_CONVICTION_VERB = re.compile(rf"(?i)(?:{_CONVICTION})")
# what for, not a duty or a place ("charged with the conduct of", "arrested on the high seas")
_OFFENCE = re.compile(r"[ \t]+(?!(?:the|its|their|our|his|her|my|your|this|that|these|those|an)\b)[^.;\n?!]{2,80}?(?=[.;\n?!]|$|,? (?:and|but|so|because|which|who|est-ce|posso|can)\b)")
_VOTED = re.compile(r"(?i)vot(?:e|es|ed|ing|a|o|é|ó|amos|aba|ei|ou|erà|ato)\b|wählt|gewählt")  # a person's vote is an opinion whatever for
_PARTY = re.compile(r"(?i)\b(?:party|partei|parti|partido|partito|partij|democrats?|republicans?|labour|tory|tories|"
                    r"conservatives?|greens?|liberals?|socialists?|communists?|union|(?:far|extreme|hard|radical|alt)[- ]"
                    r"(?:right|left)|gewerkschaft|syndicat|sindicato|sindacato|vakbond|teamsters)\b"
                    r"|\b(?:SPD|CDU|CSU|AfD|FDP|PSOE|PP|RN|LFI|PD|PVV|VVD|GOP|SNP|ANC|BJP)\b")


def find_special_categories(text: str) -> Iterator[Span]:
    """Each orientation, religion, political opinion, union membership or criminal record the text ties
    to a person, as (kind, start, end)."""
    found: dict[tuple[int, int], str] = {}

    def someones(cue_start: int, cue_end: int) -> bool:
        """A person is the verb's subject, or the verb follows "and" after another of their findings
        ("es testigo de Jehová y vota a Podemos")."""
        return has_subject(text, cue_start, cue_end, named=True) or (
            AND_THEN.search(text, max(0, cue_start - 8), cue_start + 1) is not None
            and any(0 < cue_start - end < WINDOW for _, end in found))

    for ((cue_start, cue_end),) in group_spans(_STATE_CUE, text, (1,)):
        m = _STATE_AFTER.match(text, cue_end)
        if m and not supposed(text, cue_end) and someones(cue_start, cue_end):
            found.setdefault(m.span(m.lastgroup), m.lastgroup)
    for ((cue_start, cue_end),) in group_spans(_JOIN_CUE, text, (1,)):
        m = _JOIN_AFTER.match(text, cue_end)
        voted = _VOTED.search(text, cue_start, cue_end) is not None
        if m is None or supposed(text, cue_end) or not (voted or _PARTY.search(m.group())):
            continue  # "a member of the Rotary Club": no party, no union
        end = m.start() + len(_TRAILING_WORDS.sub("", m.group()))  # "the Green Party and": not "and"
        if text[m.start():end] not in ("", "the") and someones(cue_start, cue_start):
            found.setdefault((m.start(), end), "trade_union" if _UNION.search(m.group()) else "political_opinion")
    for (_, (start, end)) in group_spans(_CAME_OUT, text, (1, 2)):
        if not supposed(text, start):
            found.setdefault((start, end), "sexual_orientation")
    for ((cue_start, cue_end),) in group_spans(_CONVICTED, text, (1,)):
        m = _OFFENCE.match(text, cue_end)
        if m and not supposed(text, cue_start) and someones(cue_start, cue_start):
            verb = _CONVICTION_VERB.search(text, cue_start, cue_end)  # the span leaves out "was", "a été"
            found.setdefault((verb.start(), m.end()), "criminal_record")
    for (start, end), kind in sorted(found.items()):
        yield kind, start, end
