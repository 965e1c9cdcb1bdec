"""API keys: generation, hashing, display, and scrubbing them out of text. Pure functions.

A key is ``qk_`` plus 43 URL-safe random characters (256 bits). Only its SHA-256 is stored: a
key that random needs no slow hash, and a lookup by hash is one indexed read. A key is shown
in full once, at creation; everywhere else only its prefix (the first 10 characters).
"""

from __future__ import annotations

import hashlib
import re
import secrets

from qorchestra.redaction import scrub

KEY_PREFIX = "qk_"
#: Characters of a key that may be shown (logs, listings, error messages).
SHOWN_CHARS = 10
SCOPES = ("read", "submit", "admin")

_BEARER = re.compile(r"(?i)(bearer\s+)(\S{1,10})\S*")  # 10 = SHOWN_CHARS
_KEY = re.compile(r"\b(qk_[A-Za-z0-9_-]{7})[A-Za-z0-9_-]+")  # 3 + 7 = SHOWN_CHARS


def generate_key() -> str:
    """A new random key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key: hex SHA-256."""
    return hashlib.sha256(key.encode("utf-8", errors="surrogatepass")).hexdigest()


def key_prefix(key: str) -> str:
    """The part of a key that may be shown."""
    return key[:SHOWN_CHARS]


def redact(text: str) -> str:
    """``text`` with every key and Bearer credential cut to its prefix plus ``...``, and URL
    passwords and password-like settings (``sasl.password=...``) masked (what every log line
    goes through)."""
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}...", text)
    return scrub(_KEY.sub(lambda m: f"{m.group(1)}...", text))


def bearer_token(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
