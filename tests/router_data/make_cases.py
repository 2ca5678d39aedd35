"""Writes tests/router_data/generated_cases.jsonl: the generated part of the labelled privacy set.

    python tests/router_data/make_cases.py

Deterministic (fixed seed). Every value with a check digit is computed to be
valid (python-stdnum's own validators confirm each one), phone numbers are
valid in their numbering plan (phonenumbers), secrets are random strings in
the vendors' formats. Values are set in sentence templates in seven
languages, and a share of them is written the ways people hide or mangle
values: full-width or Arabic-Indic digits, non-breaking and zero-width
spaces, dots, underscores or slashes as separators, lower case, `[at]`, a
line break inside the value, a value split across two chat messages. Hard
negatives (order numbers, timestamps, dates, prices, versions, hashes, prose
about passwords) come in the same languages. None of the values belongs to
anyone, as far as we know.

Each line: {"text": ..., "entities": [[kind, value], ...], "lang": ..., "form": ...}
or, for a value split across messages, {"messages": [...], "entities": [[kind, message, part], ...]};
a negative has "entities": [].
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable
from pathlib import Path

import phonenumbers
from stdnum import iban, luhn, verhoeff
from stdnum.au import tfn
from stdnum.be import nn
from stdnum.br import cpf
from stdnum.ca import sin
from stdnum.ch import ssn as ch_ssn
from stdnum.cn import ric
from stdnum.de import idnr
from stdnum.dk import cpr
from stdnum.es import dni, nie
from stdnum.fi import hetu
from stdnum.fr import nir
from stdnum.ie import pps
from stdnum.in_ import aadhaar, pan
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.no import fodselsnummer
from stdnum.pl import pesel
from stdnum.pt import nif
from stdnum.se import personnummer
from stdnum.us import ssn
from stdnum.za import idnr as za_idnr

OUT = Path(__file__).with_name("generated_cases.jsonl")
R = random.Random(20261129)
DIGITS = string.digits
ALNUM = string.ascii_letters + string.digits


def digits(n: int, first: str = DIGITS) -> str:
    return R.choice(first) + "".join(R.choice(DIGITS) for _ in range(n - 1))


def until(make: Callable[[], str], valid: Callable[[str], bool]) -> str:
    while True:
        value = make()
        if valid(value):
            return value


def date6(order: str = "dmy") -> str:
    d, m, y = R.randint(1, 28), R.randint(1, 12), R.randint(40, 99)
    parts = {"d": f"{d:02d}", "m": f"{m:02d}", "y": f"{y:02d}"}
    return "".join(parts[c] for c in order)


# --- values: (kind, printed value, keyword needed) ------------------------------------------------------

def card() -> str:
    prefix, length = R.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("37", 15), ("6011", 16)])
    body = prefix + digits(length - len(prefix) - 1)
    number = body + luhn.calc_check_digit(body)
    if length == 15:
        return f"{number[:4]} {number[4:10]} {number[10:]}"
    return R.choice([" ", "-", ""]).join(number[i:i + 4] for i in range(0, 16, 4))


def iban_value() -> str:
    country, bban = R.choice([
        ("DE", lambda: digits(18)), ("GB", lambda: "".join(R.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) + digits(14)),
        ("NL", lambda: R.choice(["ABNA", "RABO", "INGB"]) + digits(10)), ("AT", lambda: digits(16)),
        ("CH", lambda: digits(17)), ("IE", lambda: "AIBK" + digits(14)),
    ])
    value = until(lambda: country + f"{R.randint(2, 98):02d}" + bban(), iban.is_valid)
    return " ".join(value[i:i + 4] for i in range(0, len(value), 4)) if R.random() < 0.7 else value


def national() -> tuple[str, str, bool]:
    kind = R.choice(list(NATIONAL))
    value, needs_keyword = NATIONAL[kind]()
    return kind, value, needs_keyword


def _ssn() -> tuple[str, bool]:
    v = until(lambda: digits(9, "1234567"), ssn.is_valid)
    return (f"{v[:3]}-{v[3:5]}-{v[5:]}", False) if R.random() < 0.7 else (v, True)


def _hetu() -> str:
    base = date6() + digits(3)
    while int(base[6:]) < 2:
        base = date6() + digits(3)
    check = "0123456789ABCDEFHJKLMNPRSTUVWXY"[int(base) % 31]
    return f"{base[:6]}{R.choice('-A')}{base[6:]}{check}"


def _cf() -> str:
    letters = "".join(R.choice(string.ascii_uppercase) for _ in range(6))
    body = letters + f"{R.randint(40, 99)}" + R.choice("ABCDEHLMPRST") + f"{R.randint(1, 28):02d}" + \
        R.choice(string.ascii_uppercase) + digits(3)
    return body + codicefiscale.calc_check_digit(body)


def _nir() -> str:
    body = R.choice("12") + f"{R.randint(40, 99)}{R.randint(1, 12):02d}{R.randint(1, 95):02d}" + digits(3) + digits(3)
    if body[5:7] == "20":
        body = body[:5] + "21" + body[7:]
    key = 97 - int(body) % 97
    v = body + f"{key:02d}"
    return f"{v[0]} {v[1:3]} {v[3:5]} {v[5:7]} {v[7:10]} {v[10:13]} {v[13:]}" if R.random() < 0.6 else v


def _aadhaar() -> tuple[str, bool]:
    v = until(lambda: (lambda b: b + verhoeff.calc_check_digit(b))(digits(11, "23456789")), aadhaar.is_valid)
    return (f"{v[:4]} {v[4:8]} {v[8:]}", False) if R.random() < 0.6 else (v, True)


def _nino() -> str:
    first = R.choice("ABCEGHJKLMNOPRSTWXYZ")
    second = R.choice("ABCEGHJKLMNPRSTWXYZ")
    while first + second in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
        second = R.choice("ABCEGHJKLMNPRSTWXYZ")
    d = digits(6)
    return f"{first}{second} {d[:2]} {d[2:4]} {d[4:]} {R.choice('ABCD')}" if R.random() < 0.6 else f"{first}{second}{d}{R.choice('ABCD')}"


def _be() -> str:
    base = date6("ymd") + digits(3)
    v = base + f"{97 - int(base) % 97:02d}"
    return f"{v[:2]}.{v[2:4]}.{v[4:6]}-{v[6:9]}.{v[9:]}"


def _ric() -> str:
    base = "110105" + f"19{R.randint(40, 99)}{R.randint(1, 12):02d}{R.randint(1, 28):02d}" + digits(3)
    return next(base + c for c in "0123456789X" if ric.is_valid(base + c))


NATIONAL: dict[str, Callable[[], tuple[str, bool]]] = {
    "us_ssn": _ssn,
    "nl_bsn": lambda: (until(lambda: digits(9, "123456"), bsn.is_valid), True),
    "de_idnr": lambda: (lambda v: (f"{v[:2]} {v[2:5]} {v[5:8]} {v[8:]}", False) if R.random() < 0.4 else (v, True))(
        until(lambda: digits(11, "123456789"), idnr.is_valid)),
    "pl_pesel": lambda: (until(lambda: date6("ymd") + digits(5), pesel.is_valid), True),
    "br_cpf": lambda: (lambda v: (f"{v[:3]}.{v[3:6]}.{v[6:9]}-{v[9:]}", False))(until(lambda: digits(11), cpf.is_valid)),
    "ca_sin": lambda: (lambda v: (f"{v[:3]} {v[3:6]} {v[6:]}", True))(
        until(lambda: (lambda b: b + luhn.calc_check_digit(b))(digits(8, "1234567")), sin.is_valid)),
    "pt_nif": lambda: (until(lambda: digits(9, "12"), nif.is_valid), True),
    "au_tfn": lambda: (lambda v: (f"{v[:3]} {v[3:6]} {v[6:]}", True))(until(lambda: digits(9), tfn.is_valid)),
    "in_aadhaar": _aadhaar,
    "in_pan": lambda: ("".join(R.choice(string.ascii_uppercase) for _ in range(3)) + "P" + R.choice(string.ascii_uppercase)
                       + digits(4) + R.choice(string.ascii_uppercase), False),
    "gb_nino": lambda: (_nino(), False),
    "es_dni": lambda: (lambda n: (n + "TRWAGMYFPDXBNJZSQVHLCKE"[int(n) % 23], False))(digits(8)),
    "es_nie": lambda: (lambda p, n: (p + n + "TRWAGMYFPDXBNJZSQVHLCKE"[int(str("XYZ".index(p)) + n) % 23], False))(
        R.choice("XYZ"), digits(7)),
    "it_codice_fiscale": lambda: (_cf(), False),
    "fr_nir": lambda: (_nir(), False),
    "se_personnummer": lambda: (lambda b: (f"{b[:6]}-{b[6:]}" + luhn.calc_check_digit(b), False))(date6("ymd") + digits(3)),
    "dk_cpr": lambda: (until(lambda: date6() + "-" + digits(4), cpr.is_valid), True),
    "no_fodselsnummer": lambda: (until(lambda: date6() + digits(5), fodselsnummer.is_valid), True),
    "fi_hetu": lambda: (_hetu(), False),
    "be_nn": lambda: (_be(), False),
    "ch_ahv": lambda: (lambda v: (f"{v[:3]}.{v[3:7]}.{v[7:11]}.{v[11:]}", False))(
        until(lambda: "756" + digits(10), ch_ssn.is_valid)),
    "cn_ric": lambda: (_ric(), False),
    "ie_pps": lambda: (until(lambda: digits(7) + R.choice("ABCDEFGHIJKLMNOPQRSTUVW"), pps.is_valid), True),
    "za_idnr": lambda: (until(lambda: (lambda b: b + luhn.calc_check_digit(b))(date6("ymd") + digits(4) + "08"),
                              za_idnr.is_valid), True),
}

# A word that names each ID, in the spellings people use; one is picked per text.
KEYWORDS = {
    "us_ssn": ["SSN", "Social Security number", "social_security_number=", "SSN#"],
    "nl_bsn": ["BSN:", "burgerservicenummer", "BSN-nummer", "bsn="],
    "de_idnr": ["Steuer-ID", "Steuer-ID:", "steuerliche Identifikationsnummer", "Steuer ID", "steuer_id="],
    "pl_pesel": ["PESEL", "numer PESEL:", "pesel="],
    "br_cpf": ["CPF", "CPF:"],
    "ca_sin": ["SIN", "Social Insurance Number", "NAS"],
    "pt_nif": ["NIF", "NIF:", "número de contribuinte"],
    "au_tfn": ["TFN", "tax file number"],
    "in_aadhaar": ["Aadhaar", "aadhaar_number=", "Aadhar no.", "UIDAI number"],
    "in_pan": ["PAN", "PAN card"],
    "gb_nino": ["National Insurance number", "NI number", "NINO:"],
    "es_dni": ["DNI", "DNI:"],
    "es_nie": ["NIE", "NIE:"],
    "it_codice_fiscale": ["codice fiscale", "CF:"],
    "fr_nir": ["N° de sécurité sociale", "numéro de sécu", "NIR"],
    "se_personnummer": ["personnummer", "personnr"],
    "dk_cpr": ["CPR-nummer", "CPR:", "cpr nr."],
    "no_fodselsnummer": ["fødselsnummer", "fodselsnummer:"],
    "fi_hetu": ["henkilötunnus", "HETU"],
    "be_nn": ["rijksregisternummer", "numéro national"],
    "ch_ahv": ["AHV-Nummer", "AVS"],
    "cn_ric": ["身份证号", "resident ID"],
    "ie_pps": ["PPS number", "PPSN:"],
    "za_idnr": ["South African ID", "SA ID number", "identity number"],
}

PHONE_REGIONS = ["US", "GB", "DE", "FR", "IN", "ES", "IT", "NL", "AU", "BR", "MX", "PL", "PT", "CH", "AT", "BE",
                 "SE", "IE", "ZA", "CN"]


def phone() -> str:
    region = R.choice(PHONE_REGIONS)
    kind = R.choice([phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE])
    example = phonenumbers.example_number_for_type(region, kind)
    while True:
        national = str(example.national_number)
        keep = 3 if len(national) > 8 else 2
        candidate = national[:keep] + digits(len(national) - keep)
        number = phonenumbers.PhoneNumber(country_code=example.country_code, national_number=int(candidate))
        if example.italian_leading_zero:
            number.italian_leading_zero = True
        if phonenumbers.is_valid_number(number):
            style = phonenumbers.PhoneNumberFormat.INTERNATIONAL if R.random() < 0.35 else \
                phonenumbers.PhoneNumberFormat.NATIONAL
            return phonenumbers.format_number(number, style)


def email() -> str:
    first = R.choice(["maria", "jan", "li.wei", "o.nowak", "giulia", "joao", "anne-marie", "sven", "priya", "ahmed"])
    last = R.choice(["schmidt", "dubois", "garcia", "rossi", "silva", "de.vries", "kowalski", "patel", "smith"])
    domain = R.choice(["gmail.com", "web.de", "orange.fr", "telefonica.es", "libero.it", "sapo.pt", "ziggo.nl",
                       "acme-corp.com", "uni-heidelberg.de", "example.co.uk"])
    return f"{first}.{last}{R.choice(['', str(R.randint(1, 99))])}@{domain}"


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(R.choice(alphabet) for _ in range(n))


def jwt() -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).decode().rstrip("=")
    payload = base64.urlsafe_b64encode(json.dumps({"sub": rand(8), "iat": R.randint(1.6e9, 1.8e9)}).encode())
    return f"{header}.{payload.decode().rstrip('=')}.{rand(43, ALNUM + '-_')}"


VENDOR = {
    "openai_key": lambda: R.choice(["sk-proj-", "sk-"]) + rand(48, ALNUM + "_-"),
    "anthropic_key": lambda: "sk-ant-api03-" + rand(80, ALNUM + "_-") + "AA",
    "huggingface_token": lambda: "hf_" + rand(34, string.ascii_letters),
    "gitlab_token": lambda: "glpat-" + rand(20, ALNUM + "_-"),
    "npm_token": lambda: "npm_" + rand(36),
    "github_token": lambda: R.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + rand(36),
    "slack_token": lambda: R.choice(["xoxb-", "xoxp-"]) + digits(12) + "-" + digits(13) + "-" + rand(24),
    "slack_webhook": lambda: f"https://hooks.slack.com/services/T{rand(8).upper()}/B{rand(8).upper()}/{rand(24)}",
    "stripe_key": lambda: R.choice(["sk_live_", "rk_live_", "sk_test_"]) + rand(24),
    "aws_access_key": lambda: R.choice(["AKIA", "ASIA"]) + rand(16, string.ascii_uppercase + DIGITS),
    "google_api_key": lambda: "AIza" + rand(35, ALNUM + "_-"),
    "jwt": jwt,
    "private_key": lambda: "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(rand(64, ALNUM + "+/") for _ in range(3))
                          + "\n-----END RSA PRIVATE KEY-----",
}


def password() -> str:
    word = R.choice(["Sommer", "Soleil", "Gato", "Praia", "Fiets", "Tigre", "Winter", "Luna", "Hund", "Estrela"])
    return word + R.choice(["", "_", "#", "!", "."]) + str(R.randint(10, 2030)) + R.choice(["", "!", "$", "?"])


# --- templates ------------------------------------------------------------------------------------------

TEMPLATES = {
    "en": ["Please update my record, the number is {v}.", "Can you check {k} {v} for me?", "{k} {v} (verified)",
           "Hi, my {k} is {v} and I need a copy.", "Forwarding the form: {k}: {v}, signed yesterday."],
    "de": ["Meine {k} lautet {v}, bitte speichern.", "Hier die Angaben: {k} {v}.", "Können Sie {k} {v} prüfen?",
           "Laut Formular: {k}: {v}"],
    "fr": ["Voici mon {k} : {v}, merci.", "Pouvez-vous vérifier le {k} {v} ?", "Dossier complet ({k} {v})."],
    "es": ["Mi {k} es {v}, gracias.", "¿Puede revisar el {k} {v}?", "Datos del cliente: {k} {v}."],
    "it": ["Il mio {k} è {v}.", "Potete controllare {k} {v}?", "Dati: {k} {v}, grazie."],
    "pt": ["O meu {k} é {v}.", "Pode verificar o {k} {v}?", "Cadastro: {k} {v}."],
    "nl": ["Mijn {k} is {v}.", "Kunt u {k} {v} controleren?", "Gegevens: {k} {v}."],
}
PLAIN = {
    "en": ["Reach me on {v} tomorrow.", "Details below:\n{v}\nThanks!", "It's {v} if you need it.",
           "ok so {v} is the one"],
    "de": ["Erreichbar unter {v}.", "Bitte notieren: {v}"], "fr": ["Joignable au {v}.", "Notez : {v}"],
    "es": ["Llámame al {v}.", "Apunta: {v}"], "it": ["Chiamami al {v}.", "Segna: {v}"],
    "pt": ["Liga para {v}.", "Anota: {v}"], "nl": ["Bel me op {v}.", "Noteer: {v}"],
}
SECRET_TEMPLATES = [
    "here is the key: {v}", "export API_TOKEN={v}", "use {v} for the staging deploy", "config:\n  key: {v}\n",
    "Der Schlüssel {v} läuft morgen ab.", "la clé {v} ne marche plus", "la clave {v} no funciona",
    "ho incollato {v} nel file", "o token {v} expirou", "de sleutel {v} werkt niet",
]
PASSWORD_TEMPLATES = {
    "en": ["password: {v}", "My password for the staging server is now, as we agreed yesterday, {v}",
           "the wifi password is {v}", "pwd={v}"],
    "de": ["Passwort: {v}", "Mein Kennwort lautet {v}", "Das neue Passwort für den Server ist jetzt {v}"],
    "fr": ["mot de passe : {v}", "Le mot de passe du wifi est {v}", "mdp: {v}"],
    "es": ["contraseña: {v}", "La contraseña nueva es {v}", "clave: {v}"],
    "it": ["password: {v}", "La parola d'ordine è {v}"],
    "pt": ["senha: {v}", "A senha do servidor é {v}"],
    "nl": ["wachtwoord: {v}", "Het wachtwoord is {v}"],
}


# --- obfuscations: they return the value as written (the label is what the text holds) --------------

FULLWIDTH = str.maketrans(DIGITS, "０１２３４５６７８９")
ARABIC = str.maketrans(DIGITS, "٠١٢٣٤٥٦٧٨٩")
DEVANAGARI = str.maketrans(DIGITS, "०१२३४५६७८९")


def obfuscate(value: str, kind: str) -> tuple[str, str]:
    """A mangled spelling of a number-like value, and its name."""
    choices = ["fullwidth", "arabic", "nbsp", "zwsp", "newline"]
    if (" " in value or "-" in value) and "(" not in value:
        choices += ["dots", "underscores", "slashes"]
    if kind == "iban" or kind in ("gb_nino", "in_pan", "it_codice_fiscale", "es_nie"):
        choices.append("lower")
    if kind == "phone" and value.startswith("+"):
        choices = [c for c in choices if c not in ("slashes",)]
    form = R.choice(choices)
    if form == "fullwidth":
        return value.translate(FULLWIDTH), form
    if form == "arabic":
        return value.translate(R.choice([ARABIC, DEVANAGARI])), form
    if form == "nbsp":
        return (value.replace(" ", R.choice(["\u00a0", "\u202f"])) if " " in value else value), form
    if form == "zwsp":
        at = R.randint(2, len(value) - 2)
        return value[:at] + R.choice(["\u200b", "\u2060", "\u00ad"]) + value[at:], form
    if form == "newline":
        cut = [i for i, c in enumerate(value) if c == " "]
        if not cut:
            return value.replace(" ", "\u00a0"), "nbsp"
        at = R.choice(cut)
        return value[:at] + "\n" + value[at + 1:], form
    if form == "lower":
        return value.lower(), form
    sep = {"dots": ".", "underscores": "_", "slashes": "/"}[form]
    return value.replace(" ", sep).replace("-", sep), form


def case(text: str, entities: list[list[str]], lang: str, form: str = "plain") -> dict:
    for _, value in entities:
        assert value in text, (value, text)
    return {"text": text, "entities": entities, "lang": lang, "form": form}


def positives() -> list[dict]:
    out = []
    langs = list(TEMPLATES)
    # national identifiers: every kind, with and without keyword, plain and mangled
    for kind, make in NATIONAL.items():
        for i in range(8):
            value, needs_keyword = make()
            lang = langs[i % len(langs)]
            form = "plain"
            if i % 2 == 1 and kind not in ("cn_ric",):
                value, form = obfuscate(value, kind)
            if needs_keyword or i % 3 != 2:  # a value with a weak check is labelled only beside its keyword
                named = [t for t in TEMPLATES[lang] if "{k}" in t] if needs_keyword else TEMPLATES[lang]
                text = R.choice(named).format(k=R.choice(KEYWORDS[kind]), v=value)
            else:
                text = R.choice(PLAIN[lang]).format(v=value)
            out.append(case(text, [[kind, value]], lang, form))
    for kind, make, n in (("card", card, 40), ("iban", iban_value, 40), ("phone", phone, 90)):
        for i in range(n):
            value = make()
            lang = langs[i % len(langs)]
            form = "plain"
            if i % 2 == 1:
                value, form = obfuscate(value, kind)
            text = R.choice(PLAIN[lang]).format(v=value)
            out.append(case(text, [[kind, value]], lang, form))
    for i in range(30):
        value = email()
        lang = langs[i % len(langs)]
        form = "plain"
        if i % 2:
            local, domain = value.split("@")
            spelled = R.choice([("＠", "."), (" [at] ", " [dot] "), ("(at)", "(dot)"), (" at ", " dot ")])
            value = local + spelled[0] + domain.replace(".", spelled[1], 1) if spelled[0] != "＠" else local + "＠" + domain
            form = "spelled_at"
        out.append(case(R.choice(PLAIN[lang]).format(v=value), [["email", value]], lang, form))
    for kind, make in VENDOR.items():
        for i in range(6):
            value = make()
            out.append(case(R.choice(SECRET_TEMPLATES).format(v=value), [[kind, value]], "mixed"))
    for lang, templates in PASSWORD_TEMPLATES.items():
        for i in range(8):
            value = password()
            out.append(case(R.choice(templates).format(v=value), [["credential", value]], lang, "keyword"))
    for i in range(12):  # 32-hex keys with little entropy for their length
        value = "".join(R.choice("0123456789abcdef"[: R.choice([10, 16])]) for _ in range(32))
        value = value if any(c.isalpha() for c in value) else value[:-1] + "a"
        out.append(case(R.choice(["api key: {v}", "API_KEY={v}", "the access key is {v}", "token {v}"]).format(v=value),
                        [["credential", value]], "en", "hex32"))
    for i in range(10):
        user, secret = R.choice(["admin", "root", "deploy", "svc"]), password()
        text, kind = R.choice([
            (f"curl -u {user}:{secret} https://api.internal.example.com/v1", "cli_credential"),
            (f"mysql -u {user} -p'{secret}' prod", "cli_credential"),
            (f"psql postgresql://{user}:{secret}@db.example.com:5432/app", "url_credential"),
            (f"git clone https://{user}:{secret}@git.example.org/team/repo.git", "url_credential"),
            (f"./deploy.sh --password={secret} --env prod", "cli_credential"),
        ])
        out.append(case(text, [[kind, secret]], "en", "command_line"))
    for i in range(8):
        token = base64.b64encode(f"{R.choice(['admin', 'bob'])}:{password()}".encode()).decode()
        bearer = rand(40, ALNUM + "-_.")
        text, value = R.choice([(f"Authorization: Basic {token}", token), (f"-H 'Authorization: Bearer {bearer}'", bearer)])
        out.append(case(text, [["auth_header", value]], "en", "header"))
    # a value split across two chat messages
    for i in range(16):
        kind, value = R.choice([("card", card()), ("iban", iban_value()), ("phone", phone())])
        cut = [j for j, c in enumerate(value) if c == " "]
        if not cut:
            continue
        at = R.choice(cut)
        first, second = value[:at], value[at + 1:]
        out.append({"messages": [f"my {kind} is {first}", f"{second} (continued)"],
                    "entities": [[kind, 0, first], [kind, 1, second]], "lang": "en", "form": "split_messages"})
    return out


NEGATIVES = {
    "en": ["Order 4711 0815 4242 shipped on 2024-03-05.", "created_at=1712345678 updated_at=1712349999",
           "Invoice INV-2024-000123 totals $1,299.99.", "Case ID 415 555 2671 9 was closed.",
           "Version 3.12.4 fixes CVE-2024-3094.", "ISBN 978-3-16-148410-0", "Meeting room 4.12, 14:30-16:00",
           "Tracking: 1Z999AA10123456784", "commit 3f2a9c1d4e5b6a7980", "Forgot your password? Click here to reset it.",
           "Tokens are counted per 1,000 characters.", "request id 123e4567-e89b-12d3-a456-426614174000",
           "Population grew from 1 234 567 to 1 456 789.", "Reset the password after 90 days.",
           "The secret to good bread is time.", "ts 1700000000000 epoch ms", "pages 120-145 and 201-230",
           "Serial number 123456789012 on the back", "Call us Monday through Friday, 9 to 5."],
    "de": ["Bestellnummer: 0301234567, Lieferung am 12.03.2024.", "Rechnungsnummer 2024-000123 über 1.234,56 €",
           "Passwort vergessen? Klicken Sie hier.", "Kundennummer 612345678 bitte angeben.",
           "Sendungsnummer 00340434161234567890", "Das Token läuft nach 24 Stunden ab.", "Aktenzeichen 4 O 123/24",
           "Artikel-Nr. 123-456-789", "Termin am 15.01.2025 um 10:30 Uhr", "PLZ 10115 Berlin, Tel. siehe Website"],
    "fr": ["N° de commande 0142685300, livré le 05/03/2024.", "Facture n° 2024-0456 : 1 234,56 €",
           "Réinitialiser le mot de passe", "Numéro de suivi 6A12345678901", "Réunion le 12/04 à 14h30",
           "Le dossier 123 456 789 est clos.", "Votre mot de passe doit contenir 12 caractères."],
    "es": ["Número de pedido: 612345678", "¿Olvidaste tu contraseña?", "Factura 2024/000123 por 1.234,56 €",
           "Expediente 123-456-7890 cerrado.", "La clave del éxito es la constancia.", "Cita el 15/03/2024 a las 10:00"],
    "it": ["Numero d'ordine 3123456789 spedito.", "Fattura n. 2024/0456 di 1.234,56 €", "Hai dimenticato la password?",
           "Pratica 123 456 789 chiusa.", "Il token scade dopo 24 ore.", "Appuntamento il 15/03/2024 alle 10:30"],
    "pt": ["Número da encomenda: 912345678", "Esqueceu a senha? Clique aqui.", "Fatura 2024/000123: 1.234,56 €",
           "Protocolo 123.456.789-00 encerrado.", "Processo 0001234-56.2024.8.26.0100"],
    "nl": ["Bestelling 0612345678 is verzonden.", "Wachtwoord vergeten? Klik hier.", "Factuur 2024-000123: € 1.234,56",
           "Referentie 1234 56 789", "Zending 3SABC1234567890 onderweg."],
}


def negatives() -> list[dict]:
    out = [case(text, [], lang) for lang, texts in NEGATIVES.items() for text in texts]
    for i in range(120):  # numbers with a wrong check digit, beside the word that names the ID
        kind = R.choice([k for k in NATIONAL if k not in ("in_pan", "gb_nino")])
        value, _ = NATIONAL[kind]()
        last = value[-1]
        wrong = value[:-1] + (str((int(last) + R.randint(1, 8)) % 10) if last.isdigit() else
                              ("A" if last != "A" else "B"))
        if _valid_anywhere(wrong):
            continue
        lang = R.choice(list(TEMPLATES))
        template = R.choice(TEMPLATES[lang])
        # After the ID's own word a value of its shape is that ID, typo or not (a Chinese ID ends in a digit or
        # X, so one ending in another letter is none); without a word, a bad check makes it nothing.
        own = "{k}" in template and (kind != "cn_ric" or wrong[-1] in "0123456789X")
        out.append(case(template.format(k=R.choice(KEYWORDS[kind]), v=wrong), [[kind, wrong]] if own else [], lang,
                        "bad_check"))
    for i in range(40):  # order numbers and timestamps in every language
        lang = R.choice(list(NEGATIVES))
        number = R.choice([str(R.randint(1_600_000_000, 1_800_000_000)), digits(9, "123456789"), digits(10, "123456789")])
        label = R.choice({"en": ["Order #", "Ticket", "timestamp:", "Order no."], "de": ["Bestellnummer", "Auftrag Nr."],
                          "fr": ["Commande n°", "Facture"], "es": ["Pedido", "Número de pedido:"],
                          "it": ["Ordine n.", "Fattura"], "pt": ["Encomenda", "Pedido n.º"],
                          "nl": ["Bestelnummer", "Ordernummer:"]}[lang])
        if not _valid_anywhere(number):
            out.append(case(f"{label} {number}", [], lang, "labelled_number"))
    return out


def _valid_anywhere(value: str) -> bool:
    """Whether a corrupted value happens to be another valid ID (then it is no negative)."""
    plain = "".join(c for c in value if c.isalnum()).upper()
    return any(m.is_valid(plain) for m in (ssn, bsn, idnr, pesel, cpf, sin, nif, tfn, aadhaar, pan, dni, nie,
                                          codicefiscale, nir, personnummer, cpr, fodselsnummer, hetu, nn, ch_ssn,
                                          ric, pps, za_idnr))


# --- what a hostile survey tries (issue 14's second round) ---------------------------------------------

AT_DOT = {  # a language's spelled "at" and "dot", as people write an address to dodge scrapers
    "en": ("at", "dot"), "fr": ("arobase", "point"), "es": ("arroba", "punto"), "it": ("chiocciola", "punto"),
    "pt": ("arroba", "ponto"), "nl": ("apenstaartje", "punt"), "de": ("(at)", "(punkt)"),
}
SPELLED_TEMPLATES = {
    "en": ["write to {v} please", "my mail: {v}"], "fr": ["écrivez à {v} svp", "mon adresse : {v}"],
    "es": ["escríbeme a {v}", "mi correo: {v}"], "it": ["scrivimi a {v}", "la mia mail: {v}"],
    "pt": ["manda para {v}", "meu e-mail: {v}"], "nl": ["mail naar {v}", "mijn adres: {v}"],
    "de": ["schreib an {v}", "Mail: {v}"],
}
MATH_BOLD = str.maketrans(DIGITS, "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗")
CIRCLED = str.maketrans(DIGITS, "⓪①②③④⑤⑥⑦⑧⑨")
BENGALI = str.maketrans(DIGITS, "০১২৩৪৫৬৭৮৯")
THAI = str.maketrans(DIGITS, "๐๑๒๓๔๕๖๗๘๙")
CYRILLIC = str.maketrans("AEKMHOPCTX", "АЕКМНОРСТХ")  # Latin letters swapped for Cyrillic look-alikes
OTHER_PASSWORD_WORDS = {
    "sv": "Mitt lösenord är {v}", "da": "adgangskode: {v}", "no": "Passordet mitt er {v}", "fi": "salasana: {v}",
    "pl": "Moje hasło to {v}", "cs": "heslo: {v}", "hu": "jelszó: {v}", "tr": "şifre: {v}", "ru": "мой пароль: {v}",
    "el": "κωδικός: {v}", "ja": "パスワード: {v}", "zh": "我的密码：{v}", "ko": "비밀번호: {v}", "ro": "Parolă: {v}",
    "id": "kata sandi: {v}", "vi": "mật khẩu: {v}",
}
HOSTILE_NEGATIVES = [
    ("en", "We met at the point where the river bends."), ("en", "At this point in time we are done."),
    ("en", "Look at example dot points in the slides."), ("en", "The dot at the end matters, look at it."),
    ("en", "Arrive at 5.30 at the station, gate 12."), ("en", "He smiled at her and pointed at the dot com bubble chart."),
    ("fr", "Au point où nous en sommes, rendez-vous à la gare."), ("fr", "Le point de départ est à 8 h 30."),
    ("es", "En este punto de la reunión hablamos del presupuesto."), ("es", "La arroba es un símbolo antiguo."),
    ("it", "A questo punto della storia il punto è chiaro."), ("pt", "O ponto de ônibus fica na esquina."),
    ("nl", "Op dit punt stoppen we, punt uit."), ("de", "Der Punkt ist: wir treffen uns um 10 Uhr."),
    ("ru", "Номер заказа 12345678, доставка 15.03.2025 в 10:30."), ("ru", "В 2024 году выручка выросла на 12 %."),
    ("el", "Η παραγγελία 4711 στάλθηκε στις 12/03."), ("en", "| Qty | Price |\n| 12 | 4.99 |\n| 3 | 19.99 |"),
    ("en", "year\tunits\trevenue\n2023\t120\t4500\n2024\t135\t5100"), ("en", "pages 120 - 145 and 201 - 230"),
    ("sv", "Byt lösenord var 90:e dag."), ("pl", "Zmień hasło co 90 dni."), ("ru", "Пароль должен содержать 12 символов."),
    ("tr", "Şifrenizi mi unuttunuz?"), ("zh", "请输入密码"), ("ja", "パスワードを忘れた場合"),
    ("en", "Boarding pass: gate B12, seat 14C."), ("en", "I will pass: the plan is fine."),
    ("en", "thanks @ everyone for the 3 updates"), ("fi", "Salasanan pitää olla vähintään 12 merkkiä."),
]


def hostile() -> list[dict]:
    """Positives spelled the ways a hostile survey tries, and prose that only looks like them."""
    out = []
    for i in range(28):  # spelled-out addresses, every dot spelled too
        lang = list(AT_DOT)[i % len(AT_DOT)]
        at, dot = AT_DOT[lang]
        local, domain = email().split("@")
        join = (lambda word: f"{word}" if word.startswith("(") else f" {word} ")
        value = local.replace(".", join(dot)) + join(at) + domain.replace(".", join(dot))
        if i % 4 == 3:
            value = value.upper()
        out.append(case(R.choice(SPELLED_TEMPLATES[lang]).format(v=value), [["email", value]], lang, "spelled_words"))
    for i in range(6):  # "@" and "." with spaces around
        local, domain = email().split("@")
        value = R.choice([f"{local} @ {domain}", f"{local}@{domain.replace('.', ' . ', 1)}", f"{local} @{domain}"])
        out.append(case(f"contact: {value}", [["email", value]], "en", "spaced_at"))
    area = []
    while len(area) < 24:  # national numbers written with an area code in brackets
        value = phone()
        if value.startswith("(") and ") " in value:
            area.append(value)
    for i, value in enumerate(area):
        head, tail = value.split(") ", 1)
        if i % 2:  # the area code on one line, the number on the next
            written = head + ")" + R.choice(["\n", " \n", "\n  ", "\r\n"]) + tail
            out.append(case(f"{R.choice(['call me at', 'Tel.', 'número:', 'ligue'])} {written} (evenings)",
                            [["phone", written]], "mixed", "newline_area"))
        else:  # ... or in the next chat message
            first, second = head + ")", tail
            out.append({"messages": [f"my number is {first}", f"{second} after 6pm"],
                        "entities": [["phone", 0, first], ["phone", 1, second]], "lang": "en", "form": "split_area"})
    for i in range(8):  # a line break after a dash inside a national number
        value = phone()
        if "-" in value:
            at = value.index("-")
            written = value[:at + 1] + "\n" + value[at + 1:]
            out.append(case(f"Reach me on {written} tomorrow", [["phone", written]], "en", "newline_dash"))
    for i in range(24):  # digits of other scripts and compatibility forms, mixed within one value
        kind, value = R.choice([("card", card()), ("iban", iban_value()), ("us_ssn", _ssn()[0])])
        table = [MATH_BOLD, CIRCLED, BENGALI, THAI][i % 4]
        written = "".join(c.translate(table) if (j // 3) % 2 else c for j, c in enumerate(value))
        out.append(case(f"{'SSN' if kind == 'us_ssn' else R.choice(['ref', 'see', 'value', 'pay'])}: {written}",
                        [[kind, written]], "mixed", "other_digits"))
    for i in range(16):  # Latin letters swapped for Cyrillic look-alikes inside a value
        kind, value = R.choice([("iban", until(iban_value, lambda v: any(c in "AEKMHOPCTX" for c in v[:4]))),
                                ("gb_nino", _nino()),
                                ("aws_access_key", "AKIA" + rand(16, "AEKMHOPCTX" + DIGITS))])
        written = value[:4].translate(CYRILLIC) + value[4:] if kind != "gb_nino" else value.translate(CYRILLIC)
        if written == value:
            continue
        label = {"iban": "IBAN", "gb_nino": "NI number", "aws_access_key": "key"}[kind]
        out.append(case(f"{label} {written} as discussed", [[kind, written]], "mixed", "homoglyph_letters"))
    for i in range(16):  # separators a value is spread with
        kind, value = R.choice([("card", card()), ("iban", iban_value())])
        groups = value.replace("-", " ").split()
        if len(groups) < 3:
            continue
        written = R.choice([" - ", "|", "  ", "\t", "-"]).join(groups)
        out.append(case(f"pay with {written} today", [[kind, written]], "en", "separators"))
    for lang, template in OTHER_PASSWORD_WORDS.items():  # password words of other languages
        value = password()
        out.append(case(template.format(v=value), [["credential", value]], lang, "password_word"))
    out.extend(case(text, [], lang, "hostile_negative") for lang, text in HOSTILE_NEGATIVES)
    return out


def main() -> None:
    cases = positives() + negatives() + hostile()
    OUT.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases), encoding="utf-8")
    print(f"{len(cases)} cases -> {OUT}")


if __name__ == "__main__":
    main()
