"""The one configuration object. Every field is read from an env var prefixed ``QORCH_``."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qorchestra.apikeys import MAKE_A_KEY, key_weakness
from qorchestra.devices import EMULATED_PREFIX, SHIPPED_PROFILES, DeviceProfile, emulated_profiles
from qorchestra.program_sets import ProgramSetLimits
from qorchestra.redaction import SecretMap, mask_url

#: A Braket reservation ARN (Braket Direct), as CreateQuantumTask's ``associations`` take it.
RESERVATION_ARN = re.compile(
    r"arn:aws[a-z-]*:braket:[a-z0-9-]+:[0-9]{12}:reservation/[A-Za-z0-9-]+"
)

#: Widest program Braket's density-matrix simulator runs here in bearable time and memory (a
#: 13-qubit density matrix holds 2**26 amplitudes, 1 GiB): the limit of ``local-dm`` and of the
#: emulated pools, whose emulator simulates density matrices whatever the device's size.
DENSITY_MATRIX_MAX_QUBITS = 13

# Qubit limits of the pools the platform knows out of the box. A pool not named here takes
# ``default_max_qubits``; ``QORCH_POOL_MAX_QUBITS`` overrides any of them. An emulated pool
# (``emu-<profile>``) takes its device's qubit count, at most DENSITY_MATRIX_MAX_QUBITS.
DEFAULT_POOL_MAX_QUBITS: dict[str, int] = {
    "local-sv": 26,
    "local-dm": DENSITY_MATRIX_MAX_QUBITS,
    "aws-sv1": 34,
    "aws-dm1": 17,
    "aws-tn1": 50,
    **{pool: min(p.qubits, DENSITY_MATRIX_MAX_QUBITS) for pool, p in SHIPPED_PROFILES.items()},
}

# Braket device ARNs for the managed simulators; QPU pools are added with QORCH_AWS_DEVICES.
DEFAULT_AWS_DEVICES: dict[str, str] = {
    "aws-sv1": "arn:aws:braket:::device/quantum-simulator/amazon/sv1",
    "aws-dm1": "arn:aws:braket:::device/quantum-simulator/amazon/dm1",
    "aws-tn1": "arn:aws:braket:::device/quantum-simulator/amazon/tn1",
}

#: Pools whose agents create paid Braket quantum tasks: their agents report each task's ARN
#: to the orchestrator, and read cancellations from ``Settings.cancel_topic`` (docs/qpu.md).
QUANTUM_TASK_POOL_PREFIX = "aws-"


def creates_quantum_tasks(pool: str) -> bool:
    """Whether ``pool``'s agents create paid Braket quantum tasks (the ``aws-*`` pools)."""
    return pool.startswith(QUANTUM_TASK_POOL_PREFIX)


# Price table of the paid pools (docs/security.md): USD per quantum task and per shot. A pool
# not named here takes "default"; ``QORCH_AWS_PRICES`` overrides any of them. Braket bills the
# managed simulators per minute: their per-task price here is an estimate of one short task.
# An emulated pool costs what its device costs (its profile's price).
DEFAULT_AWS_PRICES: dict[str, dict[str, float]] = {
    "aws-sv1": {"per_task": 0.075, "per_shot": 0.0},
    "aws-dm1": {"per_task": 0.075, "per_shot": 0.0},
    "aws-tn1": {"per_task": 0.275, "per_shot": 0.0},
    **{pool: dict(p.price) for pool, p in SHIPPED_PROFILES.items()},
    "default": {"per_task": 0.30, "per_shot": 0.08},
}

#: Shortest admin key the API accepts (``secrets.token_urlsafe(32)`` gives 43 characters).
MIN_KEY_CHARS = 32

#: librdkafka settings that print their secret-looking values (sasl.password, ...) as ***.
KafkaExtra = Annotated[dict[str, str], AfterValidator(SecretMap)]


class Settings(BaseSettings):
    """Settings of every qorchestra process. Empty URLs mean "start the embedded one"."""

    # hide_input_in_errors: a refused value (a short admin key, a malformed
    # QORCH_KAFKA_EXTRA) is not echoed in the error, which may be logged.
    model_config = SettingsConfigDict(
        env_prefix="QORCH_", extra="ignore", hide_input_in_errors=True
    )

    # Connections
    database_url: str = Field("", description="SQLAlchemy URL of Postgres; empty = embedded.")
    kafka_bootstrap: str = Field("", description="Kafka bootstrap servers; empty = embedded.")
    topic_prefix: str = Field("qorch.", description="Prefix of every Kafka topic.")
    topic_partitions: int = Field(4, ge=1, description="Partitions of topics the platform creates.")
    topic_replication: int = Field(1, ge=1, description="Replication factor of created topics.")
    kafka_extra: KafkaExtra = Field(
        default_factory=SecretMap,
        description="Extra librdkafka settings for every client (security.protocol, sasl.*, "
        "...); values of password-, secret- and key-like names never print.",
    )
    kafka_session_timeout_ms: int = Field(6000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(1000, ge=100)
    kafka_fetch_wait_max_ms: int = Field(10, ge=1)
    kafka_background_fetch_wait_max_ms: int = Field(
        500,
        ge=1,
        description="fetch.wait.max.ms of consumers off the latency path (the orchestrator's "
        "heartbeats): an idle consumer at 10 ms costs the embedded broker about 4% of a core.",
    )
    kafka_max_poll_interval_ms: int = Field(
        300_000,
        ge=10_000,
        description="Longest time a consumer may spend on one message (a node agent on one "
        "fragment) before the group hands its partitions to another member; raise it for "
        "pools whose devices queue tasks for long.",
    )
    kafka_message_timeout_ms: int = Field(30000, ge=1000)
    kafka_linger_ms: int = Field(
        0,
        ge=0,
        description="linger.ms of every producer: how long a message waits for others to share "
        "its request. A progress event or a result travels alone and waited all of it (2 ms "
        "on every event before); messages produced while a request is in flight are batched "
        "either way.",
    )

    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=0, le=65535)
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(50051, ge=0, le=65535)
    api_url: str = Field(
        "", description="Where clients reach the REST API; empty = from host/port."
    )
    grpc_target: str = Field("", description="Where clients reach gRPC; empty = from host/port.")
    grpc_tls_cert_file: str = Field(
        "",
        description="PEM certificate chain of the gRPC server; with QORCH_GRPC_TLS_KEY_FILE the "
        "server speaks TLS only. Empty = plaintext (put a TLS proxy in front).",
    )
    grpc_tls_key_file: str = Field(
        "", description="PEM private key of the gRPC server (with QORCH_GRPC_TLS_CERT_FILE)."
    )
    grpc_tls: bool = Field(
        False,
        description="Clients reach gRPC over TLS, verifying the server against the system's "
        "roots or QORCH_GRPC_TLS_CA_FILE.",
    )
    grpc_tls_ca_file: str = Field(
        "",
        description="PEM certificates clients trust for the gRPC server (implies "
        "QORCH_GRPC_TLS), e.g. a private CA or a self-signed server certificate.",
    )

    # Security (docs/security.md)
    admin_key: SecretStr = Field(
        SecretStr(""),
        description="An admin API key the API registers at start (only its hash is stored); "
        "`qorch up` and `qorch demo` generate one when it is empty.",
    )
    api_key: SecretStr = Field(
        SecretStr(""), description="The key `qorch` client commands send (Bearer)."
    )
    key_cache_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="How long an API process keeps an API key it accepted before it asks "
        "Postgres again (a burst of requests then costs one lookup per key a second). A key "
        "revoked through one API process is refused there at once, and by the others within "
        "this time; 0 asks for every request.",
    )
    kafka_security_protocol: str = Field(
        "", description="librdkafka security.protocol: PLAINTEXT, SSL, SASL_SSL, SASL_PLAINTEXT."
    )
    kafka_sasl_mechanism: str = Field("", description="e.g. SCRAM-SHA-512.")
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_ca_location: str = Field("", description="CA bundle that signed the brokers.")
    kafka_ssl_certificate_location: str = Field("", description="Client certificate (mTLS).")
    kafka_ssl_key_location: str = Field("", description="Client private key (mTLS).")
    kafka_ssl_key_password: SecretStr = SecretStr("")
    max_request_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest request body; larger ones get 413."
    )
    max_program_nesting: int = Field(
        32, ge=1, description="Deepest nesting of braces, brackets and parentheses in a program."
    )
    max_program_operations: int = Field(
        100_000,
        ge=1,
        description="Operations a node agent runs for one program once its loops and gate "
        "definitions are unrolled (estimated before running); beyond: the fragment fails.",
    )
    parse_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Time bound of parsing one submitted program (in a worker process that is "
        "killed at the bound), and on an emulated pool of checking it against the device's "
        "emulator; beyond: 422. The longest valid programs take about 15 s.",
    )
    parse_workers: int = Field(2, ge=1, description="Processes that parse submitted programs.")
    parse_memory_mb: int = Field(
        2048, ge=256, description="Address-space limit of a parsing process, in MiB."
    )
    parse_budget_s: float = Field(
        30.0,
        gt=0,
        description="Parse time, waits for a worker included, of all the programs of one "
        "request together; a program not parsed when it runs out: 422 naming that program "
        "(a program waiting for a worker then: 503 with Retry-After). Programs parsed before "
        "(cached) cost nothing.",
    )
    parse_wait_s: float = Field(
        2.0,
        gt=0,
        description="Longest wait of one program for a free parse worker; beyond: 503 with "
        "Retry-After (the workers are busy, the program is not at fault).",
    )
    parse_tenant_workers: int = Field(
        0,
        ge=0,
        description="Parse workers one tenant may hold at once (the rest stay free for other "
        "tenants, which are served round robin); 0: all but one, at least one.",
    )
    parse_spare_workers: int = Field(
        1,
        ge=0,
        description="Parse workers started ahead of time (Braket imported) to replace at once "
        "a worker killed for running past the bound.",
    )
    max_fragment_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Largest fragment message a node agent runs; larger ones go to fragments.dlq.",
    )
    tenant_max_concurrent_jobs: int = Field(
        20, ge=1, description="Unfinished jobs of one tenant, at most (429 beyond)."
    )
    tenant_max_circuits_per_job: int = Field(
        100_000, ge=1, description="Circuit runs (programs x bindings) of one job of a tenant."
    )
    tenant_max_shots_per_job: int = Field(
        10_000_000, ge=1, description="Shots of one job of a tenant (shots x circuit runs)."
    )
    tenant_submit_rate_per_s: float = Field(
        2.0, gt=0, description="Sustained submissions per second of one tenant (429 beyond)."
    )
    tenant_submit_burst: int = Field(20, ge=1, description="Submissions a tenant may burst.")
    tenant_budget_usd: float = Field(
        0.0,
        ge=0,
        description="What a tenant may spend on paid pools (aws-*, emu-*) unless an admin sets it.",
    )
    aws_prices: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="pool -> {per_task, per_shot} in USD, over defaults."
    )
    aws_program_set_limits: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description=(
            "pool -> {max_executables, max_total_shots, min_total_shots}: the program-set "
            "limits of the device behind an aws-* pool (its braket.ir.openqasm.program_set "
            "action), so that cost estimates count the tasks program sets make. A pool without "
            "them is estimated at one task per executable, an upper bound."
        ),
    )

    @model_validator(mode="after")
    def _grpc_tls_pair(self) -> Settings:
        if bool(self.grpc_tls_cert_file) != bool(self.grpc_tls_key_file):
            raise ValueError(
                "QORCH_GRPC_TLS_CERT_FILE and QORCH_GRPC_TLS_KEY_FILE go together: set both "
                "for a TLS gRPC server, or neither"
            )
        return self

    def client_grpc_tls(self) -> tuple[bool, bytes | None]:
        """Whether clients use TLS for gRPC, and the root certificates they trust (None: the
        system's)."""
        if self.grpc_tls_ca_file:
            with open(self.grpc_tls_ca_file, "rb") as ca:
                return True, ca.read()
        return self.grpc_tls, None

    @field_validator("emulator_queue_s")
    @classmethod
    def _queue_bounds(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for pool, (shortest, longest) in value.items():
            if not 0 <= shortest <= longest:
                raise ValueError(
                    f"QORCH_EMULATOR_QUEUE_S: {pool} needs 0 <= shortest <= longest seconds"
                )
        return value

    @field_validator("aws_reservations")
    @classmethod
    def _reservation_arns(cls, value: dict[str, str]) -> dict[str, str]:
        for pool, arn in value.items():
            if not pool.startswith("aws-"):
                raise ValueError(f"QORCH_AWS_RESERVATIONS: {pool} is not an aws-* pool")
            if not RESERVATION_ARN.fullmatch(arn):
                raise ValueError(
                    f"QORCH_AWS_RESERVATIONS: {pool}'s {arn[:200]!r} is not a Braket "
                    "reservation ARN (arn:aws:braket:<region>:<account>:reservation/<id>)"
                )
        return value

    @field_validator("admin_key")
    @classmethod
    def _safe_admin_key(cls, value: SecretStr) -> SecretStr:
        """Refuse a short, placeholder or low-entropy admin key; the message never shows it."""
        secret = value.get_secret_value()
        if not secret:
            return value
        if len(secret) < MIN_KEY_CHARS:
            weakness: str | None = f"is shorter than {MIN_KEY_CHARS} characters"
        else:
            weakness = key_weakness(secret)
        if weakness:
            raise ValueError(
                f"QORCH_ADMIN_KEY {weakness}; make a random key with `{MAKE_A_KEY}` "
                "(or leave it empty for `qorch up` to make one)"
            )
        return value

    # Planning and dispatch
    fragment_bindings: int = Field(
        64,
        ge=1,
        description="Bindings carried by one fragment (64 measured best: docs/performance.md).",
    )
    fragment_timeout_s: float = Field(60.0, gt=0, description="Re-dispatch after this long.")
    max_attempts: int = Field(3, ge=1, description="Dispatches of a fragment before it fails.")
    relay_batch: int = Field(500, ge=1, description="Outbox rows the relay publishes per pass.")
    poll_interval_s: float = Field(0.2, gt=0, description="Idle wait of the orchestrator loops.")

    # Backpressure and recovery (docs/guarantees.md)
    max_inflight_per_job: int = Field(
        256, ge=1, description="Planned but unanswered fragments of one job, at most."
    )
    max_inflight_per_pool: int = Field(
        2048, ge=1, description="Planned but unanswered fragments of one pool, at most."
    )
    topic_check_interval_s: float = Field(
        5.0,
        gt=0,
        description="How often the orchestrator checks that its topics exist; a missing one "
        "means the broker lost its state: topics are created again and every unanswered "
        "fragment is sent again.",
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus /metrics port of orchestrator/agent; 0 = off."
    )

    # Training
    predict_timeout_s: float = Field(
        60.0, gt=0, description="How long `POST /v1/jobs/{id}/predict` waits for the nodes."
    )
    max_training_samples: int = Field(100_000, ge=1, description="Samples per training job.")

    # Validation bounds
    max_programs: int = Field(1000, ge=1)
    max_bindings: int = Field(100_000, ge=1, description="Bindings per job, all programs.")
    max_shots: int = Field(100_000, ge=1)
    max_program_chars: int = Field(100_000, ge=1)
    max_observables: int = Field(256, ge=1)
    default_max_qubits: int = Field(20, ge=1)
    pool_max_qubits: dict[str, int] = Field(default_factory=dict)

    # Circuit cutting (docs/cutting.md)
    max_cut_overhead: float = Field(
        1e4, ge=1, description="Largest sampling overhead (gamma^2) of a cut plan; beyond: 422."
    )
    max_cut_subexperiments: int = Field(
        2000, ge=1, description="Most subexperiment programs one cut program may need."
    )
    cut_search_timeout_s: float = Field(
        2.0,
        gt=0,
        description="About how long the search for where to cut one program may take (it runs "
        "inside the submit request). Turned into a work budget at submission and stored with "
        "the job, so every orchestrator recomputes the same plan; past it the search narrows "
        "to a greedy one and the plan says `search_truncated`.",
    )

    # Node agent
    node_pool: str = "local-sv"
    node_id: str = Field("", description="Node id; empty = hostname-pid.")
    node_credential: SecretStr = Field(
        SecretStr(""),
        description="The agent's node credential, as `qorch nodes enroll --pool POOL` printed "
        "it (`nc_<id>.<key>`). It signs the agent's results and heartbeats; an agent does not "
        "start without one, and the orchestrator counts nothing it did not sign.",
    )
    heartbeat_interval_s: float = Field(2.0, gt=0)
    node_offline_after_s: float = Field(10.0, gt=0, description="Heartbeat age of an offline node.")
    simulator_threads: int = Field(
        1,
        ge=0,
        description="Threads of Braket's simulator kernels (numba) in a local agent; 0 = numba's "
        "default (every core). One agent runs one simulation at a time and a pool scales by "
        "agents, so 1 avoids oversubscribing cores; results do not depend on it.",
    )
    node_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="How much an agent process lowers its own CPU priority (Unix nice). On a "
        "machine it shares with the API, orchestrator, Postgres and broker, simulations then "
        "yield the CPU to them, so events and dispatch stay prompt; alone on a machine it "
        "changes nothing. 0 keeps the priority it was started with.",
    )
    node_idle_priority: bool = Field(
        True,
        description="Run an agent (its simulations and its Kafka clients) under Linux's "
        "SCHED_IDLE scheduling policy: it uses only CPU that nothing else wants, and a "
        "control-plane thread that wakes up takes the core at once, where under a nice value "
        "alone it waits for the simulation's time slice to end. Alone on a machine an agent "
        "loses nothing. Off: only QORCH_NODE_NICE applies. Ignored where the platform has no "
        "SCHED_IDLE.",
    )
    simulator_threading_layer: Literal["omp", "tbb", "workqueue", "default"] = Field(
        "omp",
        description="numba threading layer of Braket's kernels in a local agent. Braket selects "
        "`workqueue`, which hands every kernel launch to another thread (about 0.2 ms a gate on "
        "a small VM); `omp` runs a one-thread launch in place. Falls back to `workqueue` where "
        "the OpenMP runtime is missing; results do not depend on it.",
    )

    # AWS (aws-* pools)
    aws_devices: dict[str, str] = Field(default_factory=dict, description="pool -> device ARN")
    aws_s3_bucket: str = Field("", description="Bucket for Braket task results.")
    aws_s3_prefix: str = "qorchestra"
    aws_region: str = ""
    aws_poll_timeout_s: float = Field(3600.0, gt=0)
    aws_reservations: dict[str, str] = Field(
        default_factory=dict,
        description="pool -> Braket reservation ARN (`arn:aws:braket:<region>:<account>:"
        "reservation/<id>`): every quantum task an agent of the pool creates runs in that "
        "reservation (CreateQuantumTask `associations`, type RESERVATION_TIME_WINDOW_ARN).",
    )
    device_status_interval_s: float = Field(
        60.0,
        gt=0,
        description="Seconds between an aws-* agent's reads of its device's status, queue depth "
        "and execution windows (two GetDevice calls each), which its heartbeats then carry.",
    )

    # Emulated devices (docs/emulated-devices.md)
    device_profiles_dir: str = Field(
        "",
        description="A folder of more device profiles (`<profile>.json`, as `qorch devices "
        "snapshot` writes them), each serving pool `emu-<profile>` next to the shipped ones; "
        "one named as a shipped profile replaces it. The API and the agents must see the same "
        "files.",
    )
    emulator_queue_s: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="pool -> [shortest, longest] emulated queue delay of one task, in seconds, "
        'over the profiles\' own (`{"emu-garnet": [0, 0]}`: no delay).',
    )
    emulator_seed: int = Field(
        0,
        ge=0,
        description="Seed of the emulated queue delays an agent draws: the same seed gives the "
        "same delays, task by task.",
    )

    # Embedded stack
    data_dir: str = Field(".qorch", description="Where the embedded Postgres keeps its data.")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = Field(False, description="One JSON object per log line.")

    def __repr_args__(self) -> Any:
        """As pydantic's, with URL passwords masked (``database_url``); secrets are SecretStr
        and ``kafka_extra`` masks its own."""
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if isinstance(value, str) else value

    def client_api_url(self) -> str:
        """Base URL of the REST API for clients."""
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    def client_grpc_target(self) -> str:
        """host:port of the gRPC server for clients."""
        return self.grpc_target or f"{self.grpc_host}:{self.grpc_port}"

    def max_qubits(self, pool: str) -> int:
        """Qubit limit of ``pool``."""
        if pool in self.pool_max_qubits:
            return self.pool_max_qubits[pool]
        if pool in DEFAULT_POOL_MAX_QUBITS:
            return DEFAULT_POOL_MAX_QUBITS[pool]
        profile = self.emulated_profile(pool)
        if profile is not None:
            return min(profile.qubits, DENSITY_MATRIX_MAX_QUBITS)
        return self.default_max_qubits

    def declared_pools(self) -> set[str]:
        """The pools the platform knows without an agent having served them: built in
        (``local-sv``, ``local-dm``, the managed AWS simulators, an ``emu-*`` pool per device
        profile) or named in the settings (``QORCH_POOL_MAX_QUBITS``, ``QORCH_AWS_DEVICES``,
        the profiles in ``QORCH_DEVICE_PROFILES_DIR``)."""
        return {
            *DEFAULT_POOL_MAX_QUBITS,
            *self.pool_max_qubits,
            *DEFAULT_AWS_DEVICES,
            *self.aws_devices,
            *self.emulated_profiles(),
        }

    def emulated_profiles(self) -> dict[str, DeviceProfile]:
        """The device profile of every ``emu-*`` pool, by pool: shipped, then those in
        ``QORCH_DEVICE_PROFILES_DIR``."""
        return emulated_profiles(self.device_profiles_dir)

    def emulated_profile(self, pool: str) -> DeviceProfile | None:
        """The device profile behind an ``emu-*`` pool, or None when there is none."""
        if not pool.startswith(EMULATED_PREFIX):
            return None
        return self.emulated_profiles().get(pool)

    def emulator_queue(self, profile: DeviceProfile) -> tuple[float, float]:
        """Shortest and longest emulated queue delay of one task on ``profile``'s pool."""
        return self.emulator_queue_s.get(profile.pool, profile.queue_s)

    def aws_device_arn(self, pool: str) -> str | None:
        """Device ARN that serves an ``aws-*`` pool, or None when the pool is unknown."""
        return {**DEFAULT_AWS_DEVICES, **self.aws_devices}.get(pool)

    def aws_reservation(self, pool: str) -> str | None:
        """The Braket reservation ARN the pool's tasks run in (``QORCH_AWS_RESERVATIONS``)."""
        return self.aws_reservations.get(pool) or None

    def aws_price(self, pool: str) -> dict[str, float]:
        """USD per task and per shot on ``pool`` (``per_task``, ``per_shot``)."""
        emulated = {name: dict(p.price) for name, p in self.emulated_profiles().items()}
        table = {**DEFAULT_AWS_PRICES, **emulated, **self.aws_prices}
        price = table.get(pool, table["default"])
        return {"per_task": price.get("per_task", 0.0), "per_shot": price.get("per_shot", 0.0)}

    def program_set_limits(self, pool: str) -> ProgramSetLimits | None:
        """The program-set limits of ``pool``'s device as configured, or None."""
        limits = self.aws_program_set_limits.get(pool)
        if not limits:
            return None
        return ProgramSetLimits(
            max_executables=int(limits.get("max_executables", 0)),
            max_total_shots=int(limits.get("max_total_shots", 0)),
            min_total_shots=int(limits.get("min_total_shots", 0)),
        )

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``topic("results") == "qorch.results"``."""
        return f"{self.topic_prefix}{name}"

    def fragments_topic(self, pool: str) -> str:
        """Topic that carries work for ``pool``."""
        return self.topic(f"fragments.{pool}")

    def cancel_topic(self, pool: str) -> str:
        """Topic that carries the orchestrator's cancellations of ``pool``'s quantum tasks
        (``fragments.<pool>.cancel``; only pools that ``creates_quantum_tasks``)."""
        return self.topic(f"fragments.{pool}.cancel")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
