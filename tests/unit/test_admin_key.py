"""The admin key an operator configures: placeholders and low-entropy keys are refused at
start, with a message that says how to make a good key and never shows the refused one."""

from __future__ import annotations

import base64
import os
import secrets

import pytest
from pydantic import SecretStr, ValidationError

from qorch import cli
from qorchestra.apikeys import MAKE_A_KEY, generate_key, key_weakness
from qorchestra.config import Settings, get_settings

PLACEHOLDER = "CHANGE-ME-to-32-or-more-random-characters"  # deploy/k8s/secret.example.yaml

WEAK = [
    PLACEHOLDER,
    PLACEHOLDER.lower(),
    "our-admin-key-please-change_me-before-going-live",
    "a" * 64,
    "abababababababababababababababababababab",
    "0123456789abcdef0123456789abcdef0123456789abcdef",  # 4 bits a character, but a run
    "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH",
    "passwordpasswordpassword12345678",
    "x9Kq!mZ2" * 8,  # 8 characters written 8 times
    "aaaabbbbccccddddeeeeffffgggghhhh" * 4,
]


@pytest.mark.parametrize("key", WEAK)
def test_placeholder_and_low_entropy_keys_are_refused_without_showing_them(key: str) -> None:
    assert key_weakness(key)
    with pytest.raises(ValidationError) as refused:
        Settings(admin_key=SecretStr(key))
    message = str(refused.value)
    assert "QORCH_ADMIN_KEY" in message and MAKE_A_KEY in message
    assert key not in message and key[:12] not in message
    assert key not in repr(refused.value.errors(include_input=False))


def test_the_placeholder_is_named_as_such() -> None:
    assert "CHANGE-ME" in (key_weakness(PLACEHOLDER) or "")
    assert "CHANGE-ME" in (key_weakness("x" + PLACEHOLDER.lower() + generate_key()) or "")


def test_random_keys_always_pass() -> None:
    """secrets.token_urlsafe(32) (the advice), generated keys, and the keys of
    ``openssl rand -base64 33`` (deploy/README.md) and ``openssl rand -hex 32``."""
    for _ in range(50_000):
        key = secrets.token_urlsafe(32)
        assert key_weakness(key) is None, key
    for make in (
        generate_key,
        lambda: base64.b64encode(os.urandom(33)).decode(),
        lambda: secrets.token_hex(32),
    ):
        for _ in range(10_000):
            key = make()
            assert key_weakness(key) is None, key
    for _ in range(200):  # through the setting itself
        key = secrets.token_urlsafe(32)
        assert Settings(admin_key=SecretStr(key)).admin_key.get_secret_value() == key
    assert Settings(admin_key=SecretStr("")).admin_key.get_secret_value() == ""  # qorch up


def test_short_keys_are_still_refused() -> None:
    with pytest.raises(ValidationError, match="shorter than 32 characters"):
        Settings(admin_key=SecretStr(secrets.token_urlsafe(16)))


def test_the_command_refuses_a_placeholder_key_with_a_plain_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QORCH_ADMIN_KEY", PLACEHOLDER)
    get_settings.cache_clear()
    try:
        assert cli.main(["nodes"]) == cli.EXIT_NOT_READY
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    assert "QORCH_ADMIN_KEY is the deploy placeholder" in out.err and MAKE_A_KEY in out.err
    assert PLACEHOLDER not in out.err + out.out and "Traceback" not in out.err
