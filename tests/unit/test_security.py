"""Pure parts of security: keys and redaction, the rate limiter, cost estimates, program
nesting, Kafka security settings."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr, ValidationError

from api.ratelimit import RateLimiter
from qorch.samples import demo_job
from qorchestra.apikeys import bearer_token, generate_key, hash_key, key_prefix, redact
from qorchestra.config import Settings
from qorchestra.costs import Price, estimate_usd
from qorchestra.jobs.circuits import CircuitsJob, circuits_tasks
from qorchestra.kafka import client_config
from qorchestra.logs import _Formatter
from qorchestra.program_text import nesting_depth
from qorchestra.redaction import is_secret_name, mask_url


def test_keys_are_random_hashed_and_shown_only_by_prefix() -> None:
    key, other = generate_key(), generate_key()
    assert key != other and key.startswith("qk_") and len(key) >= 40
    assert hash_key(key) == hash_key(key) != hash_key(other)
    assert key not in hash_key(key)
    text = redact(f"failed with {key}; header Authorization: Bearer {other}")
    assert key not in text and other not in text
    assert key_prefix(key) in text and key_prefix(other) in text


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, key: str | None) -> None:
    assert bearer_token(header) == key


def test_rate_limiter_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.take("a", lambda: (2.0, 3)) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", lambda: (2.0, 3)) == pytest.approx(0.5)
    assert limiter.take("b", lambda: (2.0, 3)) == 0.0  # per tenant
    now[0] = 0.5
    assert limiter.take("a", lambda: (2.0, 3)) == 0.0


def test_rate_limiter_reads_a_rate_once_a_ttl_or_after_forget() -> None:
    now, reads = [0.0], []

    def rate() -> tuple[float, int]:
        reads.append(now[0])
        return (100.0, 1000)

    limiter = RateLimiter(rate_ttl_s=1.0, clock=lambda: now[0])
    for _ in range(5):
        limiter.take("a", rate)
    assert reads == [0.0]
    now[0] = 1.0
    limiter.take("a", rate)
    assert reads == [0.0, 1.0]
    limiter.forget_rate("a")
    limiter.take("a", rate)
    assert reads == [0.0, 1.0, 1.0]


def test_cost_estimate_counts_tasks_and_shots() -> None:
    assert estimate_usd(10, 100, Price(0.3, 0.01)) == pytest.approx(13.0)
    assert estimate_usd(1, 0, Price(0.075, 0.0)) == pytest.approx(0.08)  # rounded up to a cent
    job = CircuitsJob.model_validate(demo_job(5, shots=10))
    observables = len(job.result.observables)
    assert circuits_tasks(job) == 5 * observables  # sampled: one task per observable at most
    exact = CircuitsJob.model_validate(demo_job(5))
    assert circuits_tasks(exact) == 5


def test_price_table_defaults_and_overrides() -> None:
    settings = Settings(aws_prices={"aws-qpu": {"per_task": 1.0, "per_shot": 0.5}})
    assert settings.aws_price("aws-qpu") == {"per_task": 1.0, "per_shot": 0.5}
    assert settings.aws_price("aws-sv1")["per_task"] > 0
    assert settings.aws_price("aws-unknown") == settings.aws_price("default")


def test_nesting_depth() -> None:
    assert nesting_depth("a(b[c{d}])e") == 3
    assert nesting_depth(")))(") == 1
    assert nesting_depth("))((") == 2
    assert nesting_depth("(" * 50) == 50


def test_unsafe_admin_key_is_refused_and_secrets_do_not_print() -> None:
    with pytest.raises(ValidationError):
        Settings(admin_key=SecretStr("short"))
    settings = Settings(admin_key=SecretStr(generate_key()), kafka_sasl_password=SecretStr("pw"))
    assert settings.admin_key.get_secret_value() not in repr(settings)
    assert "pw" not in str(settings.kafka_sasl_password)


def test_urls_and_password_settings_are_masked_where_they_print() -> None:
    assert mask_url("postgresql+psycopg://qorch:s3cr%40t@db:5432/qorch") == (
        "postgresql+psycopg://qorch:***@db:5432/qorch"
    )
    assert mask_url("postgresql+psycopg://postgres@127.0.0.1:5432/qorch").endswith("/qorch")
    text = redact(
        "cannot connect to postgresql://u:hunter2@db/q with {'sasl.password': 'two words', "
        '"ssl.key.password": "pem-pw"} and sasl.password=plain'
    )
    for secret in ("hunter2", "two words", "pem-pw", "plain"):
        assert secret not in text
    assert "password authentication failed" in redact("password authentication failed")
    assert [is_secret_name(n) for n in ("sasl.password", "ssl.key.pem", "ssl.key.location")] == [
        True,
        True,
        False,
    ]


def test_settings_never_print_the_database_password_or_kafka_extra_secrets() -> None:
    settings = Settings(
        database_url="postgresql+psycopg://qorch:db-pw-123@db/qorch",
        kafka_extra={"sasl.password": "kafka-pw-123", "security.protocol": "SASL_SSL"},
    )
    for shown in (repr(settings), str(settings), repr(settings.kafka_extra), f"{settings}"):
        assert "db-pw-123" not in shown and "kafka-pw-123" not in shown
        assert "SASL_SSL" in shown  # only the secrets are hidden
    # ... while the clients, and the children of `qorch up` (from model_dump), get them
    assert settings.kafka_extra["sasl.password"] == "kafka-pw-123"
    assert settings.model_dump()["kafka_extra"]["sasl.password"] == "kafka-pw-123"
    copied = settings.model_copy(update={"topic_prefix": "x."})
    assert "kafka-pw-123" not in repr(copied)
    with pytest.raises(ValidationError) as refused:  # nor does an error echo a refused value
        Settings(kafka_extra={"sasl.password": ["kafka-pw-456"]})
    assert "kafka-pw-456" not in str(refused.value)


def test_log_lines_hold_no_key_or_password() -> None:
    key = generate_key()
    record = logging.makeLogRecord(
        {
            "msg": "connecting to %s with %s",
            "args": ("postgresql://u:pg-pw@db/q", {"sasl.password": "kafka-pw"}),
            "levelname": "INFO",
            "key_used": key,
        }
    )
    for as_json in (False, True):
        line = _Formatter(as_json, "test").format(record)
        assert "pg-pw" not in line and "kafka-pw" not in line and key not in line
        assert key_prefix(key) in line


def test_kafka_security_settings_reach_every_client() -> None:
    settings = Settings(
        kafka_bootstrap="broker:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="qorch",
        kafka_sasl_password=SecretStr("s3cret"),
        kafka_ssl_ca_location="/etc/qorch/ca.pem",
    )
    config = client_config(settings)
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["sasl.username"] == "qorch" and config["sasl.password"] == "s3cret"
    assert config["ssl.ca.location"] == "/etc/qorch/ca.pem"
    assert "ssl.key.location" not in config  # unset settings are left out
    plain = client_config(Settings(kafka_bootstrap="b:9092"))
    assert "security.protocol" not in plain
