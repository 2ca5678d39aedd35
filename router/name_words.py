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
