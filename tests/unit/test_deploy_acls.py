"""deploy/ runs Kafka with TLS, SASL and ACLs, each role as its own principal (DESIGN.md, Trust),
and this is configured, not only described: the compose file, its broker and init scripts, and the
Kubernetes manifests are read here and checked against deploy/kafka_acls.py, which is itself
checked against the names the services use. Each pool's agents, and only they, get that pool's
node credential (docs/security.md#messages-on-the-bus), from a variable or Secret of its own,
never from a committed value; deploy/enroll-nodes.sh is run against a stand-in `docker`.

No broker is started: the embedded Tansu broker has no authorizer to test against
(docs/guarantees.md#embedded-broker-and-production-kafka)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ACLS_SH = DEPLOY / "kafka" / "acls.sh"
BROKER_SH = DEPLOY / "kafka" / "broker.sh"
K8S = DEPLOY / "k8s"
STRIMZI = K8S / "kafka-strimzi.yaml"
ENROLL_SH = DEPLOY / "enroll-nodes.sh"


def _load_generator() -> ModuleType:
    name = "deploy_kafka_acls"
    spec = importlib.util.spec_from_file_location(name, DEPLOY / "kafka_acls.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


acls = _load_generator()

#: Kafka operations a probe tries; Describe is implied by Read, Write, Delete and Alter.
OPERATIONS = ("Read", "Write", "Create", "Delete", "Alter", "Describe", "DescribeConfigs")
IMPLIES_DESCRIBE = {"Read", "Write", "Delete", "Alter"}
PREFIX = "qorch."


# ------------------------------------------------------------------ helpers


def allowed(principal: Any, operation: str, resource: str, name: str) -> bool:
    """Whether Kafka's ACL authorizer allows ``operation`` on ``resource`` ``name`` to
    ``principal`` (allow rules only; nothing is allowed without a matching rule)."""
    for acl in principal.acls:
        if acl.resource != resource:
            continue
        if acl.pattern == "literal" and name != acl.name:
            continue
        if acl.pattern == "prefixed" and not name.startswith(acl.name):
            continue
        ops = set(acl.operations)
        if operation in ops or (operation == "Describe" and ops & IMPLIES_DESCRIBE):
            return True
    return False


def by_user(principals: list[Any]) -> dict[str, Any]:
    return {p.user: p for p in principals}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def k8s_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomized() -> list[Path]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [K8S / name for name in kustomization["resources"]]


def pod_specs(paths: list[Path]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every workload's pod spec (Deployments and Jobs) in ``paths``."""
    for path in paths:
        for doc in k8s_docs(path):
            if doc["kind"] in ("Deployment", "Job"):
                yield path, doc["spec"]["template"]["spec"]


def expected_user(args: list[str]) -> str | None:
    """The principal a qorchestra process should log in as, from its command line."""
    if args[0] == "api":
        return str(acls.API_USER)
    if args[0] == "orchestrator":
        return str(acls.ORCHESTRATOR_USER)
    if args[0] == "node":
        return str(acls.node_user(args[args.index("--pool") + 1]))
    return None  # db upgrade: no Kafka


def pool_of(args: list[str]) -> str | None:
    """The pool a node agent serves, from its command line; None for other roles."""
    return args[args.index("--pool") + 1] if args[0] == "node" else None


def credential_var(pool: str) -> str:
    """The deploy/.env variable of a pool's node credential (deploy/enroll-nodes.sh):
    ``local-sv`` -> ``NODE_CREDENTIAL_LOCAL_SV``."""
    return "NODE_CREDENTIAL_" + pool.upper().replace("-", "_")


def credential_secret(pool: str) -> str:
    """The Kubernetes Secret (key ``credential``) of a pool's node credential."""
    return f"qorch-node-credential-{pool}"


def pools_of_compose() -> list[str]:
    return sorted(
        {
            s["command"][s["command"].index("--pool") + 1]
            for s in compose()["services"].values()
            if s.get("command", [None])[0] == "node"
        }
    )


def strimzi_users() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_docs(STRIMZI) if d["kind"] == "KafkaUser"}


# ------------------------------------------------------------------ the generator and the code


def test_generator_uses_the_names_the_services_use() -> None:
    """Topic names come from qorchestra.config; the group names are the ones in the code."""
    agent = (ROOT / "nodes" / "agent.py").read_text()
    assert 'f"{settings.topic_prefix}pool.{pool}"' in agent
    assert acls.agent_group("p.", "local-sv") == "p.pool.local-sv"
    service = (ROOT / "orchestrator" / "service.py").read_text()
    assert 'group=f"{self.settings.topic_prefix}orchestrator"' in service
    assert 'group=f"{self.settings.topic_prefix}orchestrator.nodes"' in service
    assert acls.orchestrator_groups("p.") == ("p.orchestrator", "p.orchestrator.nodes")
    kafka = (ROOT / "qorchestra" / "kafka.py").read_text()
    assert f'f"{acls.UNASSIGNED_GROUP_PREFIX}{{time.monotonic_ns()}}"' in kafka
    assert 'f"{self.group}.cancel"' in agent
    assert acls.cancel_group("p.", "aws-sv1") == "p.pool.aws-sv1.cancel"
    names = [name for name, _ in acls.topics("p.", ["local-sv"])]
    assert names == ["p.results", "p.events", "p.heartbeats", "p.fragments.dlq"] + [
        "p.fragments.local-sv"
    ]
    names = [name for name, _ in acls.topics("p.", ["aws-sv1"])]
    assert names[-2:] == ["p.fragments.aws-sv1", "p.fragments.aws-sv1.cancel"]


@pytest.mark.parametrize("pool", ["dlq", "Local_SV", "", "a/b"])
def test_generator_refuses_what_is_no_pool(pool: str) -> None:
    with pytest.raises(ValueError):
        acls.principals(PREFIX, [pool])


def test_password_variables() -> None:
    assert acls.password_var("qorch-node-local-sv") == "KAFKA_NODE_LOCAL_SV_PASSWORD"
    assert acls.password_var("qorch-api") == "KAFKA_API_PASSWORD"


# ------------------------------------------------------------------ what each principal may do

POOLS = ["aws-sv1", "local-sv"]
TOPICS = [name for name, _ in acls.topics(PREFIX, POOLS)] + [
    f"{PREFIX}fragments.aws-qpu",  # a pool without agents yet
    "other.results",  # another deployment's prefix
]
GROUPS = [acls.agent_group(PREFIX, p) for p in POOLS] + [
    *(acls.cancel_group(PREFIX, p) for p in POOLS),
    *acls.orchestrator_groups(PREFIX),
    f"{acls.UNASSIGNED_GROUP_PREFIX}12345",
    "someone-else",
]


def _probe(principal: Any) -> set[tuple[str, str, str]]:
    """Everything ``principal`` may do among the deployment's topics and groups."""
    found = set()
    for operation in OPERATIONS:
        for topic in TOPICS:
            if allowed(principal, operation, "topic", topic):
                found.add((operation, "topic", topic))
        for group in GROUPS:
            if allowed(principal, operation, "group", group):
                found.add((operation, "group", group))
    return found


@pytest.mark.parametrize("pool", POOLS)
def test_an_agent_reads_only_its_pool_and_writes_only_results_heartbeats_dlq(pool: str) -> None:
    """An agent's principal: Read on fragments.<its pool> and its group (and, for a pool of paid
    quantum tasks, on its cancel topic and group); Write on results, heartbeats and
    fragments.dlq (Describe of those is implied); nothing else at all."""
    agent = by_user(acls.principals(PREFIX, POOLS))[acls.node_user(pool)]
    reads = [(f"{PREFIX}fragments.{pool}", acls.agent_group(PREFIX, pool))]
    if pool.startswith("aws-"):
        reads.append((f"{PREFIX}fragments.{pool}.cancel", acls.cancel_group(PREFIX, pool)))
    writes = [f"{PREFIX}results", f"{PREFIX}heartbeats", f"{PREFIX}fragments.dlq"]
    assert {(a.resource, a.name, a.pattern, a.operations) for a in agent.acls} == {
        *(("topic", own, "literal", ("Read",)) for own, _ in reads),
        *(("group", group, "literal", ("Read",)) for _, group in reads),
        *(("topic", topic, "literal", ("Write",)) for topic in writes),
    }
    assert _probe(agent) == {
        *(m for own, _ in reads for m in (("Read", "topic", own), ("Describe", "topic", own))),
        *(
            m
            for _, group in reads
            for m in (("Read", "group", group), ("Describe", "group", group))
        ),
        *(("Write", "topic", topic) for topic in writes),
        *(("Describe", "topic", topic) for topic in writes),
    }


def test_the_orchestrator_creates_topics_dispatches_and_reads_results() -> None:
    orchestrator = by_user(acls.principals(PREFIX, POOLS))[acls.ORCHESTRATOR_USER]
    may = _probe(orchestrator)
    ours = [t for t in TOPICS if t.startswith(PREFIX)]
    fragments = [t for t in ours if t.startswith(f"{PREFIX}fragments.")]
    for topic in fragments + [f"{PREFIX}events"]:
        assert ("Write", "topic", topic) in may
    for topic in ours:
        assert {("Create", "topic", topic), ("Describe", "topic", topic)} <= may
    for name in (f"{PREFIX}results", f"{PREFIX}heartbeats"):
        assert ("Read", "topic", name) in may
    for group in acls.orchestrator_groups(PREFIX):
        assert ("Read", "group", group) in may
    # It never consumes work, and never writes what agents write.
    assert not {m for m in may if m[0] == "Read" and m[2] in fragments}
    for name in (f"{PREFIX}results", f"{PREFIX}heartbeats"):
        assert ("Write", "topic", name) not in may
    assert not {m for m in may if m[2].startswith("other.")}
    assert not {m for m in may if m[0] in ("Delete", "Alter", "DescribeConfigs")}


def test_the_api_reads_and_writes_only_events() -> None:
    api = by_user(acls.principals(PREFIX, POOLS))[acls.API_USER]
    may = _probe(api)
    assert {m for m in may if m[0] in ("Read", "Write") and m[1] == "topic"} == {
        ("Read", "topic", f"{PREFIX}events"),
        ("Write", "topic", f"{PREFIX}events"),
    }
    assert not {m for m in may if m[1] == "topic" and "fragments.local-sv" in m[2]}
    assert not {m for m in may if m[0] in ("Create", "Delete", "Alter", "DescribeConfigs")}
    assert {m[2] for m in may if m[1] == "group"} == {f"{acls.UNASSIGNED_GROUP_PREFIX}12345"}


# ------------------------------------------------------------------ generated files are current


def test_compose_acl_script_is_the_generators() -> None:
    """deploy/kafka/acls.sh is what the generator prints for the compose file's pools."""
    prefix = compose()["services"]["api"]["environment"]["QORCH_TOPIC_PREFIX"]
    expected = acls.render_kafka_cli(prefix, pools_of_compose())
    assert ACLS_SH.read_text() == expected, (
        "deploy/kafka/acls.sh is stale: .venv/bin/python deploy/kafka_acls.py kafka-cli "
        f"{' '.join('--pool ' + p for p in pools_of_compose())} > deploy/kafka/acls.sh"
    )


def test_strimzi_file_is_the_generators() -> None:
    """deploy/k8s/kafka-strimzi.yaml is what the generator prints for its pools, with the
    configmap's prefix, partitions and replication."""
    config = next(d for d in k8s_docs(K8S / "configmap.yaml") if d["kind"] == "ConfigMap")["data"]
    users = strimzi_users().values()
    pools = sorted(
        u["metadata"]["labels"]["qorchestra.io/pool"]
        for u in users
        if "qorchestra.io/pool" in u["metadata"]["labels"]
    )
    cluster = next(iter(users))["metadata"]["labels"]["strimzi.io/cluster"]
    expected = acls.render_strimzi(
        config["QORCH_TOPIC_PREFIX"],
        pools,
        cluster,
        int(config["QORCH_TOPIC_PARTITIONS"]),
        int(config["QORCH_TOPIC_REPLICATION"]),
    )
    assert STRIMZI.read_text() == expected, (
        "deploy/k8s/kafka-strimzi.yaml is stale: .venv/bin/python deploy/kafka_acls.py strimzi "
        f"{' '.join('--pool ' + p for p in pools)} > deploy/k8s/kafka-strimzi.yaml"
    )


_CLI_ACL = re.compile(
    r'"\$KAFKA_BIN/kafka-acls\.sh" "\$\{ADMIN\[@\]\}" --add --allow-principal User:(\S+) \\\n'
    r"  ((?:--operation \w+ )+)--(topic|group) (\S+) --resource-pattern-type (literal|prefixed)"
)


def test_the_shell_script_and_the_kafka_users_grant_the_same() -> None:
    """Read back from the files themselves: the kafka-acls.sh calls of acls.sh and the ACLs of
    the KafkaUsers grant the same, and each is the model's."""
    from_cli = {
        (user, resource, name, pattern, tuple(re.findall(r"--operation (\w+)", ops)))
        for user, ops, resource, name, pattern in _CLI_ACL.findall(ACLS_SH.read_text())
    }
    model = {
        (p.user, a.resource, a.name, a.pattern, a.operations)
        for p in acls.principals(PREFIX, pools_of_compose())
        for a in p.acls
    }
    assert from_cli == model
    from_strimzi = {
        (
            user,
            acl["resource"]["type"],
            acl["resource"]["name"],
            {"prefix": "prefixed", "literal": "literal"}[acl["resource"]["patternType"]],
            tuple(acl["operations"]),
        )
        for user, doc in strimzi_users().items()
        for acl in doc["spec"]["authorization"]["acls"]
    }
    assert from_strimzi == model  # both deploy the local pools, local-sv and local-dm
    for doc in strimzi_users().values():
        assert doc["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert doc["spec"]["authorization"]["type"] == "simple"
    created = re.findall(
        r"--entity-name (\S+) \\\n  --add-config \"SCRAM-SHA-512=", ACLS_SH.read_text()
    )
    assert sorted(created) == sorted(p.user for p in acls.principals(PREFIX, pools_of_compose()))


# ------------------------------------------------------------------ docker compose


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond the loopback address"


def test_every_compose_kafka_client_uses_sasl_ssl_as_its_own_principal() -> None:
    services = compose()["services"]
    clients = {
        n: s for n, s in services.items() if "QORCH_KAFKA_BOOTSTRAP" in s.get("environment", {})
    }
    assert set(clients) == {"api", "orchestrator", "node-1", "node-2", "node-3"}
    for name, service in clients.items():
        env = service["environment"]
        assert env["QORCH_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["QORCH_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
        user = expected_user(service["command"])
        assert env["QORCH_KAFKA_SASL_USERNAME"] == user, name
        var = acls.password_var(user)
        assert re.fullmatch(rf"\$\{{{var}:\?[^}}]+\}}", env["QORCH_KAFKA_SASL_PASSWORD"]), name
        targets = [v["target"] for v in service.get("volumes", []) if isinstance(v, dict)]
        assert env["QORCH_KAFKA_SSL_CA_LOCATION"] in targets, f"{name} does not mount the CA"
    # migrate talks to Postgres only, and gets no Kafka credential.
    assert not any(k.startswith("QORCH_KAFKA") for k in services["migrate"]["environment"])


def test_compose_broker_has_only_authenticated_listeners_outside_its_container() -> None:
    script = BROKER_SH.read_text()
    props = dict(re.findall(r"^([a-z][\w.-]*)=(.*)$", script, re.MULTILINE))
    protocols = dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))
    for listener in props["listeners"].split(","):
        name, address = listener.split("://")
        if address.startswith("localhost:"):
            assert protocols[name].startswith("SASL_"), listener  # container-only, still SASL
        else:
            assert protocols[name] == "SASL_SSL", f"{listener} reachable unencrypted"
            mechanisms = props[f"listener.name.{name.lower()}.sasl.enabled.mechanisms"]
            assert mechanisms == "SCRAM-SHA-512", listener
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["auto.create.topics.enable"] == "false"
    assert set(props["super.users"].split(";")) == {"User:admin", "User:broker"}
    kafka = compose()["services"]["kafka"]
    published = [int(str(p).rsplit(":", 1)[1]) for p in kafka["ports"]]
    assert published == [9094] and "HOST://:9094" in props["listeners"]
    assert protocols["HOST"] == "SASL_SSL"


def test_compose_kafka_init_creates_every_principal() -> None:
    init = compose()["services"]["kafka-init"]
    targets = {v["source"]: v["target"] for v in init["volumes"]}
    assert targets["./kafka/acls.sh"] == "/opt/qorch/acls.sh"
    needed = set(re.findall(r"\$\{(KAFKA_\w+_PASSWORD):\?\}", ACLS_SH.read_text()))
    assert needed == {p.password_var for p in acls.principals(PREFIX, pools_of_compose())}
    assert needed <= set(init["environment"])
    services = compose()["services"]
    for name in ("api", "orchestrator", "node-1", "node-2", "node-3"):
        assert services[name]["depends_on"]["kafka-init"]["condition"] == (
            "service_completed_successfully"
        )


_SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY|DATABASE_URL)$")


def test_compose_commits_no_secret() -> None:
    """Every password, key or credential-bearing URL is a required ${VAR:?...} from deploy/.env
    (made by deploy/kafka/make-passwords.sh), never a value in the file."""
    for name, service in compose()["services"].items():
        for key, value in service.get("environment", {}).items():
            if _SECRET_NAME.search(key):
                assert re.search(r"\$\{[A-Z0-9_]+:\?[^}]+\}", str(value)), f"{name}: {key}"
                assert not re.search(r"://[^:/]+:[^$@]+@", str(value)), f"{name}: {key}"
    assert "change-me" not in COMPOSE.read_text().lower()


def test_each_compose_agent_gets_its_pools_node_credential_and_nothing_else_does() -> None:
    """Every agent signs with its pool's credential, a required ${NODE_CREDENTIAL_<POOL>:?...}
    from deploy/.env; no other service gets a node credential or the variable."""
    services = compose()["services"]
    agents = [n for n, s in services.items() if s.get("command", [None])[0] == "node"]
    assert agents == ["node-1", "node-2", "node-3"]
    assert pools_of_compose() == ["local-dm", "local-sv"]  # every local pool is served
    for name, service in services.items():
        env = service.get("environment", {})
        pool = pool_of(service.get("command", ["-"]))
        if pool is None:
            assert "QORCH_NODE_CREDENTIAL" not in env, name
            assert not [v for v in env.values() if "NODE_CREDENTIAL" in str(v)], name
            continue
        var = credential_var(pool)
        assert re.fullmatch(rf"\$\{{{var}:\?[^}}]+\}}", env["QORCH_NODE_CREDENTIAL"]), name


#: A node credential as the API issues it (qorchestra/signing.py); only its id may be shown.
_CREDENTIAL = re.compile(r"nc_[0-9a-f]{16}\.")


def test_no_node_credential_is_committed() -> None:
    """Nothing git would commit under deploy/ (nor the deployment guide) holds a credential;
    deploy/.env, where deploy/enroll-nodes.sh writes them, is ignored."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "deploy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "deploy/enroll-nodes.sh" in files
    for name in [*files, "docs/deployment.md"]:
        path = ROOT / name
        if path.is_file():
            assert not _CREDENTIAL.search(path.read_text(errors="replace")), name


_FAKE_DOCKER = """#!/usr/bin/env bash
# Stands in for docker: records each call (with the credential variable it sees), answers an
# enrollment with the next token of $TOKENS the way `qorch nodes enroll` prints it.
printf '%s|%s\\n' "${NODE_CREDENTIAL_LOCAL_SV-unset}" "$*" >>"$CALLS"
case "$*" in
  *" nodes enroll "*)
    echo >>"$TOKENS.used"
    n=$(($(wc -l <"$TOKENS.used")))
    echo "node credential for pool local-sv"
    echo "It is shown only this once; start the agent with QORCH_NODE_CREDENTIAL set to:"
    sed -n "${n}p" "$TOKENS" ;;
esac
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_enroll_script_writes_each_pools_credential_to_the_env_file(tmp_path: Path) -> None:
    """deploy/enroll-nodes.sh: starts api and orchestrator with a stand-in for the missing
    variables, enrolls each pool (by default local-sv and local-dm, the compose file's) through
    the `cli` service, appends its credential to deploy/.env (mode 600, never printed), then
    starts the agents with them; --rotate replaces them, recreates the agents, and only then
    revokes the old ones."""
    from qorchestra.signing import new_node_credential

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(_FAKE_DOCKER)
    docker.chmod(0o755)
    first, second = new_node_credential(), new_node_credential()  # local-sv's
    first_dm, second_dm = new_node_credential(), new_node_credential()  # local-dm's
    tokens = [first, first_dm, second, second_dm]  # in the order the script enrolls
    (tmp_path / "tokens").write_text("".join(f"{t.token}\n" for t in tokens))
    env_file = tmp_path / ".env"
    env_file.write_text("KAFKA_API_PASSWORD=abc\nQORCH_ADMIN_KEY=xyz\n")
    env_file.chmod(0o644)
    calls = tmp_path / "calls"
    environ = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "ENV_FILE": str(env_file),
        "CALLS": str(calls),
        "TOKENS": str(tmp_path / "tokens"),
    }
    environ.pop("NODE_CREDENTIAL_LOCAL_SV", None)
    environ.pop("NODE_CREDENTIAL_LOCAL_DM", None)

    def run(*args: str) -> list[tuple[str, str]]:
        calls.write_text("")
        done = subprocess.run(
            ["bash", str(ENROLL_SH), *args],
            env=environ,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        for token in tokens:
            assert token.token.split(".")[1] not in done.stdout + done.stderr
        compose = f"compose --env-file {env_file} -f {COMPOSE} "
        found = []
        for line in calls.read_text().splitlines():
            seen, call = line.split("|", 1)
            assert call.startswith(compose), call
            found.append((seen, call.removeprefix(compose)))
        return found

    enroll = "run --rm -T cli nodes enroll --pool local-sv --name compose-node-local-sv"
    enroll_dm = "run --rm -T cli nodes enroll --pool local-dm --name compose-node-local-dm"
    assert run() == [
        ("not-enrolled", "up -d api orchestrator"),
        ("not-enrolled", enroll),
        ("not-enrolled", enroll_dm),
        ("unset", "up -d"),  # the agents get the value compose reads from the env file
    ]
    lines = env_file.read_text().splitlines()
    assert lines == [
        "KAFKA_API_PASSWORD=abc",
        "QORCH_ADMIN_KEY=xyz",
        f"NODE_CREDENTIAL_LOCAL_SV={first.token}",
        f"NODE_CREDENTIAL_LOCAL_DM={first_dm.token}",
    ]
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600

    assert run() == [("unset", "up -d")]  # enrolled already: kept
    assert env_file.read_text().splitlines() == lines

    assert run("--rotate") == [
        ("unset", "up -d api orchestrator"),
        ("unset", enroll),
        ("unset", enroll_dm),
        ("unset", "up -d"),
        ("unset", f"run --rm -T cli nodes revoke {first.id}"),
        ("unset", f"run --rm -T cli nodes revoke {first_dm.id}"),
    ]
    assert env_file.read_text().splitlines() == [
        *lines[:2],
        f"NODE_CREDENTIAL_LOCAL_SV={second.token}",
        f"NODE_CREDENTIAL_LOCAL_DM={second_dm.token}",
    ]
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_compose_cli_service_holds_the_admin_key_only_and_starts_only_on_demand() -> None:
    cli = compose()["services"]["cli"]
    assert cli["profiles"] == ["tools"]  # not started by `up`
    assert set(cli["environment"]) == {"QORCH_API_URL", "QORCH_GRPC_TARGET", "QORCH_API_KEY"}
    assert cli["environment"]["QORCH_API_URL"] == "http://api:8000"
    assert cli["depends_on"]["api"]["condition"] == "service_healthy"


def test_generated_secrets_are_ignored_by_git() -> None:
    for path in (
        "deploy/.env",
        "deploy/.env.Ab12Cd",  # a temporary copy deploy/enroll-nodes.sh left behind
        "deploy/kafka/certs/ca.key",
        "deploy/kafka/certs/broker/broker.p12",
    ):
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert result.returncode == 0, f"{path} is not ignored"
    tracked = subprocess.run(
        ["git", "ls-files", "deploy"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [t for t in tracked if re.search(r"(\.key|\.p12|\.pem|\.env)$", t)]


# ------------------------------------------------------------------ Kubernetes


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kustomized())
    assert all(path.exists() for path in listed)
    manifests = {p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert manifests - listed == {p for p in manifests if ".example." in p.name}


def test_k8s_configmap_sets_sasl_ssl() -> None:
    config = next(d for d in k8s_docs(K8S / "configmap.yaml") if d["kind"] == "ConfigMap")["data"]
    assert config["QORCH_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["QORCH_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert config["QORCH_KAFKA_SSL_CA_LOCATION"] == "/etc/qorch/kafka/ca.crt"
    assert not {k for k in config if re.search(r"PASSWORD|USERNAME|EXTRA", k)}


#: The Secrets each role may see besides its own Kafka password.
SHARED_SECRETS = {
    "api": {"qorch-db", "qorch-admin", "qorch-kafka-ca"},
    "orchestrator": {"qorch-db", "qorch-kafka-ca"},
    "node": {"qorch-kafka-ca"},
    "db": {"qorch-db"},
}


def _secrets_of(pod: dict[str, Any]) -> set[str]:
    names = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    for container in pod["containers"]:
        names |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
        names |= {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
    return names


def test_each_k8s_workload_reads_only_its_own_kafka_password() -> None:
    """Agents never get the orchestrator's (or the API's) credential: every workload logs in as
    its role's principal with the password of that role's Secret, and mounts no other role's."""
    workloads = list(pod_specs(sorted(K8S.glob("*.yaml"))))
    assert len(workloads) >= 5
    for path, pod in workloads:
        (container,) = pod["containers"]
        args = container["args"]
        role = "db" if args[0] == "db" else args[0]
        user = expected_user(args)
        env = {e["name"]: e for e in container.get("env", [])}
        secrets = _secrets_of(pod)
        if user is None:
            assert "QORCH_KAFKA_SASL_USERNAME" not in env, path.name
            assert secrets == SHARED_SECRETS[role], path.name
            continue
        assert env["QORCH_KAFKA_SASL_USERNAME"]["value"] == user, path.name
        assert env["QORCH_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": user,
            "key": "password",
        }, path.name
        pool = pool_of(args)
        own = {user} | ({credential_secret(pool)} if pool else set())
        assert secrets == SHARED_SECRETS[role] | own, f"{path.name}: {secrets}"
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["kafka-ca"] == "/etc/qorch/kafka", path.name


def test_each_k8s_agent_reads_its_pools_node_credential_and_nothing_else_does() -> None:
    """Every node Deployment gets QORCH_NODE_CREDENTIAL from its pool's own Secret (key
    `credential`); the API, the orchestrator and the migration get none, nor any such Secret."""
    agents = 0
    for path, pod in pod_specs(sorted(K8S.glob("*.yaml"))):
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container.get("env", [])}
        pool = pool_of(container["args"])
        if pool is None:
            assert "QORCH_NODE_CREDENTIAL" not in env, path.name
            assert not {s for s in _secrets_of(pod) if "credential" in s}, path.name
            continue
        agents += 1
        assert env["QORCH_NODE_CREDENTIAL"]["valueFrom"] == {
            "secretKeyRef": {"name": credential_secret(pool), "key": "credential"}
        }, path.name
        assert pool in credential_secret(pool) and credential_secret(pool) != acls.node_user(pool)
    assert agents == 3  # local-sv, local-dm, and the aws-sv1 example
    example = {
        d["metadata"]["name"]: d
        for d in k8s_docs(K8S / "secret.example.yaml")
        if d["kind"] == "Secret"
    }
    for pool in ("local-sv", "local-dm"):
        assert set(example[credential_secret(pool)]["stringData"]) == {"credential"}


def test_every_deployed_role_has_a_kafka_user() -> None:
    users = strimzi_users()
    for path, pod in pod_specs(kustomized()):
        user = expected_user(pod["containers"][0]["args"])
        if user is not None:
            assert user in users, f"{path.name}: no KafkaUser {user} in kafka-strimzi.yaml"


def test_k8s_exposes_nothing_on_hosts_and_commits_no_secret() -> None:
    for path in K8S.glob("*.yaml"):
        for doc in k8s_docs(path):
            text = yaml.safe_dump(doc)
            assert "hostPort" not in text and "hostNetwork" not in text, path.name
            if doc["kind"] == "Service":
                assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", path.name
            if doc["kind"] == "Secret":
                assert path.name == "secret.example.yaml"
                assert "data" not in doc
                for key, value in doc["stringData"].items():
                    assert "CHANGE-ME" in value, f"{doc['metadata']['name']}: {key}"


# ------------------------------------------------------------------ docs


def test_guarantees_compare_the_embedded_broker_with_production_kafka() -> None:
    text = (ROOT / "docs" / "guarantees.md").read_text()
    assert "## Embedded broker and production Kafka" in text
    section = text.split("## Embedded broker and production Kafka", 1)[1].split("\n## ", 1)[0]
    assert "| guarantee | embedded broker (Tansu) | production Kafka (SASL/TLS/ACLs) |" in section


def test_deployment_guide_shows_the_generated_acls() -> None:
    """The ACL table of docs/deployment.md is the generator's, for prefix qorch. and local-sv."""
    table = acls.render_table(PREFIX, ["local-sv"])
    assert table in (ROOT / "docs" / "deployment.md").read_text(), (
        "regenerate the table in docs/deployment.md: .venv/bin/python deploy/kafka_acls.py table"
    )
