"""The words router/names.py weighs around a cue: those that follow a name in lower case, those that
end one, and the capitalised ones that name no one; column headings and field words that name
people or things. Data only, kept apart from the rules that read it."""

from __future__ import annotations

FOLLOWS_A_NAME = frozenset("""
is was has had says said keeps kept just got gets told tells wants wanted needs asked called texted sent gave took
made bought borrowed went left came will would can can't cannot didn't doesn't won't isn't wasn't hasn't
cant didnt doesnt wont isnt wasnt hasnt couldnt wouldnt shouldnt
also still always never finally recently
""".split())
# What a bare `name` field names when the word before it says so: not a person.
THING_NAMES = frozenset("""
project product company file brand host code team domain event business app application package model variable
field table column database server device network street city country store shop item course book song album
film movie game pet dog cat ship group channel folder branch class function method
module service bucket key plan org organisation organization
""".split())
# Words that end a lower-case name: "my name is john and ...", "my name is not important".
NOT_LOWER_NAMES = frozenset("""
a an and or but so is was be been being am are in on at of for with by from as to too also just really very
quite pretty kinda sort kind long short common unusual weird strange funny hard difficult easy unique rare
written spelled spelt pronounced listed printed shown mentioned given missing wrong correct fine same different
similar like irrelevant important private secret confidential anonymous hidden taken used included
its his her their our your my me i you he she we they them him us if because since when then than has had have
does did do will would can could should said says told wants wanted needs keeps kept is's isn't doesn't
called sake saying being having going doing thinking asking telling
""".split())
# Capitalised words a cue is followed by that name no one: titles ("Mr. President"), generic
# addressees ("Dear Customer", "Hey Siri"), days, and what follows "call me" or "I'm".
NOT_NAMES = frozenset("""
president speaker chairman chairwoman chair secretary justice chief vice mayor governor senator ambassador
minister prime commissioner director clerk deputy majority minority leader right honorable honourable editor
chancellor sir madam madame mister sheriff judge general colonel captain major lieutenant sergeant officer
präsident präsidentin bundeskanzler président présidente presidente ministre ministro
customer customers team all everyone everybody friends friend colleagues colleague hiring manager members
member valued parents parent students student sirs mom mum dad mother father god lord santa diary user users
reader readers applicant candidate guest guests patient client tenant neighbour neighbor support sales admin
doc folks guys gang people man dude bro sis mate pal babe y'all
finance hr it legal marketing engineering operations accounting accounts procurement security facilities
management department dept office republic republics state states nation nations church city
congress senate parliament court committee board council government behold hath doth
monday tuesday wednesday thursday friday saturday sunday january february march april may june july august
september october november december tomorrow today tonight later maybe now soon back anytime please again
i'm i’m i'd i'll i've it's that's there's let's we're you're he's she's they're
the this that there here it he she they we you his her their our your my mine yes no ok okay not thanks thank
master mistress son daughter brother sister uncle aunt doctor teacher boss coach baby honey darling sweetie
google siri alexa cortana bixby chatgpt gemini copilot
hello hi hey dear dearest hallo hola bonjour ciao salut coucou hej moin servus olá
world male female unknown none null true false n/a who what where when which why how
info warn warning error debug trace fatal critical notice system assistant bot server note update edit status log
mr mrs ms mx dr prof sr sra srta sig mme mlle dhr mevr herr frau monsieur señor señora señorita signor
signora signorina professor missus mevrouw meneer
""".split())
# A table's column headed by one of these holds people's names.
PERSON_COLUMNS = frozenset("""
name fullname firstname lastname givenname surname employee employeename manager supervisor customer customername
client clientname patient patientname contact contactname owner assignee student teacher member attendee guest
tenant applicant candidate driver nurse doctor physician reviewer author reporter requester recipient sender
parent child spouse emergencycontact person participant user username staff agent representative
""".split())
# Words that follow a name in scripts without case, where the cue's two-word name would take them:
# Hindi postpositions and verbs of being ("मेरे भाई अमित से बात करो": अमित, not "अमित से"), Arabic
# prepositions and pronouns.
CASELESS_AFTER_NAME = frozenset("""
से को का की के ने है हैं था थी थे और भी ही तो में पर जी वह यह कल आज अब
في من إلى الى على عن مع هو هي كان كانت
""".split())
# A relation or a role in someone's life, after a possessive, in the languages people write about their
# families and colleagues in: what a name after it belongs to ("my son David", "mijn schoonvader Gerrit").
RELATION = (
    r"(?:(?:my|his|her|our|their|your)(?: [a-z0-9-]+)?(?: [a-z-]+(?:'s|’s))? "
    r"(?:son|daughter|kid|child|baby|wife|husband|partner|spouse|boyfriend|girlfriend|bf|gf|fianc[ée]e?|brother|"
    r"sister|sibling|mother|father|mom|mum|dad|mama|papa|"
    r"grandma|grandpa|grandmother|grandfather|granny|nana|grandson|granddaughter|aunt|uncle|cousin|niece|nephew|"
    r"friend|buddy|colleague|coworker|co-worker|boss|manager|supervisor|intern|employee|assistant|teacher|tutor|"
    r"student|doctor|dentist|therapist|nurse|neighbou?r|landlord|landlady|tenant|roommate|flatmate|housemate|ex|"
    r"client|patient|lawyer|attorney|accountant|coach|mentor|classmate|teammate|co-?founder|caregiver|babysitter|"
    r"nanny|stepson|stepdaughter|stepmother|stepfather|[a-z]+-in-law|ex-wife|ex-husband|ex-boyfriend|"
    r"ex-girlfriend|stepbrother|stepsister|half-brother|half-sister|godmother|godfather|godson|goddaughter|"
    r"electrician|plumber|builder|mechanic|cleaner|trainer|physio|psychiatrist|psychologist|counsell?or|"
    r"pharmacist|surgeon|solicitor|realtor|carer|pen ?pal)|"
    r"(?:mi|mis|tu|su) (?:hija|hijo|esposa|esposo|marido|mujer|madre|padre|mamá|papá|hermana|hermano|abuela|abuelo|ex|"
    r"amiga|amigo|jefe|jefa|novia|novio|tía|tío|prima|primo|compañera|compañero|vecina|vecino|suegr[oa]|"
    r"cuñad[oa]|sobrin[oa]|niet[oa]|pareja|caser[oa]|médic[oa]|doctora|profesora?)|"
    r"(?:mein|meine|meinem|meiner|meinen|sein|seine|ihr|ihre) (?:sohn|tochter|frau|mann|mutter|vater|bruder|"
    r"schwester|oma|opa|freund|freundin|kollege|kollegin|chef|chefin|nachbar|nachbarin|tante|onkel|enkel|enkelin|"
    r"partner|partnerin|mitbewohner|mitbewohnerin|cousin|cousine|schwager|schwägerin|schwiegervater|"
    r"schwiegermutter|neffe|nichte|vermieter|vermieterin|mieter|mieterin|arzt|ärztin|lehrer|lehrerin)|"
    r"(?:mon|ma|son|sa) (?:fils|fille|femme|mari|mère|père|frère|sœur|soeur|ami|amie|collègue|patron|patronne|"
    r"voisin|voisine|copain|copine|grand-mère|grand-père|tante|oncle|cousin|cousine|beau-père|belle-mère|"
    r"beau-frère|belle-sœur|colocataire|coloc|propriétaire|locataire|médecin|neveu|nièce)|"
    r"(?:mijn|zijn|haar) (?:zoon|dochter|vrouw|man|moeder|vader|broer|zus|zuster|vriend|vriendin|collega|baas|"
    r"buurman|buurvrouw|oma|opa|tante|oom|schoonvader|schoonmoeder|schoonzus|zwager|neef|nicht|huisgenoot|"
    r"huisbaas|huisarts|leraar|lerares)|"
    r"(?:il mio|la mia|mio|mia) (?:figlio|figlia|moglie|marito|madre|padre|fratello|sorella|amico|amica|collega|"
    r"capo|nonna|nonno|zia|zio|vicino|vicina|cugino|cugina|suocero|suocera|cognato|cognata|nipote|"
    r"coinquilino|coinquilina|fidanzato|fidanzata|medico)|"
    r"(?:o meu|a minha|meu|minha) (?:filho|filha|esposa|marido|mulher|mãe|pai|irmão|irmã|amigo|amiga|colega|chefe|"
    r"avó|avô|tia|tio|vizinho|vizinha|sogro|sogra|cunhado|cunhada|sobrinho|sobrinha|primo|prima|namorado|"
    r"namorada|esposo|neto|neta|senhorio)|"
    r"(?:mój|moja|mojego|mojej|mojemu) (?:brat|siostra|mąż|żona|syn|córka|tata|ojciec|mama|matka|przyjaciel|"
    r"przyjaciółka|kolega|koleżanka|szef|szefowa|sąsiad|sąsiadka|chłopak|dziewczyna|dziadek|babcia|wujek|ciocia|"
    r"kuzyn|kuzynka)|"
    r"(?:mera|meri|mere) (?:dost|bhai|behen|behan|maa|papa|pitaji|patni|pati|beta|beti|saathi|dada|dadi|nana|nani|"
    r"chacha|chachi|mama|mami|boss)|"
    r"annem|babam|eşim|kocam|karım|kardeşim|ablam|abim|oğlum|kızım|arkadaşım|"
    r"(?:mama|baba|mke|mume|kaka|dada|mtoto|rafiki) (?:yangu|wangu))")
# A person's role in a record, before their name ("Client Rana Haddad", "taxpayer Friederike Ostermann").
ROLE = (r"patient|client|customer|tenant|employee|applicant|defendant|plaintiff|claimant|witness|student|"
       r"contractor|borrower|guarantor|user|member|driver|passenger|resident|subscriber|candidate|pt|new hire|"
       r"new starter|titulaire|titular|titolare|beneficiary|payee|addressee|account holder|card ?holder|paciente|"
       r"paziente|patiente|patientin|medewerker|mitarbeiter(?:in)?|employée?|empleado|dipendente|taxpayer|"
       r"policyholder|insured|traveller|traveler|registered keeper")
