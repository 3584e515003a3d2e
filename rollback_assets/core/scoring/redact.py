"""What may leave the process: review text cleaned, redacted and truncated before any LLM call.

`prepare(text, max_chars)` is the only door text goes through on its way to a model:

1. sanitize: zero-width, bidi-override and control characters are removed (they hide emails from
   the redactor and confuse tokenisers); NFKC folds full-width digits/letters so `ｊｏｅ＠ｘ．ｃｏｍ` is caught;
2. redact personal data: emails, IBANs (whole, with or without spaces), card-like numbers (13-19
   digits), phone numbers (international and national forms such as `0170/5550199`, `(030) 123 4567`),
   postal addresses (street + number in German, English and French forms, with a following postcode and
   city; UK postcodes), person names where the text says it is a name (`my name is ...`, `Mr/Frau ...`,
   `agent Sarah`, a sign-off such as `Regards, Jane Doe`), URL credentials, query strings and fragments,
   token-like path segments, and bare secrets (`sk-...`, long hex/base64);
3. truncate to `max_chars`, saying so in the text itself.

The markers are stable (`[EMAIL]`, `[IBAN]`, `[CARD]`, `[PHONE]`, `[ADDRESS]`, `[NAME]`, `[URL]`,
`[SECRET]`) so the model still sees that the customer gave contact details without seeing them.

What the regex core misses, knowingly: a bare name with no cue ("Sarah was rude"), a street without a
house number or an address written as prose, phone numbers split by words. Microsoft Presidio would
catch more names, but its recognisers run on a spaCy NER model that spaCy publishes outside PyPI (only
unofficial re-uploads are there), it adds a few hundred MB, and small NER models miss the lower-case,
misspelt names of app reviews anyway. On 15.6k real Play reviews the cues above mark 6 names and 1
address; one mark is a false positive (a show title after "Miss").
Evidence quotes shown to people go through `redact_quote`, the same rules.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

REDACTION_VERSION = "redact-v2"

# Zero-width, joiners, bidi embeddings/overrides/isolates, BOM, soft hyphen, invisible operators.
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")
# C0/C1 controls except tab and newline (kept as whitespace), DEL.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")

_EMAIL = re.compile(
    r"[A-Za-z0-9._%+\-]+(?:@|\s*(?:\(at\)|\[at\])\s*)[A-Za-z0-9\-]+(?:(?:\.|\s*(?:\(dot\)|\[dot\])\s*)[A-Za-z0-9\-]+)+",
    re.IGNORECASE,
)
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"']+|\bwww\.[^\s<>\"']+", re.IGNORECASE)
_CARD = re.compile(r"(?<![\w.])\d(?:[ \-]?\d){12,18}(?![\w])")
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d[\d \-()./]{6,}\d(?![\w])")
# Country code, check digits, then 11-30 letters/digits in groups of four (spaces optional).
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b", re.IGNORECASE)
_NAME_WORD = r"[A-ZÀ-ÖØ-Þ][a-zà-öø-ÿß'\-]+"
_STREET_WORDS = (r"(?:[Ss]tra(?:ß|ss)e|[Ss]tr\.|[Ww]eg|[Gg]asse|[Pp]latz|[Aa]llee|[Rr]ing|[Dd]amm|[Uu]fer|[Cc]haussee"
                 r"|[Ss]teig|[Pp]fad|[Mm]arkt)")
_POSTCODE_CITY = rf"(?:,?\s*(?:D-)?\d{{4,5}}\s+{_NAME_WORD}(?:[ \-]{_NAME_WORD})?)?"
_ADDRESS = re.compile(
    # German: Musterstraße 12a, Am Ring 5, Lange Str. 3 (+ 10115 Berlin)
    rf"\b(?:{_NAME_WORD}[ \-]?)?{_NAME_WORD}?{_STREET_WORDS}\s*\d{{1,4}}\s?[a-zA-Z]?\b{_POSTCODE_CITY}"
    # English: 221B Baker Street, 12 Main St. (+ , Springfield, IL 62704)
    r"|\b\d{1,5}[A-Za-z]?\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd"
    r"|Court|Ct|Way|Place|Pl|Terrace|Close|Crescent|Square|Sq)\b\.?(?:,\s*[A-Z][a-z]+(?:\s[A-Z][a-z]+)?)?"
    r"(?:,?\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?)?"
    # French: 12 rue de la Paix (+ 75002 Paris)
    rf"|\b\d{{1,4}}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|av\.|boulevard|bd|chemin|place|allée|impasse|quai)\s+"
    rf"(?:(?:de|du|des|la|le|l')\s*)*{_NAME_WORD}(?:[ \-]{_NAME_WORD})?{_POSTCODE_CITY}"
    # UK postcode on its own: SW1A 1AA, M1 1AE
    r"|\b[A-Z]{1,2}\d[A-Z\d]?\s\d[ABD-HJLNP-UW-Z]{2}\b"
)
# A name is redacted where the text says it is one: an introduction, a title, a staff mention, or a
# sign-off that ends the text ("Regards, Jane Doe"). "called"/"named" are not cues: titles follow them.
_NAME = re.compile(
    r"(?P<cue>(?i:\b(?:my name is|name is|name:|call me|mein name ist|ich hei(?:ß|ss)e|je m'appelle|mi chiamo"
    r"|me llamo|agent|advisor|adviser|representative|rep|employee|colleague|manager|driver"
    r"|mitarbeiter(?:in)?|kollege|kollegin|berater(?:in)?))\s+"
    r"|\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Herr|Frau|Hr|Fr|Monsieur|Madame|Mme|Mlle|Sr|Sra)\.?\s+)"
    rf"(?P<name>{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,2}})"
    r"|(?P<signoff>(?:^|[\n.!?])\s*(?i:regards|kind regards|best regards|best wishes|thanks|thank you|cheers|sincerely"
    r"|greetings|viele grüße|liebe grüße|mit freundlichen grüßen|grüße|gruß|mfg|lg|vg|cordialement|saludos)"
    rf"(?:,\s*|\s*\n\s*))(?P<signed>{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,2}})(?=\s*[.!]?\s*$)"
)
_SECRET = re.compile(
    r"\b(?:sk|pk|rk|ghp|gho|xox[abp]|AKIA)[-_A-Za-z0-9]{12,}\b"  # vendor-prefixed API keys
    r"|\b[A-Fa-f0-9]{32,}\b"  # long hex tokens
    r"|\b[A-Za-z0-9_\-]{24,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\b"  # JWT
    r"|\b(?=[A-Za-z0-9+/_\-]*\d)(?=[A-Za-z0-9+/_\-]*[A-Za-z])[A-Za-z0-9+/_\-]{32,}={0,2}"  # long base64-ish
)
# Dates, times and version numbers look like phone numbers to the pattern above.
_NOT_PHONE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|\d+(?:\.\d+)+")
_TOKEN_SEGMENT = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_\-]{16,}$")


@dataclass(frozen=True)
class Prepared:
    text: str
    redactions: int
    truncated: bool
    original_chars: int


def sanitize(text: str) -> str:
    text = _INVISIBLE.sub("", text)
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)  # NFKC can produce none of these, but be sure
    return _CONTROL.sub(" ", text)


def _redact_url(match: re.Match) -> str:
    url = match.group(0)
    trail = ""
    while url and url[-1] in ".,;:!?)]}":
        trail, url = url[-1] + trail, url[:-1]
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    host_part, slash, path = rest.partition("/")
    host = host_part.rsplit("@", 1)[-1]  # user:password@ dropped
    host = host.split("?", 1)[0].split("#", 1)[0]
    path = path.split("?", 1)[0].split("#", 1)[0]
    segments = ["[SECRET]" if _TOKEN_SEGMENT.match(s) else s for s in path.split("/")] if path else []
    clean = (f"{scheme}://" if scheme else "") + host + (slash + "/".join(segments) if slash else "")
    had_query = ("?" in rest) or ("#" in rest) or ("@" in host_part)
    return f"[URL {clean}{'?[REDACTED]' if had_query else ''}]" + trail


def redact(text: str, extra_secrets: tuple[str, ...] = ()) -> tuple[str, int]:
    """Personal data and secrets replaced by markers; returns the text and how many were replaced."""
    count = 0
    for secret in extra_secrets:
        if secret and secret in text:
            count += text.count(secret)
            text = text.replace(secret, "[SECRET]")

    def sub(pattern: re.Pattern, repl, value: str) -> str:
        nonlocal count
        value, n = pattern.subn(repl, value)
        count += n
        return value

    text = sub(_URL, _redact_url, text)
    text = sub(_EMAIL, "[EMAIL]", text)
    text = sub(_SECRET, "[SECRET]", text)

    def iban(match: re.Match) -> str:
        nonlocal count
        if sum(c.isdigit() for c in match.group(0)) < 10:  # product codes like "AB12 CDEF GHIJ"
            return match.group(0)
        count += 1
        return "[IBAN]"

    text = _IBAN.sub(iban, text)
    text = sub(_CARD, "[CARD]", text)
    text = sub(_ADDRESS, "[ADDRESS]", text)

    def phone(match: re.Match) -> str:
        nonlocal count
        value = match.group(0)
        digits = sum(c.isdigit() for c in value)
        if 7 <= digits <= 15 and not _NOT_PHONE.fullmatch(value):
            count += 1
            return "[PHONE]"
        return match.group(0)

    text = _PHONE.sub(phone, text)
    def name(match: re.Match) -> str:
        group = "name" if match.group("name") else "signed"
        return match.group(0)[: match.start(group) - match.start(0)] + "[NAME]"

    return sub(_NAME, name, text), count


def redact_quote(text: str | None, max_chars: int = 240) -> str:
    """A quote shown to people (evidence in baselines, decisions, notifications): the same redaction as
    text sent to a model, then cut to `max_chars`."""
    clean, _ = redact(sanitize("" if text is None else str(text)[: max_chars * 4]))
    return re.sub(r"[ \t]+", " ", clean).strip()[:max_chars]


def truncate(text: str, max_chars: int, original_chars: int | None = None) -> tuple[str, bool]:
    total = max(original_chars or 0, len(text))
    if max_chars <= 0 or (len(text) <= max_chars and total == len(text)):
        return text, False
    cut = text[:max_chars]
    if len(text) > max_chars:
        space = cut.rfind(" ", max(0, max_chars - 200))
        if space > 0:
            cut = cut[:space]
    return f"{cut} [truncated: review was {total} characters, only the first {len(cut)} are shown]", True


def prepare(text: str | None, max_chars: int = 4000, extra_secrets: tuple[str, ...] = ()) -> Prepared:
    raw = "" if text is None else str(text)
    # Bound the work on huge inputs before the regexes run: keep a margin for redaction to shorten it.
    head = raw[: max(max_chars * 4, 10_000)] if max_chars > 0 else raw
    clean, n = redact(sanitize(head), extra_secrets)
    clean = re.sub(r"[ \t]+", " ", clean).strip()
    clipped, truncated = truncate(clean, max_chars, len(raw) if len(head) < len(raw) else None)
    return Prepared(clipped, n, truncated, len(raw))
