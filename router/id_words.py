"""The words that name a national identifier, in the spellings people write (router/national_ids.py
reads them): each ID's own (`BSN`, `Steuer-ID`, `aadhaar_number`, `N° de sécurité sociale`, any
separators between words) and the generic ones that name any ID ("national ID", "ID number")."""

from __future__ import annotations

import re

S = r"[\s_.:/-]*"
KEYWORDS: dict[str, str] = {
    "us_ssn": rf"ssn|social{S}security|soc{S}sec",
    "nl_bsn": rf"bsn|burger{S}service{S}n(?:umme)?r|sofi(?:{S}n(?:umme)?r)?",
    "ca_sin": rf"sin|social{S}insurance|n\.?a\.?s\.?|assurance{S}sociale",
    "pt_nif": rf"nif|contribuinte|identifica[cç][aã]o{S}fiscal",
    "au_tfn": rf"tfn|tax{S}file",
    "in_aadhaar": rf"aadhaa?r|adhaar|uidai|uid|आधार",
    "de_idnr": rf"steuer{S}(?:id|identifikations{S}n(?:umme)?r|-?nr)|st{S}id|idnr|identifikations{S}n(?:umme)?r",
    "pl_pesel": r"pesel",
    "no_fodselsnummer": rf"f[øo]dsels{S}n(?:umme)?r|personnummer",
    "br_cpf": r"cpf",
    "be_nn": rf"rijksregister(?:{S}n(?:umme)?r)?|registre{S}national|num[ée]ro{S}national|insz|niss|rrn|national{S}number",
    "se_personnummer": rf"person{S}n(?:umme)?r",
    "dk_cpr": rf"cpr|person{S}n(?:umme)?r",
    "za_idnr": rf"(?:south{S}african{S}|sa[\s_.:/-]+)id|identity{S}(?:number|no)",
    "ch_ahv": rf"ahv|avs|sozialversicherungs?(?:{S}n(?:umme)?r)?",
    "fr_nir": rf"nir|s[ée]cu|s[ée]curit[ée]{S}sociale|insee",
    "cn_ric": rf"身份证|resident{S}id",
    "es_dni": rf"dni|nif|documento{S}(?:nacional|de{S}identidad)",
    "ie_pps": rf"ppsn?|personal{S}public{S}service",
    "fi_hetu": rf"hetu|henkil[öo]tunnus|personbeteckning",
    "tr_tckimlik": rf"t\.?c\.?{S}kimlik(?:{S}n(?:o|umarası))?|kimlik{S}n(?:o|umarası)|tckn",
    "kr_rrn": rf"주민{S}등록{S}번호|주민번호|resident{S}registration{S}(?:number|no)",
    "ro_cnp": rf"cnp|cod{S}numeric{S}personal",
    "il_idnr": rf"תעודת{S}זהות|ת\.ז|teudat{S}zehut",
    "id_nik": rf"nik|nomor{S}induk{S}kependudukan",
    "jp_mynumber": rf"マイナンバー|個人番号|my{S}number{S}(?:wa|ga|card|kaado)|mai{S}nanb[aā]a?|kojin{S}bang[oō]u?",
    "my_nric": rf"mykad|nric|no{S}kp|kad{S}pengenalan|i/?c{S}(?:number|no)",
    "vn_cccd": rf"cccd|cmnd|căn{S}cước|can{S}cuoc",
    "sa_id": rf"رقم{S}الهوية|الهوية{S}الوطنية|iqama",
    "ke_id": rf"kitambulisho",
}
GENERIC = (rf"national{S}id|tax{S}(?:id|number|no)|tin|personal{S}(?:id|number|code)|id{S}(?:number|no|nr)|"
            rf"identification{S}number|identity{S}(?:number|card)|ausweis|identifiant|identidad|identit[àa]")

# The own words of the IDs that start with letters, read only where such a value's check fails (then,
# as for the digit IDs, it counts after them). Not in KEYWORDS: "nie" is also German and Polish for
# "never" and "not", and a phone number after it is still a phone.
_LETTER_ID_WORDS = {kind: re.compile(rf"(?<![^\W_])(?:{words})(?![^\W_])", re.IGNORECASE) for kind, words in {
    "es_nie": rf"nie|n[úu]mero{S}de{S}identidad{S}de{S}extranjeros?",
    "it_codice_fiscale": rf"codice{S}fiscale|c\.?f",
    "mx_curp": rf"curp|clave{S}[úu]nica{S}de{S}registro{S}de{S}poblaci[óo]n",
    "gb_nino": rf"national{S}insurance|ni{S}(?:number|no)|nino",
}.items()}


def names_letter_id(kind: str, before: str) -> bool:
    """Whether `before` (the few words before a value) holds the own word of letter-led ID `kind`."""
    words = _LETTER_ID_WORDS.get(kind)
    return words is not None and words.search(before) is not None
