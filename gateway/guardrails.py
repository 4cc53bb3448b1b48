"""Guardrails: PII, secrets and prompt-injection detection on chat prompts, per tenant policy.

``Tenant.guardrails`` maps a detector to a policy; a missing detector is ``off``::

    {"pii": "redact", "secrets": "block", "injection": "flag"}

Policies
    off     the detector does not run (costs nothing)
    flag    the request goes through unchanged; the detection is counted and recorded
    redact  each match is replaced by a typed placeholder (``[REDACTED_EMAIL]``,
            ``[REDACTED_CREDIT_CARD]``, ``[REDACTED_API_KEY]``...) before the provider sees the
            prompt. Prompt injection is an intent, not a span of text: ``redact`` on the injection
            detector acts as ``flag``.
    block   the request is refused (400) and never reaches the provider

Detectors
    pii        emails; phone numbers (``+`` international, US ``(415) 555-2671`` / ``415-555-2671``
               and separated national numbers starting with 0 -- separators are required, so
               years, amounts and ids are not phone numbers); credit cards (13-19 digits,
               spaces/dashes allowed, known issuer prefix, Luhn-checked); IBANs (country length
               and mod-97 checked); US SSNs (``123-45-6789``, invalid areas 000/666/9xx and zero
               groups excluded). All message roles are scanned.
    secrets    OpenAI/Anthropic/Sentinel/Google API keys, AWS access key ids, GitHub and Slack
               tokens, PEM private keys, and ``api_key=...``/``password: ...``-style assignments
               whose value looks random (12+ characters, Shannon entropy >= 3 bits/char, a
               digit); for password/secret names also any 6+ character value with a digit or
               symbol (``password: str`` in code is not a secret). Only the value is replaced.
    injection  heuristic signals, each with a weight; the request's score is
               ``1 - prod(1 - weight)`` over the distinct signals found in non-system messages
               (user, assistant, tool), including base64/hex payloads that decode to such text
               and rot13'd override phrases. Flagged or blocked at score >= 0.5
               (``INJECTION_THRESHOLD``): "ignore all previous instructions" (0.7) alone is
               enough; "you are now ..." (0.3) alone is not, with "developer mode" (0.5) it is.

Cost: the regexes are compiled once, and a text only meets the patterns whose cheap literal
prerequisites it contains (found with ``in`` or in a ``bytes.translate`` "shape" of the text: an
``@`` for emails, a digit cluster for numbers, ``AA00`` for IBANs, a 20+ character token for keys,
a trigger word for injection, a 40+ character base64 run for payloads). Measured on a 2 KB prompt
with no findings (timeit, best of 7, on a shared 2-vCPU host under load): all detectors off ~1 µs,
pii ~12 µs, secrets ~11 µs, injection ~50 µs, all three ~85 µs. Results never carry the matched
text: detections hold the detector, the kind, the action and the injection score.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Policy = Literal["off", "flag", "redact", "block"]
POLICIES: tuple[str, ...] = ("off", "flag", "redact", "block")
DETECTORS = ("pii", "secrets", "injection")
DEFAULT_POLICIES: dict[str, str] = {"pii": "off", "secrets": "off", "injection": "off"}
INJECTION_THRESHOLD = 0.5
TRUSTED_ROLES = frozenset({"system", "developer"})  # the tenant's own instructions: no injection scan


@dataclass(slots=True)
class Detection:
    detector: str
    kind: str
    action: Policy
    score: float | None = None
    count: int = 1


@dataclass(slots=True)
class GuardrailResult:
    messages: list[dict]
    detections: list[Detection]
    blocked: Detection | None


@dataclass(frozen=True, slots=True)
class Match:
    detector: str
    kind: str
    start: int
    end: int


def placeholder(kind: str) -> str:
    return f"[REDACTED_{kind.upper()}]"


# --------------------------------------------------------------------------- validators
def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|3[0689]|6(?:011|5|4[4-9]|2)|35")

IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_valid(compact: str) -> bool:
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1
    except ValueError:
        return False


def shannon_entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


# --------------------------------------------------------------------------- PII
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][\w.+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
# Numbers: one pass over digit-led candidates; the validators decide the kind.
_NUMBERS = re.compile(
    r"""
    (?P<ssn>(?<![\w-])(?!000|666|9\d\d)\d{3}(?P<sep>[- ])(?!00)\d{2}(?P=sep)(?!0000)\d{4}(?![\w-]))
  | (?P<card>(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-]))
  | (?P<intl>(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){2,6}(?![\w]))
  | (?P<us>(?<![\w+(])(?:1[ .-])?(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w]))
  | (?P<national>(?<![\w+])0[1-9]\d{0,3}(?:[ .-]\d{2,4}){2,4}(?![\w]))
    """,
    re.X,
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}")


def _table(classes: dict[bytes, bytes]) -> bytes:
    table = bytearray(b" " * 256)
    for chars, mark in classes.items():
        for ch in chars:
            table[ch] = mark[0]
    return bytes(table)


_DIGITS = b"0123456789"
_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = b"abcdefghijklmnopqrstuvwxyz"
# Byte "shapes" of a text, searched with literal patterns (memchr speed) to find the few places
# worth a real regex: digit clusters (numbers), AA00 (IBANs), 40+ base64 characters (payloads).
_NUMBER_SHAPE = _table({_DIGITS: b"0", b" ().-+": b"-"})
_IBAN_SHAPE = _table({_DIGITS: b"0", _UPPER: b"A"})
_BASE64_SHAPE = _table({_DIGITS + _UPPER + _LOWER + b"+/": b"b"})
_NUMBER_CLUSTER = re.compile(rb"0[0-]{6,}0")
_BASE64_RUN = b"b" * 40


class _Text:
    """A text and its UTF-8 bytes, for the byte-shape prefilters (offsets mapped back to str)."""

    __slots__ = ("_lower", "ascii", "raw", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.raw = text.encode("utf-8", "surrogatepass")
        self.ascii = len(self.raw) == len(text)
        self._lower: str | None = None

    @property
    def lower(self) -> str:
        if self._lower is None:
            self._lower = self.text.lower()
        return self._lower

    def offset(self, byte_offset: int) -> int:
        if self.ascii:
            return byte_offset
        return len(self.raw[:byte_offset].decode("utf-8", "surrogatepass"))


def _pii(t: _Text) -> list[Match]:
    text = t.text
    found: list[Match] = []
    if "@" in text:
        found += [Match("pii", "email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    shape = t.raw.translate(_IBAN_SHAPE)
    at = shape.find(b"AA00")
    while at != -1:
        start = t.offset(at)
        m = _IBAN.match(text, start)
        span = _iban_span(text, start, m.end()) if m else None
        if span is None:
            at = shape.find(b"AA00", at + 1)
            continue
        found.append(Match("pii", "iban", *span))
        at = shape.find(b"AA00", at + span[1] - start)  # an IBAN is ASCII: as many bytes as characters
    if len(t.raw) >= 8:
        for cluster in _NUMBER_CLUSTER.finditer(t.raw.translate(_NUMBER_SHAPE)):
            start, end = t.offset(cluster.start()), t.offset(cluster.end())
            if start and text[start - 1] in "+(":
                start -= 1
            for m in _NUMBERS.finditer(text, start, min(len(text), end + 1)):
                kind = _number_kind(m)
                if kind is not None:
                    found.append(Match("pii", kind, m.start(), m.end()))
    return found


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _number_kind(m: re.Match) -> str | None:
    group = m.lastgroup if m.lastgroup != "sep" else "ssn"
    digits = _digits(m.group())
    if group == "ssn":
        return "us_ssn"
    if group == "card":
        if luhn_valid(digits) and _CARD_PREFIX.match(digits):
            return "credit_card"
        return "phone" if 10 <= len(digits) <= 15 and _looks_like_phone(m.group()) else None
    if group == "intl":
        return "phone" if 8 <= len(digits) <= 15 else None
    if group == "us":
        return "phone"
    if group == "national":
        return "phone" if 9 <= len(digits) <= 11 else None
    return None


_NATIONAL_PHONE = re.compile(r"0[1-9]\d{0,3}(?:[ .-]\d{2,4}){2,4}")


def _looks_like_phone(candidate: str) -> bool:
    return bool(_NATIONAL_PHONE.fullmatch(candidate))


def _iban_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The valid IBAN at ``start`` within the greedy candidate (which may run into the next word)."""
    positions = [i for i in range(start, end) if text[i] != " "]
    compact = "".join(text[i] for i in positions)
    length = IBAN_LENGTHS.get(compact[:2])
    if length is None or len(compact) < length or not iban_valid(compact[:length]):
        return None
    last = positions[length - 1] + 1
    if last < len(text) and text[last].isalnum():
        return None  # the IBAN would end inside a word
    return start, last


# --------------------------------------------------------------------------- secrets
_SECRETS = re.compile(
    r"""
    (?P<private_key>-----BEGIN[A-Z ]{0,20}PRIVATE\ KEY-----[\s\S]*?(?:-----END[A-Z ]{0,20}PRIVATE\ KEY-----|\Z))
  | (?P<api_key>(?<![\w-])(?:sk-(?:sntl-|ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}|AIza[0-9A-Za-z_-]{35}))
  | (?P<aws_access_key>(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9]))
  | (?P<github_token>(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}))
  | (?P<slack_token>(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,})
    """,
    re.X,
)
# Every token above is a run of 20+ [A-Za-z0-9_-] (a PEM block starts with its banner): texts
# without one skip the regex.
_TOKEN_SHAPE = _table({_DIGITS + _UPPER + _LOWER + b"_-": b"t"})
_TOKEN_RUN = b"t" * 20
_ASSIGNMENT = re.compile(
    r"""(?ix)
    (?<![A-Za-z0-9])(?:[A-Za-z0-9]+[_-]){0,3}?(?P<name>api[_-]?key|apikey|access[_-]?key(?:[_-]?id)?|secret[_-]?access[_-]?key|secret(?:[_-]?key)?
        |(?:access|auth|api|bearer|refresh)[_-]?token|token|client[_-]?secret|passw(?:or)?d|pwd)\b
    ["']?\s*(?::|=|=>)\s*["']?
    (?P<value>[A-Za-z0-9_\-./+=!@#$%^&*~]{6,200})
    """
)
_ASSIGNMENT_HINTS = ("key", "secret", "token", "passw", "pwd")


def _secret_value(value: str, *, password: bool) -> bool:
    """Does an assigned value look like a secret rather than code (``password: str``,
    ``password=password``, ``max_tokens=4096``)? Random-looking: long, high entropy, with digits;
    for a password or secret name, any value with a digit or symbol too."""
    if len(value) >= 12 and shannon_entropy(value) >= 3.0 and (password or any(ch.isdigit() for ch in value)):
        return True
    return password and len(value) >= 6 and not value.replace("_", "").isalpha() and not value.isdigit()


def _secrets(t: _Text) -> list[Match]:
    text = t.text
    found: list[Match] = []
    if _TOKEN_RUN in t.raw.translate(_TOKEN_SHAPE) or "-----BEGIN" in text:
        found += [Match("secrets", m.lastgroup or "api_key", m.start(), m.end()) for m in _SECRETS.finditer(text)]
    # An assignment needs a ':' or '=' with a secret-ish name just before it (names are short).
    lowered = t.lower
    for sep in ":=":
        at = text.find(sep)
        while at != -1:
            window = lowered[max(0, at - 40) : at]
            if not any(hint in window for hint in _ASSIGNMENT_HINTS):
                at = text.find(sep, at + 1)
                continue
            m = next(
                (
                    c
                    for c in _ASSIGNMENT.finditer(text, max(0, at - 40), at + 210)
                    if c.end("name") <= at < c.start("value")
                ),
                None,
            )
            if m is not None:
                value = m.group("value").rstrip("\"'.,;")
                name = m.group("name").lower()
                if _secret_value(value, password="pass" in name or name == "pwd" or "secret" in name):
                    found.append(Match("secrets", "generic_secret", m.start("value"), m.start("value") + len(value)))
                at = text.find(sep, max(at + 1, m.end()))
            else:
                at = text.find(sep, at + 1)
    return found


# --------------------------------------------------------------------------- prompt injection
@dataclass(frozen=True, slots=True)
class _Signal:
    kind: str
    weight: float
    pattern: re.Pattern
    needs: tuple[tuple[str, ...], ...]  # lowercase substrings: one of each tuple must be present


_SIGNALS = (
    _Signal(
        "instruction_override",
        0.7,
        re.compile(
            r"\b(?:ignore|disregard|forget|override|bypass|skip)\b[^.\n]{0,40}?"
            r"\b(?:previous|prior|above|earlier|preceding|foregoing|all|any|your|the|system|initial|original)\b"
            r"[^.\n]{0,30}?\b(?:instructions?|prompts?|rules|directions|directives|guidelines|guardrails)\b",
            re.I,
        ),
        (("instruction", "prompt", "rule", "direct", "guideline", "guardrail"),
         ("ignor", "disregard", "forget", "overrid", "bypass", "skip")),
    ),
    _Signal(
        "system_prompt_exfiltration",
        0.6,
        re.compile(
            r"\b(?:(?:reveal|print|show|repeat|output|display|tell\s+me|give\s+me|leak|dump|write\s+out|copy"
            r"|recite|spell\s+out)\b[^.\n?]{0,20}?\b(?:your|the)|(?:what\s+(?:is|are|was|were)|what's)\s+your)"
            r"\s+(?:\w+\s+)?(?:system|initial|hidden|original|secret|developer|pre-?prompt)\s+"
            r"(?:prompt|instructions?|message|rules)\b",
            re.I,
        ),
        (("instruction", "prompt", "rule", "message"),),
    ),
    _Signal(
        "repeat_above",
        0.5,
        re.compile(
            r"\b(?:repeat|print|output|recite|copy)\b[^.\n]{0,25}\b(?:everything|all|the\s+(?:text|words|lines))\b"
            r"[^.\n]{0,20}\b(?:above|before\s+this)\b",
            re.I,
        ),
        (("above", "before"),),
    ),
    _Signal(
        "jailbreak_persona",
        0.5,
        re.compile(r"(?-i:\bDAN\b)|\bdo\s+anything\s+now\b", re.I),
        (("dan", "anything now"),),
    ),
    _Signal(
        "jailbreak_mode",
        0.5,
        re.compile(
            r"\b(?:developer|god|jailbreak|jailbroken|unrestricted|unfiltered|evil|sudo|admin)\s+mode\b"
            r"|\bjailbreak(?:ing|ed)?\b",
            re.I,
        ),
        (("mode", "jailbr"),),
    ),
    _Signal(
        "role_play",
        0.3,
        re.compile(
            r"\byou\s+are\s+now\b|\bfrom\s+now\s+on,?\s+you\s+(?:are|will|must)\b"
            r"|\b(?:act|behave|respond)\s+as\s+(?:an?\s+)?(?:unrestricted|unfiltered|uncensored|evil|rogue)\b"
            r"|\bpretend\s+(?:that\s+)?(?:you\s+are|to\s+be)\b",
            re.I,
        ),
        (("now", "pretend", "evil", "rogue", "restrict", "filt", "cens"),),
    ),
    _Signal(
        "restriction_removal",
        0.3,
        re.compile(
            r"\b(?:without|no|free\s+(?:of|from)|ignore|remove|disable)\s+(?:any\s+|all\s+|your\s+)?"
            r"(?:restrictions|limitations|filters|censorship|safety\s+(?:rules|guidelines|filters)|content\s+polic(?:y|ies))\b",
            re.I,
        ),
        (("restrict", "filt", "cens", "limitation", "safety", "polic"),),
    ),
    _Signal(
        "role_injection",
        0.4,
        re.compile(r"<\|im_start\|>|<\|system\|>|<\|endoftext\|>|\[/?INST\]|<<SYS>>|^\s*###?\s*system\s*:", re.I | re.M),
        (("<|", "inst]", "<<sys", "system"),),
    ),
)  # fmt: skip

_ROT13_OVERRIDE = re.compile(
    r"\b(?:vtaber|qvfertneq|sbetrg)\b[^.\n]{0,40}\b(?:cerivbhf|cevbe|nobir|nyy|lbhe)\b[^.\n]{0,30}\bvafgehpgvbaf?\b",
    re.I,
)
_BASE64_BLOB = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{40,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX_BLOB = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}){24,}(?![0-9A-Fa-f])")


def _signals(t: _Text, depth: int = 0) -> dict[str, float]:
    found: dict[str, float] = {}
    lowered = t.lower
    seen: dict[str, bool] = {}

    def present(needle: str) -> bool:
        hit = seen.get(needle)
        if hit is None:
            hit = seen[needle] = needle in lowered
        return hit

    for signal in _SIGNALS:
        if all(any(present(n) for n in group) for group in signal.needs) and signal.pattern.search(t.text):
            found[signal.kind] = signal.weight
    if depth == 0:
        if (present("vtaber") or present("qvfertneq") or present("sbetrg")) and _ROT13_OVERRIDE.search(t.text):
            found["encoded_payload"] = 0.7
        if _BASE64_RUN in t.raw.translate(_BASE64_SHAPE):
            for decoded in _decoded_blobs(t.text):
                inner = _signals(_Text(decoded), depth + 1)
                if inner:
                    found["encoded_payload"] = max(found.get("encoded_payload", 0.0), 0.6, max(inner.values()))
    return found


def _decoded_blobs(text: str) -> Iterable[str]:
    for m in _BASE64_BLOB.finditer(text):
        blob = m.group()
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        decoded = _printable(raw)
        if decoded is not None:
            yield decoded
    for m in _HEX_BLOB.finditer(text):
        decoded = _printable(bytes.fromhex(m.group()))
        if decoded is not None:
            yield decoded


def _printable(raw: bytes) -> str | None:
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in decoded)
    return decoded if decoded and printable / len(decoded) >= 0.9 else None


def injection_score(signals: dict[str, float]) -> float:
    remaining = 1.0
    for weight in signals.values():
        remaining *= 1.0 - weight
    return round(1.0 - remaining, 4)


def rot13(text: str) -> str:
    return codecs.encode(text, "rot13")


# --------------------------------------------------------------------------- scanning and applying
def scan_text(text: str, detectors: Iterable[str] = ("pii", "secrets")) -> list[Match]:
    """Spans of PII and/or secrets in ``text``, overlapping ones resolved (longest, then first)."""
    return _scan(_Text(text), tuple(detectors))


def _scan(t: _Text, detectors: tuple[str, ...]) -> list[Match]:
    found: list[Match] = []
    if "pii" in detectors:
        found += _pii(t)
    if "secrets" in detectors:
        found += _secrets(t)
    if len(found) < 2:
        return found
    found.sort(key=lambda m: (m.start, m.start - m.end))
    kept: list[Match] = []
    for match in found:
        if kept and match.start < kept[-1].end:
            if match.end - match.start > kept[-1].end - kept[-1].start and match.start == kept[-1].start:
                kept[-1] = match
            continue
        kept.append(match)
    return kept


def redact_text(text: str, detectors: Iterable[str] = ("pii", "secrets")) -> str:
    """``text`` with every PII/secret match replaced by its placeholder (e.g. for a prompt log)."""
    return _replace(text, scan_text(text, detectors))


def _replace(text: str, matches: list[Match]) -> str:
    if not matches:
        return text
    out, last = [], 0
    for match in matches:
        out.append(text[last : match.start])
        out.append(placeholder(match.kind))
        last = match.end
    out.append(text[last:])
    return "".join(out)


def normalize_policies(policies: dict | None) -> dict[str, Policy]:
    """The tenant's policies with defaults; unknown detectors or values are ignored (``off``)."""
    out: dict[str, Policy] = dict(DEFAULT_POLICIES)  # type: ignore[arg-type]
    for detector, policy in (policies or {}).items():
        if detector in DETECTORS and policy in POLICIES:
            out[detector] = policy
    return out


def apply(*, policies: dict[str, str], messages: list[dict]) -> GuardrailResult:
    """Run the tenant's detectors over OpenAI chat ``messages``.

    Returns the messages to send upstream -- the same list object when nothing was redacted
    (the input is never mutated; changed messages and content lists are copied) -- the
    detections (one per detector and kind, with a count; never the matched text) and the
    detection that blocks the request, if any."""
    policy = normalize_policies(policies)
    span_detectors = tuple(d for d in ("pii", "secrets") if policy[d] != "off")
    scan_injection = policy["injection"] != "off"
    if not span_detectors and not scan_injection:
        return GuardrailResult(messages, [], None)
    redacting = tuple(d for d in span_detectors if policy[d] == "redact")
    counts: Counter[tuple[str, str]] = Counter()
    signals: dict[str, float] = {}
    out: list[dict] | None = None

    def process(text: str, role: object) -> str:
        t = _Text(text)
        if scan_injection and role not in TRUSTED_ROLES:
            for kind, weight in _signals(t).items():
                signals[kind] = max(signals.get(kind, 0.0), weight)
        if not span_detectors:
            return text
        matches = _scan(t, span_detectors)
        for match in matches:
            counts[(match.detector, match.kind)] += 1
        return _replace(text, [m for m in matches if m.detector in redacting]) if redacting else text

    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        content = message.get("content")
        new_content: object = content
        if isinstance(content, str):
            new_content = process(content, role)
        elif isinstance(content, list):
            parts: list | None = None
            for j, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                    text = process(part["text"], role)
                    if text is not part["text"]:
                        if parts is None:
                            parts = list(content)
                        parts[j] = {**part, "text": text}
            if parts is not None:
                new_content = parts
        if new_content is not content:
            if out is None:
                out = list(messages)
            out[index] = {**message, "content": new_content}

    detections = [
        Detection(detector, kind, policy[detector], count=n) for (detector, kind), n in sorted(counts.items())
    ]
    score = injection_score(signals)
    if score >= INJECTION_THRESHOLD:
        action: Policy = "flag" if policy["injection"] == "redact" else policy["injection"]
        strongest = max(signals.items(), key=lambda kv: kv[1])[0]
        detections.append(Detection("injection", strongest, action, score=score, count=len(signals)))
    blocked = next((d for d in detections if d.action == "block"), None)
    if blocked is not None:
        return GuardrailResult(messages, detections, blocked)
    return GuardrailResult(out if out is not None else messages, detections, None)
