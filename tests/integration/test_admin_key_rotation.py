"""The configured admin key (``QORCH_ADMIN_KEY``) is replaced, never piled up, on real Postgres.

A start with a new key revokes the configured admin key of the start before; a start with the
same key (another replica) changes nothing; ``rotate-admin`` (REST and ``qorch keys``) replaces
it at once; admin keys made through ``POST /v1/keys`` are never touched. Each test has a
database of its own: other modules' APIs register admin keys of their own in the shared one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import Engine, select, text

from api.auth import register_admin_key
from qorchestra.apikeys import generate_key, hash_key, key_prefix
from qorchestra.store.db import make_engine, make_session_factory
from qorchestra.store.migrate import alembic_config, upgrade
from qorchestra.store.models import ApiKey
from tests.support.api import RunningApi, running_api
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(fresh_database: str) -> Iterator[Engine]:
    engine = make_engine(fresh_database, pool_size=10)
    yield engine
    engine.dispose()


def _keys(engine: Engine) -> list[ApiKey]:
    with make_session_factory(engine)() as session:
        return list(session.execute(select(ApiKey).order_by(ApiKey.created_at)).scalars())


def _valid_configured(engine: Engine) -> list[str]:
    """Prefixes of the valid configured admin keys."""
    return [k.prefix for k in _keys(engine) if k.configured and k.revoked_at is None]


def _status(api: RunningApi, key: str) -> int:
    """What an admin route answers ``key``: 200 (valid admin key) or 401 (refused)."""
    return api.call("GET", "/v1/keys", key).status_code


def _admin_key_is(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """The next ``running_api`` starts with ``key`` in QORCH_ADMIN_KEY."""
    monkeypatch.setattr("tests.support.api.generate_key", lambda: key)


def test_a_start_with_a_new_admin_key_revokes_the_one_before(
    fresh_database: str, kafka_bootstrap: str, engine: Engine
) -> None:
    with running_api(fresh_database, kafka_bootstrap) as first:
        made = first.new_key("ops", ["admin"])  # an admin key made through the API
        reader = first.new_key("acme", ["read"])
        old = first.admin_key
        assert _status(first, old) == 200
        # A rolling update: a replica with a new key starts while the first still serves.
        with running_api(fresh_database, kafka_bootstrap) as second:
            new = second.admin_key
            assert new != old
            for api in (first, second):  # every replica reads the same keys
                assert _status(api, old) == 401
                assert _status(api, new) == 200
                assert _status(api, made) == 200
                assert api.call("GET", "/v1/nodes", reader).status_code == 200
            assert _valid_configured(engine) == [key_prefix(new)]
            listed = {k["prefix"]: k for k in second.call("GET", "/v1/keys", new).json()["data"]}
            assert listed[key_prefix(old)]["revoked_at"] is not None
            assert listed[key_prefix(old)]["configured"] is True
            assert listed[key_prefix(made)]["configured"] is False
    # A third start, after both stopped: only its key of the three configured ones is valid.
    with running_api(fresh_database, kafka_bootstrap) as third:
        assert [_status(third, k) for k in (old, new, third.admin_key, made)] == [
            401,
            401,
            200,
            200,
        ]
    assert len([k for k in _keys(engine) if k.configured]) == 3
    assert _valid_configured(engine) == [key_prefix(third.admin_key)]


def test_replicas_with_the_same_admin_key_change_nothing(
    fresh_database: str, kafka_bootstrap: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = generate_key()
    _admin_key_is(monkeypatch, key)
    with (
        running_api(fresh_database, kafka_bootstrap) as one,
        running_api(fresh_database, kafka_bootstrap) as other,
    ):
        assert _status(one, key) == 200 and _status(other, key) == 200
    with running_api(fresh_database, kafka_bootstrap) as again:  # a restart
        assert _status(again, key) == 200
    rows = [k for k in _keys(engine) if k.key_hash == hash_key(key)]
    assert len(rows) == 1 and rows[0].revoked_at is None and rows[0].configured
    assert len(_keys(engine)) == 1


def test_replicas_starting_at_once_leave_one_configured_admin_key(
    fresh_database: str, engine: Engine
) -> None:
    """Registration takes turns under a lock: the same key from 8 replicas is one row, and of
    4 different keys starting at once exactly one stays valid."""
    sessions = make_session_factory(engine)

    def start_all(keys: list[str]) -> None:
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(keys))

        def start(key: str) -> None:
            try:
                barrier.wait()
                register_admin_key(sessions, make_settings(admin_key=key))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(k,)) for k in keys]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors

    same = generate_key()
    start_all([same] * 8)
    assert [k.prefix for k in _keys(engine)] == [key_prefix(same)]
    assert _valid_configured(engine) == [key_prefix(same)]

    different = [generate_key() for _ in range(4)]
    start_all(different)
    valid = _valid_configured(engine)
    assert len(valid) == 1 and valid[0] in {key_prefix(k) for k in different}
    assert len(_keys(engine)) == 5


def test_rotate_admin_replaces_the_configured_key_over_rest_and_the_cli(
    fresh_database: str, kafka_bootstrap: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_api(fresh_database, kafka_bootstrap) as api:
        old = api.admin_key
        made = api.new_key("ops", ["admin"])
        reader = api.new_key("acme", ["read", "submit"])
        refused = api.call("POST", "/v1/keys/rotate-admin", reader)
        assert refused.status_code == 403, refused.text

        answer = api.call("POST", "/v1/keys/rotate-admin", old)
        assert answer.status_code == 201, answer.text
        body = answer.json()
        rotated = body["key"]
        assert rotated.startswith("qk_") and body["prefix"] == key_prefix(rotated)
        assert body["configured"] is True and body["tenant"] == "admin"
        assert sorted(body["scopes"]) == ["admin", "read", "submit"]
        assert [k["prefix"] for k in body["revoked"]] == [key_prefix(old)]
        assert _status(api, old) == 401
        assert _status(api, rotated) == 200
        assert _status(api, made) == 200  # admin keys made through the API stay
        listed = api.call("GET", "/v1/keys", rotated).json()["data"]
        assert all("key" not in k for k in listed)  # shown once, in the answer only

        # The command line calls the same route with QORCH_API_KEY.
        env = {k: v for k, v in os.environ.items() if not k.startswith("QORCH_")}
        env.update(QORCH_API_URL=api.url, QORCH_API_KEY=rotated)
        done = subprocess.run(
            [sys.executable, "-m", "qorch.cli", "keys", "rotate-admin"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        printed = [line for line in done.stdout.splitlines() if line.startswith("qk_")]
        assert len(printed) == 1, done.stdout
        newest = printed[0]
        assert "QORCH_ADMIN_KEY" in done.stdout and key_prefix(rotated) in done.stdout
        assert rotated not in done.stdout + done.stderr
        assert _status(api, rotated) == 401
        assert _status(api, newest) == 200
        assert _status(api, made) == 200
        assert _valid_configured(engine) == [key_prefix(newest)]

    # An operator forgot to update QORCH_ADMIN_KEY: the old key stays revoked, and the start
    # does not revoke the rotated key the others use.
    _admin_key_is(monkeypatch, old)
    with running_api(fresh_database, kafka_bootstrap) as restarted:
        assert _status(restarted, old) == 401
        assert _status(restarted, newest) == 200
    # The next start with the rotated key keeps it, and revokes nothing.
    _admin_key_is(monkeypatch, newest)
    with running_api(fresh_database, kafka_bootstrap) as updated:
        assert _status(updated, newest) == 200 and _status(updated, made) == 200
    assert _valid_configured(engine) == [key_prefix(newest)]


def test_admin_keys_of_earlier_starts_are_revoked_after_the_migration(
    fresh_database: str,
) -> None:
    """A database from before ``api_keys.configured``: the admin keys that piled up there
    (named QORCH_ADMIN_KEY) become configured ones, and the next start keeps only its own."""
    command.downgrade(alembic_config(fresh_database), "0004")
    legacy = [generate_key() for _ in range(3)]
    made = generate_key()
    old_engine = make_engine(fresh_database, pool_size=1, check=False)
    try:
        with old_engine.begin() as conn:
            conn.execute(text("INSERT INTO tenants (id) VALUES ('admin'), ('ops')"))
            for n, (key, name, tenant) in enumerate(
                [(k, "QORCH_ADMIN_KEY", "admin") for k in legacy] + [(made, "ops", "ops")]
            ):
                conn.execute(
                    text(
                        "INSERT INTO api_keys (id, key_hash, prefix, tenant, scopes, name) "
                        "VALUES (:id, :hash, :prefix, :tenant, '[\"admin\"]', :name)"
                    ),
                    {
                        "id": f"00000000-0000-0000-0000-00000000000{n}",
                        "hash": hash_key(key),
                        "prefix": key_prefix(key),
                        "tenant": tenant,
                        "name": name,
                    },
                )
    finally:
        old_engine.dispose()
    upgrade(fresh_database)
    engine = make_engine(fresh_database, pool_size=2)
    try:
        assert len(_valid_configured(engine)) == 3  # the migration revokes nothing itself
        register_admin_key(make_session_factory(engine), make_settings(admin_key=legacy[1]))
        assert _valid_configured(engine) == [key_prefix(legacy[1])]
        made_row = [k for k in _keys(engine) if k.key_hash == hash_key(made)]
        assert made_row[0].revoked_at is None and not made_row[0].configured
    finally:
        engine.dispose()
