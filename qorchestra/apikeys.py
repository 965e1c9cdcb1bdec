"""API keys: generation, hashing, display, and scrubbing them out of text. Pure functions.

A key is ``qk_`` plus 43 URL-safe random characters (256 bits). Only its SHA-256 is stored: a
key that random needs no slow hash, and a lookup by hash is one indexed read. A key is shown
in full once, at creation; everywhere else only its prefix (the first 10 characters).

A key chosen by an operator (``QORCH_ADMIN_KEY``) is checked by ``key_weakness``: a deploy
placeholder or an obviously guessable string is refused before the API registers it.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections import Counter
from itertools import pairwise

from qorchestra.redaction import scrub

KEY_PREFIX = "qk_"
#: Characters of a key that may be shown (logs, listings, error messages).
SHOWN_CHARS = 10
SCOPES = ("read", "submit", "admin")

_BEARER = re.compile(r"(?i)(bearer\s+)(\S{1,10})\S*")  # 10 = SHOWN_CHARS
_KEY = re.compile(r"\b(qk_[A-Za-z0-9_-]{7})[A-Za-z0-9_-]+")  # 3 + 7 = SHOWN_CHARS

#: How to make a good key, for the messages that refuse a weak one.
MAKE_A_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
#: The placeholders of deploy/ (``CHANGE-ME-to-32-or-more-random-characters``), any case.
_PLACEHOLDER = re.compile(r"(?i)change[-_ .]?me")
#: Least entropy of a chosen key, estimated from its characters' frequencies (bits in all and
#: per character), most of its neighbouring characters that may be equal or consecutive
#: ("aaaa", "abcd", "1234"), and least share of distinct 3-character substrings (repeats).
#: ``secrets.token_urlsafe(32)`` keys lie far inside every bound (tests/unit/test_admin_key.py
#: checks many): at least 4.1 bits per character and 178 bits in all, at most a quarter of
#: consecutive neighbours, at least 95 % distinct substrings; so do ``openssl rand -hex 32``
#: and ``openssl rand -base64 33`` keys.
MIN_KEY_BITS = 128.0
MIN_BITS_PER_CHAR = 3.0
MAX_CONSECUTIVE_SHARE = 0.5
MIN_DISTINCT_TRIGRAM_SHARE = 0.75


def generate_key() -> str:
    """A new random key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_weakness(key: str) -> str | None:
    """Why ``key`` is not fit to be an admin key, or None. The reason never quotes the key.

    A key is refused when it is a deploy placeholder (it contains "CHANGE-ME") or its entropy,
    as estimated from its characters, is low: few distinct characters or a skewed mix of them,
    runs of equal or consecutive characters, or repeated pieces.
    """
    if not key:
        return "is empty"
    if _PLACEHOLDER.search(key):
        return "is the deploy placeholder (it contains CHANGE-ME), not a secret"
    counts = Counter(key)
    per_char = sum(n / len(key) * math.log2(len(key) / n) for n in counts.values())
    if per_char < MIN_BITS_PER_CHAR or per_char * len(key) < MIN_KEY_BITS:
        return (
            f"has too little entropy (about {per_char * len(key):.0f} bits estimated from its "
            f"characters; at least {MIN_KEY_BITS:.0f} are needed)"
        )
    pairs = list(pairwise(key))
    consecutive = sum(abs(ord(a) - ord(b)) <= 1 for a, b in pairs)
    if pairs and consecutive > MAX_CONSECUTIVE_SHARE * len(pairs):
        return "is mostly runs of equal or consecutive characters (like aaaa or 1234)"
    trigrams = [key[i : i + 3] for i in range(len(key) - 2)]
    if trigrams and len(set(trigrams)) < MIN_DISTINCT_TRIGRAM_SHARE * len(trigrams):
        return "repeats the same pieces (like a word or pattern written several times)"
    return None


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
