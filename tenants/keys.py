"""Sentinel API key format: ``sk-sntl-<public id>-<secret><checksum>``.

* public id: 12 base62 characters, stored in clear and indexed; identifies the key row.
* secret: 32 base62 characters (~190 bits) from ``secrets``; never stored.
* checksum: CRC32 of everything before it, as 6 base62 characters (like GitHub's tokens), so a
  mistyped or truncated key is refused without touching the database.

Only ``HMAC-SHA256(pepper, token)`` is stored. The pepper lives in the server's environment, so a
leaked database alone does not allow offline guessing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

from django.conf import settings

PREFIX = "sk-sntl-"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PUBLIC_ID_LEN = 12
SECRET_LEN = 32
CHECKSUM_LEN = 6
_TOKEN_RE = re.compile(
    rf"^{PREFIX}([0-9A-Za-z]{{{PUBLIC_ID_LEN}}})-([0-9A-Za-z]{{{SECRET_LEN}}})([0-9A-Za-z]{{{CHECKSUM_LEN}}})$"
)


@dataclass(frozen=True, slots=True)
class MintedKey:
    public_id: str
    token: str
    secret_hash: str
    last4: str


def _base62(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        out.append(ALPHABET[rem])
    return "".join(reversed(out))


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LEN)


def hash_token(token: str) -> str:
    pepper = settings.SENTINEL_KEY_PEPPER.encode()
    return hmac.new(pepper, token.encode(), hashlib.sha256).hexdigest()


def mint(public_id: str | None = None) -> MintedKey:
    public_id = public_id or _random(PUBLIC_ID_LEN)
    body = f"{PREFIX}{public_id}-{_random(SECRET_LEN)}"
    token = body + checksum(body)
    return MintedKey(public_id=public_id, token=token, secret_hash=hash_token(token), last4=token[-4:])


def parse(token: str) -> str | None:
    """The public id of a well-formed token with a valid checksum, else None (no database needed)."""
    match = _TOKEN_RE.match(token)
    if match is None:
        return None
    body = token[:-CHECKSUM_LEN]
    if not hmac.compare_digest(checksum(body), match.group(3)):
        return None
    return match.group(1)


def matches(token: str, stored_hash: str) -> bool:
    return bool(stored_hash) and hmac.compare_digest(hash_token(token), stored_hash)
