"""Detectors for secrets: private keys, access keys and tokens, JWTs, and
high-entropy strings right after words like "password" or "token".

Vendor formats with a fixed prefix are matched exactly; a JWT must carry a
header that decodes to JSON with an "alg"; a free-form secret must look
random (Shannon entropy, mixed character classes) and sit within a few words
after a keyword, so prose around the word "token" is not tagged.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Iterator

import re2

from router.linear_regex import compile_linear, group_spans, match_spans
from router.scan import free_before
from router.seed_phrases import find_seed_phrases

Span = tuple[str, int, int]
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False

_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----(?:[ \t]*\n(?:[\w-]+: [^\n]*\n)*[ \t]*\n)?"  # PGP armor
    r".*?(?:-----END \1-----|(?=\n[ \t]*\n)|\Z)", re.S
)
# Vendor formats (after the vendors' documentation and the rule sets of gitleaks and
# detect-secrets).
_NOT_WORD_AFTER = r"(?![\w-])"
_VENDOR_KEYS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern + _NOT_WORD_AFTER)) for kind, pattern in (
        ("aws_access_key", r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}"),
        ("github_token", r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{50,255}"),
        ("gitlab_token", r"gl(?:pat|dt|rt|ptt|cbt|imt|oas|ft)-[A-Za-z0-9_-]{20,}"),
        ("slack_token", r"xox[abposre]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,}"),
        ("slack_webhook", r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{20,}"),
        ("stripe_key", r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{24,}"),
        ("google_api_key", r"AIza[0-9A-Za-z_-]{35}"),
        ("google_oauth", r"ya29\.[0-9A-Za-z_-]{20,}|GOCSPX-[0-9A-Za-z_-]{20,}"),
        ("anthropic_key", r"sk-ant-[A-Za-z0-9_-]{20,}"),
        ("openai_key", r"sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}"),
        ("huggingface_token", r"hf_[A-Za-z0-9]{30,}"),
        ("npm_token", r"npm_[A-Za-z0-9]{36}"),
        ("pypi_token", r"pypi-AgE[A-Za-z0-9_-]{50,}"),
        ("sendgrid_key", r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"),
        ("twilio_key", r"SK[0-9a-f]{32}|AC[0-9a-f]{32}"),
        ("mailgun_key", r"key-[0-9a-f]{32}"),
        ("shopify_token", r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}"),
        ("digitalocean_token", r"do[opr]_v1_[a-f0-9]{64}"),
        ("databricks_token", r"dapi[a-f0-9]{32}"),
        ("groq_key", r"gsk_[A-Za-z0-9]{40,}"),
        ("replicate_token", r"r8_[A-Za-z0-9]{37}"),
        ("xai_key", r"xai-[A-Za-z0-9]{40,}"),
        ("perplexity_key", r"pplx-[A-Za-z0-9]{40,}"),
        ("atlassian_token", r"ATATT3[A-Za-z0-9_=-]{30,}"),
        ("square_token", r"sq0(?:atp|csp)-[A-Za-z0-9_-]{22,}"),
        ("telegram_bot_token", r"\d{8,10}:AA[A-Za-z0-9_-]{33}"),
        ("discord_token", r"[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}"),
        ("azure_key", r"AccountKey=[A-Za-z0-9+/=]{40,}|SharedAccessSignature=[^\s;\"']{20,}"),
    )
)
# All vendor patterns at once, in one linear pass (an RE2 set): which of them occur at all.
# Most texts hold none, and Python's engine then runs only the patterns that do.
_VENDOR_SET = re2.Set.SearchSet(_RE2_OPTIONS)
for _kind, _pattern in _VENDOR_KEYS:
    _VENDOR_SET.Add(_pattern.pattern.removesuffix(_NOT_WORD_AFTER))
_VENDOR_SET.Compile()
_JWT = re.compile(r"eyJ(?P<header>[A-Za-z0-9_-]{4,})\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*(?![\w-])")

# `Authorization: Basic dXNlcjpwYXNz`, `Bearer eyJ...`, `-H "X-Api-Key: ..."`.
_AUTH_HEADER = re.compile(
    r"(?i)(?:\b(?:authorization|proxy-authorization)\s*[:=]\s*[\"']?\s*(?:basic|bearer|token|digest|apikey|sso-key)?"
    r"|\b(?:basic|bearer)(?=\s+[A-Za-z0-9+/_.=-]{8,})|\bx-(?:api-key|auth-token|access-token)\s*[:=])"
    r"\s*(?P<value>[A-Za-z0-9+/_.~=:-]{6,})"
)
# Credentials on a command line: mysql -p'...', --password=..., curl -u user:pass, sshpass -p ...
_CLI_CREDENTIAL = re.compile(
    r"-(?:p(?P<q1>['\"])(?P<v1>[^'\"\s]{3,})(?P=q1)"
    r"|p(?P<v2>[^\s'\"-][^\s'\"]{3,})"
    r"|-(?:password|passwd|pass|pwd|token|api-key|apikey|secret|client-secret|auth-token)(?:=|\s+)"
    r"(?P<q3>['\"]?)(?P<v3>[^\s'\"]{3,})(?P=q3)"
    r"|(?:u|-user)\s*(?P<q4>['\"]?)[^\s:'\"]+:(?P<v4>[^\s'\"@]{3,})(?P=q4))"
    r"|(?:PASSWORD|PASSWD|TOKEN|SECRET|API_KEY)=(?P<q6>['\"]?)(?P<v6>[^\s'\"$]{3,})(?P=q6)"
)
# A user and a password after a word announcing a login: "login admin / S3cr3t!", "creds are admin:Pw0rd!24".
# (Where one may start is found by RE2 in one linear pass; Python's engine then tries only there.)
_LOGIN_START = compile_linear(r"\b(?:log[ -]?in|log[ -]?on|sign[ -]?in|cred|user)")
_LOGIN_PAIR = re.compile(
    r"(?i)(?:log[ -]?in|log[ -]?on|sign[ -]?in|creds?|credentials|user(?:name)?\s*/\s*pass(?:word)?)\b"
    r"[^\n]{0,24}?(?<![\w@.-])[\w.@+-]{2,64}[ \t]*(?::|/)[ \t]*(?P<value>[^\s'\"]{4,64})(?=[\s,;)]|$)")
# A cookie's value is a session's key: `Cookie: sessionid=...; csrftoken=...`, `Set-Cookie: sid=...; Path=/`,
# `curl -b 'session=...'`, `document.cookie = "token=..."`.
_COOKIES = re.compile(r"(?i)(?:\b(?:set-)?cookie\s*[:=]|(?<!\S)(?:-b|--cookie)\s+)\s*[\"']?(?P<pairs>[^\n\"']+)")
_COOKIE_PAIR = re.compile(r"(?P<name>[\w.$-]+)=(?P<value>[^;,\s]+)")
_COOKIE_ATTRIBUTES = frozenset("path domain expires max-age samesite secure httponly priority version comment".split())
_SESSION_NAME = re.compile(r"(?i)sess|sid|token|auth|jwt|remember|login|csrf|xsrf|key")
# scheme://user:password@host: the password is a secret (and not an e-mail address).
_URL_CREDENTIAL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@]{1,64}:(?P<value>[^\s/@]{1,128})@(?=[\w.-])")
# A URL's query parameter that carries a key: `?key=AIza...`, `&access_token=...`, `X-Amz-Signature=...`, `sig=...`.
_URL_KEY_PARAM = re.compile(r"(?i)[?&;][\w.-]*(?:key|token|secret|sig|signature|password|passwd|pwd|auth|credential|"
                            r"session|sid)[\w.-]*=(?P<value>[^&#;\s\"'<>]+)")
_PLACEHOLDER_VALUE = re.compile(r"(?i)^(?:\$\{?\w+\}?|<[^>]*>|\[[^\]]*\]|\{\{?[^}]*\}\}?|\*+|x{3,}|\.{3,}|%\w+%|"
                                r"(?:your|my)[\w-]*|[\w-]*[_-]here|password|passwd|secret|token|null|none|changeme|"
                                r"example|(?:[a-z]{2,8}[_-]){1,2}(?:x{4,}|\.{3,}|\*{3,}|\.\.\.))$")
# The body of a vendor-format match that is a placeholder: one character over and over ("ghp_xxxx...").
_FILLER = re.compile(r"^(.)\1+$")


# Keywords in English, German, French, Spanish, Italian, Portuguese and Dutch, matched
# on the lower-cased text; `_`, `-` and `.` count as separators (`aws_secret_access_key=`).
_S = r"[\s_.-]?"
_PASSWORD_WORDS = (
    rf"(?:wi{_S}fi|wlan|wpa2?|network|wireless){_S}(?:key|passphrase)|wi{_S}fi(?:{_S}(?:pass|pw|pwd))?|"
    rf"pass{_S}words?|passwd|pass{_S}phrase|passcode|pwd|pw|pasword|passwrd|passowrd|paswd|pword|passwort|kennwort|"
    rf"mot{_S}de{_S}passe|mdp|"
    rf"contrase[ñn]a|clave(?:{_S}de{_S}acceso)?|parola{_S}d'ordine|parola{_S}chiave|senha|wachtwoord|"
    rf"codice{_S}di{_S}accesso|code{_S}d'acc[èe]s|c[óo]digo{_S}de{_S}acceso|zugangs(?:code|daten)|pin{_S}code|"
    # and the words of other languages a hostile text may switch to
    rf"l[öo]senord(?:et)?|adgangskode[nr]?|passord(?:et)?|salasana(?:n|si|ni)?|has[łl][oa]|hesl[oa]|jelsz[óo]|"
    rf"jelszav(?:a|am|ad)|parol[ăa]|[şs]ifre(?:m|n|niz)?|парол[ьяюе]|"
    rf"κωδικ[όο]ς|パスワード|密码|密碼|口令|비밀번호|kata{_S}sandi|m[ậa]t{_S}kh[ẩa]u|"
    rf"pass(?=[ \t]*[:=])"  # "Pass: ...", a label; the bare word is English prose
)
_KEY_WORDS = (
    rf"secret|geheimnis|token|api{_S}key|apikey|access{_S}key|private{_S}key|client{_S}secret|credentials?|creds|"
    rf"auth|bearer|cl[ée]{_S}(?:d'api|api|secr[èe]te)|chiave{_S}(?:api|segreta)|chave{_S}(?:de{_S}api|api|secreta)|"
    rf"api{_S}sleutel|geheime{_S}sleutel|schl[üu]ssel|cookie|session{_S}id"
)
_KEYWORD = re.compile(rf"(?:(?P<password>{_PASSWORD_WORDS})|{_KEY_WORDS})(?![a-zà-ÿа-я])")  # boundary before: in code
# Where any keyword may start, in one linear pass (RE2 has no look-ahead: `pass` stands for `pass:`).
_KEYWORD_START = compile_linear(f"(?:{_PASSWORD_WORDS}|{_KEY_WORDS})".replace(r"pass(?=[ \t]*[:=])", "pass"))
_WORDS_AFTER_KEYWORD = 16  # "password - I changed it this morning after the audit, it is now Qz7!vR2x" is 13
_HORIZON = 400  # characters after a keyword that are looked at; keeps the scan linear
_VALUE = re.compile(r"[^\s\"'`<>(){}\[\],;]+")
_NOT_SECRET = re.compile(r"(?i)^(?:[a-z][a-z0-9+.-]*://|www\.)|^[^@\s]+@[^@\s]+\.[a-z]{2,}$|^[\d:./-]+$")
# Names in code, not values: `getpass.getpass`, `password-reset-flow`, `_field`, `DB_USER`.
_IDENTIFIER = re.compile(r"^[A-Za-z_]+(?:\.[A-Za-z_]+)+$|^[-_]?[a-z]+(?:[-_][a-z]+)*$|^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")
_SEPARATORS = "-_."
_ASSIGNMENT = re.compile(r"^[A-Za-z_][\w.-]*[:=]+(?=.)")  # `NAME=value` in one word: the value is the secret
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n\s*\n")
# Words between a password word and its value that keep it "direct" ("password is hunter2").
_LINKING = frozenset("is ist est es è é era was war lautet = : - now jetzt maintenant ahora ora agora nu "
                     "är er on jest je je: это 是 は".split())
# An app password as Google writes it, after a password word: "password: rqmi qcpu jtrg qomu".
_APP_PASSWORD = re.compile(r"[ \t]*[:=]?[ \t]*(?:is[ \t]+)?[\"']?(?P<value>[a-z]{4} [a-z]{4} [a-z]{4} [a-z]{4})\b")
_WORDS_LINKING = 8  # "Le mot de passe du wifi est Hund482": a person's password this far after the word
_HEX_KEY = re.compile(r"[0-9a-fA-F]{32,128}")
# A PIN or an access code: its word, a few words that are not a number, then 4-8 digits.
_ACCESS_WORDS = (r"pin(?:[ -]?(?:code|number|nummer|nr))?|pincode|pin-code|geheimzahl|code pin|c[óo]digo pin|codice pin|"
                 r"pass ?code|cid|keypad|"
                 r"(?:alarm|door|gate|entry|keypad|lock|safe|garage|front door|building|lockbox|key ?safe|padlock|"
                 r"access)[ -]?code|code (?:for|to|of) (?:the |my |our )?(?:door|gate|garage|alarm|keypad|building|"
                 r"front door|safe|lockbox|house|flat|apartment)|combination|t[üu]rcode|torcode|alarmcode|digicode|"
                 r"code (?:de la porte|du portail|de l'alarme|d'acc[èe]s|d'entr[ée]e)(?: d'entr[ée]e)?|"
                 r"c[óo]digo (?:de la puerta|del portal|de la alarma|de acceso|de entrada|do port[ãa]o)|"
                 r"codice (?:del portone|della porta|dell'allarme|del cancello|di accesso)|deurcode|toegangscode|"
                 r"(?:port|dörr|larm)kod|porten har kod")
_ACCESS_CODE = compile_linear(rf"(?i)\b(?:{_ACCESS_WORDS})\b[^0-9\n.!?]{{0,48}}?\b([A-Z]?[0-9](?:[ -]?[0-9]){{3,7}}[*#]?)"
                              r"(?:[^0-9A-Za-z]|$)")
_NETWORK_NAME = re.compile(r"(?i)(?:wifi:)?(?:s|ssid|t|h)[:=]")
_MEETING = re.compile(r"(?i)meeting|zoom|webinar|conference|teams|call id")  # a meeting's passcode lets no one in anywhere
_POSTAL_PIN = re.compile(r"pin ?code|pincode|pin-code|postal")
_YEAR_BEFORE = re.compile(r"\b(?:in|since|from|until|of|year)\s*$")
_WIFI_QR = re.compile(r"WIFI:(?:[^;\n]*;)*?P:(?P<value>(?:\\.|[^;\\\n])+);")


def find_secrets(text: str) -> Iterator[Span]:
    """Every secret-looking span, by kind."""
    if "-----BEGIN" in text:
        for m in _PRIVATE_KEY.finditer(text):
            yield "private_key", m.start(), m.end()
    for index in sorted(_VENDOR_SET.Match(text) or ()):
        kind, pattern = _VENDOR_KEYS[index]
        for m in pattern.finditer(text):
            body = re.split(r"[_-]", m.group(), maxsplit=1)[-1]
            if free_before(text, m.start(), "-") and not _FILLER.match(body):
                yield kind, m.start(), m.end()
    if "eyJ" in text:
        for m in _JWT.finditer(text):
            if free_before(text, m.start(), "-") and _is_jwt_header("eyJ" + m.group("header")):
                yield "jwt", m.start(), m.end()
    yield from _context_secrets(text)
    yield from _keyword_secrets(text)
    yield from _access_codes(text)
    yield from find_seed_phrases(text)


def _context_secrets(text: str) -> Iterator[Span]:
    """Values whose place says they are secret: an auth header, a command-line password, a URL's password."""
    lowered = text.lower()
    headers = "auth" in lowered or "bearer" in lowered or "basic" in lowered or "x-" in lowered
    for m in _AUTH_HEADER.finditer(text) if headers else ():
        value = m.group("value")
        named = m.group().lower().lstrip().startswith(("authorization", "proxy-authorization", "x-"))
        if _PLACEHOLDER_VALUE.match(value) or not (looks_random(value) or _basic_credentials(value) or (
                named and len(value) >= 8)):
            continue  # "basic organization" is prose; a bare Basic/Bearer needs a token-like value
        yield "auth_header", m.start("value"), m.end("value")
    if " -" in text or "PASS" in text or "TOKEN" in text or "SECRET" in text or "KEY=" in text:
        for m in _CLI_CREDENTIAL.finditer(text):
            if m.group().startswith("-") and m.start() and not text[m.start() - 1].isspace():
                continue  # an option stands after a space: "re-pass" is a word
            group = next(g for g in ("v1", "v2", "v3", "v4", "v6") if m.group(g) is not None)
            value = m.group(group).rstrip("`'\"")  # "`export KEY=YOUR_API_KEY`": the code span's quote ends it
            if value and not _PLACEHOLDER_VALUE.match(value) and (group != "v2" or _password_like(value)):
                yield "cli_credential", m.start(group), m.start(group) + len(value)
    for m in (_LOGIN_PAIR.match(text, start) for start, _ in match_spans(_LOGIN_START, lowered)):
        if m is None:
            continue
        value = m.group("value")
        if _chosen_password(value) and not (_PLACEHOLDER_VALUE.match(value) or _NOT_SECRET.search(value)):
            yield "credential", m.start("value"), m.end("value")
    if "cookie" in lowered or " -b " in text:
        for m in _COOKIES.finditer(text):
            for pair in _COOKIE_PAIR.finditer(text, m.start("pairs"), m.end("pairs")):
                value = pair.group("value")
                if pair.group("name").lower() not in _COOKIE_ATTRIBUTES and not _PLACEHOLDER_VALUE.match(value) and (
                        looks_random(value) or _HEX_KEY.fullmatch(value)
                        or (len(value) >= 12 and _SESSION_NAME.search(pair.group("name")))):
                    yield "cookie", pair.start("value"), pair.end("value")
    if "://" in text:
        for m in _URL_CREDENTIAL.finditer(text):
            if not _PLACEHOLDER_VALUE.match(m.group("value")):
                yield "url_credential", m.start("value"), m.end("value")
        for m in _URL_KEY_PARAM.finditer(text):
            value = m.group("value")
            if not _PLACEHOLDER_VALUE.match(value) and (looks_random(value) or _HEX_KEY.fullmatch(value)):
                yield "url_token", m.start("value"), m.end("value")


def _access_codes(text: str) -> Iterator[Span]:
    """A PIN or a code that opens something, after its word: "the debit card PIN is 4826", "alarm code
    7391", "Türcode: 2580"; and a Wi-Fi QR string's password ("WIFI:T:WPA;S:Home;P:Marchewka#2021;;")."""
    for ((start, end),) in group_spans(_ACCESS_CODE, text, (1,)):
        value = text[start:end]
        label = text[max(0, start - 64):start].lower()
        if _MEETING.search(label):
            continue
        if sum(c.isdigit() for c in value) == 6 and _POSTAL_PIN.search(label):
            continue  # "PIN code 560003": an Indian postcode
        if value.isdigit() and len(value) == 4 and value[:2] in ("19", "20") and _YEAR_BEFORE.search(label):
            continue  # "I forgot my PIN in 2024"
        yield "pin", start, end
    if "WIFI:" in text:
        for m in _WIFI_QR.finditer(text):
            if not _PLACEHOLDER_VALUE.match(m.group("value")):
                yield "credential", m.start("value"), m.end("value")


def _basic_credentials(value: str) -> bool:
    """HTTP Basic credentials: base64 of `user:password`."""
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    return ":" in decoded and decoded.isprintable()


def _is_jwt_header(segment: str) -> bool:
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and "alg" in header


def _keyword_secrets(text: str) -> Iterator[Span]:
    """A value within a few words after a keyword: random-looking, or password-like
    right after a password word and the words that link them ("Passwort ist Sommer2024!")."""
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters lower-case to two; offsets would shift
        lowered = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    keywords = [k for k in _keyword_matches(lowered) if not (k.start() and _cased_letter(lowered[k.start() - 1]))]
    for keyword, following in zip(keywords, [*keywords[1:], None]):
        # The next keyword starts its own window ("password password ..." stays linear).
        horizon = min(len(text), keyword.end() + _HORIZON, following.start() if following else len(text))
        stop = _SENTENCE_END.search(text, keyword.end(), horizon)
        end = (stop.start() + (text[stop.start()] in "!?")) if stop else horizon  # "Sommer2024!" keeps its "!"
        linked = direct = keyword.group("password") is not None
        if linked and (app := _APP_PASSWORD.match(lowered, keyword.end())):
            yield "credential", app.start("value"), app.end("value")
            continue
        for index, value in enumerate(_VALUE.finditer(text, keyword.end(), end)):
            if index >= _WORDS_AFTER_KEYWORD:
                break
            if _NOT_SECRET.search(value.group()) or value.group()[0] == "@" or (
                    value.start() == keyword.end() and value.group()[0] == "/"):
                continue  # a URL, an address, a number; the host after a URL's "user:password@"
            token = _ASSIGNMENT.sub("", value.group().lstrip("&?")).strip(":=.")  # "&limit=10": the next parameter
            if not token or _NETWORK_NAME.match(value.group()):
                continue  # a Wi-Fi string's network name or type ("WIFI:T:WPA;S:Flat4_Guest;P:...")
            # a name in code, or a template's variable ("{{ vault_db_password }}"), is no value
            named = (_IDENTIFIER.match(token) or text[max(0, value.start() - 4):value.start()].rstrip().endswith("{")
                     or text[value.end():value.end() + 1] == "(")  # a function called: `hashlib.pbkdf2_hmac(`
            chosen = (linked and _password_like(token)) or (direct and _chosen_password(token))
            if not named and (chosen or looks_random(token) or _HEX_KEY.fullmatch(token)):
                if not _PLACEHOLDER_VALUE.match(token):
                    start = value.start() + value.group().index(token)
                    yield "credential", start, start + len(token)
                    break
            linked = linked and index < _WORDS_LINKING
            direct = direct and token.lower() in _LINKING


def _keyword_matches(lowered: str) -> list[re.Match[str]]:
    """Keyword matches, tried only where RE2 says one may start: the alternation of every
    keyword tried at each position was most of the detector's time."""
    found = (_KEYWORD.match(lowered, at) for at in sorted({start for start, _ in match_spans(_KEYWORD_START, lowered)}))
    return [m for m in found if m]


def _cased_letter(char: str) -> bool:
    """A letter of a script that writes words apart; before a CJK keyword ("我的密码") a letter is no word's start."""
    return char.isalpha() and char.lower() != char.upper()


def _chosen_password(token: str) -> bool:
    """Right after "password is": anything but a plain word (`hunter2`, `12345678`)."""
    core = token.rstrip("!?.,;:")
    return len(core) >= 6 and not core.isalpha()


def _password_like(token: str) -> bool:
    """A password a person chose (`Sommer2024!`, `hunter22`), not a word, number or date."""
    if len(token) < 6 or _NOT_SECRET.search(token) or _PLACEHOLDER_VALUE.match(token):
        return False
    core = token.rstrip("!?.,;:")  # "vergessen?" is a word at the end of a question
    letters = any(c.isalpha() for c in core)
    digits = any(c.isdigit() for c in core)
    symbols = any(not c.isalnum() for c in core)
    upper = any(c.isupper() for c in core)
    dotted_name = not digits and all(c.isalpha() or c == "." for c in core)  # "Next.js", "ASP.NET", "main.py"
    # "Sommer2024", "Soleil#23"; not "argon2id" or "iPhone", which are names of things
    return len(core) >= 6 and letters and not dotted_name and ((digits and (upper or symbols)) or (symbols and upper))


def shannon_entropy(token: str) -> float:
    """Bits per character of the token's own character distribution."""
    counts = Counter(token)
    return -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())


def looks_random(token: str) -> bool:
    """A password or key rather than a word, a model name, a URL or a date.

    Either three character classes (lower, upper, digit, symbol; `-_.` do not
    count as symbols) with near-maximal entropy for its length, or a long
    hex/base64-like run whose digits or mixed case no identifier has.
    """
    if len(token) < 8 or (token.isalpha() and (token.islower() or token.istitle())) or _NOT_SECRET.search(token):
        return False  # short, a word, a URL, an address or a number
    has_lower = any(c.islower() for c in token)
    has_upper = any(c.isupper() for c in token)
    digits = sum(c.isdigit() for c in token)
    symbols = any(not c.isalnum() and c not in _SEPARATORS for c in token)
    classes = has_lower + has_upper + (digits > 0) + symbols
    entropy = shannon_entropy(token)
    if classes >= 3 and entropy >= 0.85 * math.log2(min(len(token), 64)):
        return True
    long_random = len(token) >= 16 and entropy >= 3.5
    return long_random and (digits / len(token) >= 0.25 or (has_lower and has_upper and digits > 0))
