"""Keeping secrets out of what is printed and logged: URL passwords, secret-looking settings.
Pure functions.

API keys and Bearer credentials are cut to their prefix by :func:`qorchestra.apikeys.redact`, which
also applies :func:`scrub` to every log line.
"""

from __future__ import annotations

import re
from typing import Any

#: What a hidden value shows instead.
MASK = "***"

# Names of settings whose values are secret: librdkafka's sasl.password, ssl.key.password,
# ssl.key.pem, sasl.oauthbearer.client.secret, ...; a ``*.location`` is a path, not a secret.
_SECRET_NAME = re.compile(
    r"(?i)(password|passwd|secret|token|credential|jaas|oauthbearer\.config|(?<![a-z])key(?![a-z]))"
)
# scheme://user:password@host -> scheme://user:***@host
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)([^\s@/]+)(@)")
# name=value, name: value, 'name': 'value', "name": "value" for a password-like name
_SECRET_ASSIGNMENT = re.compile(
    r"""(?i)([\w.-]*(?:password|passwd|secret)[\w.-]*['"]?\s*[:=]\s*)"""
    r"""('[^']*'|"[^"]*"|[^\s,;}'"]+)"""
)


def is_secret_name(name: str) -> bool:
    """Whether a setting called ``name`` holds a secret (its value is never shown)."""
    return bool(_SECRET_NAME.search(name)) and not name.lower().endswith(".location")


def mask_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", url)


def scrub(text: str) -> str:
    """``text`` with URL passwords and the values of secret-looking settings masked."""
    text = mask_url(text)
    return _SECRET_ASSIGNMENT.sub(_mask_assignment, text)


def _mask_assignment(match: re.Match[str]) -> str:
    value = match.group(2)
    quote = value[0] if value[0] in "'\"" else ""
    return f"{match.group(1)}{quote}{MASK}{quote}"


def masked(values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` whose secret-looking entries read ``***``."""
    return {k: MASK if is_secret_name(k) and v else v for k, v in values.items()}


class SecretMap(dict[str, str]):
    """A dict of settings (e.g. ``QORCH_KAFKA_EXTRA``) that prints its secret-looking values
    as ``***``; reading an entry gives the real value."""

    def __repr__(self) -> str:
        return repr(masked(self))

    __str__ = __repr__
