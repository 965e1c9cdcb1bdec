"""The density-matrix pool end to end: a stack started like ``qorch up`` (its default pools)
serves ``local-dm``, and noisy circuits submitted there equal ``LocalSimulator("braket_dm")``
run directly. A program Braket's kernels cannot type fails its job after one attempt.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from braket.devices import LocalSimulator
from braket.ir.openqasm import Program

from qorch.client import QorchClient
from qorch.stack import DEFAULT_POOLS, Stack, StackOptions, parse_pools
from tests.support.stack import running_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:You are running a noise-free circuit"),
]

#: Braket's density-matrix simulator, run directly (not through a node's executor).
DM = LocalSimulator("braket_dm")

#: Exact (shots 0) results must agree this closely.
TOLERANCE = 1e-9

SINGLE_NOISE = (
    "depolarizing({p})",
    "bit_flip({p})",
    "phase_flip({p})",
    "amplitude_damping({p})",
    "phase_damping({p})",
    "pauli_channel({p}, {q}, {r})",
    "generalized_amplitude_damping({q}, {p})",
)
PAIR_NOISE = ("two_qubit_depolarizing({p})", "two_qubit_dephasing({p})")


@pytest.fixture(scope="module")
def stack(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The default pools (no ``pools=``): what ``qorch up`` starts. Fragments of two bindings,
    so each job spreads over several fragments."""
    with running_stack(
        database_url, kafka_bootstrap, tmp_path_factory, fragment_bindings=2
    ) as stack:
        yield stack


def random_program(rng: random.Random, qubits: int, inputs: int) -> str:
    """Gates (angles from inputs and constants) with noise pragmas after many of them."""
    lines = ["OPENQASM 3.0;", *(f"input float t{i};" for i in range(inputs)), f"qubit[{qubits}] q;"]
    for _ in range(rng.randint(8, 14)):
        a, b = rng.sample(range(qubits), 2)
        angle = f"t{rng.randrange(inputs)}" if rng.random() < 0.7 else f"{rng.uniform(-3, 3):.6f}"
        lines.append(
            rng.choice(
                [
                    f"h q[{a}];",
                    f"x q[{a}];",
                    f"rx({angle}) q[{a}];",
                    f"ry({angle}) q[{a}];",
                    f"rz({angle}) q[{a}];",
                    f"cnot q[{a}], q[{b}];",
                    f"cz q[{a}], q[{b}];",
                    f"swap q[{a}], q[{b}];",
                    f"xx({angle}) q[{a}], q[{b}];",
                    f"cphaseshift({angle}) q[{a}], q[{b}];",
                ]
            )
        )
        roll = rng.random()
        p, q, r = (round(rng.uniform(0.01, 0.15), 4) for _ in range(3))
        if roll < 0.45:
            noise = rng.choice(SINGLE_NOISE).format(p=p, q=q, r=r)
            lines.append(f"#pragma braket noise {noise} q[{a}]")
        elif roll < 0.6:
            lines.append(
                f"#pragma braket noise {rng.choice(PAIR_NOISE).format(p=p)} q[{a}], q[{b}]"
            )
    # Noise on every qubit at the end: every circuit is a mixed state.
    lines += [f"#pragma braket noise depolarizing(0.1) q[{i}]" for i in range(qubits)]
    return "\n".join(lines) + "\n"


def random_bindings(rng: random.Random, inputs: int, count: int) -> list[dict[str, float]]:
    return [{f"t{i}": rng.uniform(-3.2, 3.2) for i in range(inputs)} for _ in range(count)]


def direct_probabilities(source: str, binding: dict[str, float], qubits: int) -> dict[str, float]:
    targets = ", ".join(f"q[{i}]" for i in range(qubits))
    program = Program(
        source=f"{source}#pragma braket result probability {targets}\n", inputs=binding
    )
    values = DM.run(program, shots=0).result().values[0]
    return {format(i, f"0{qubits}b"): float(v) for i, v in enumerate(values)}


def direct_expectations(
    source: str, binding: dict[str, float], observables: list[str]
) -> list[float]:
    pragmas = "".join(
        "#pragma braket result expectation "
        + " @ ".join(f"{p.lower()}(q[{i}])" for i, p in enumerate(obs) if p != "I")
        + "\n"
        for obs in observables
    )
    program = Program(source=source + pragmas, inputs=binding)
    return [float(v) for v in DM.run(program, shots=0).result().values]


def run_job(client: QorchClient, spec: dict[str, Any]) -> dict[str, Any]:
    """Submit, follow to the end; the finished job."""
    job = client.submit({"pool": "local-dm", "shots": 0, **spec})
    events = list(client.watch(job["id"]))
    assert events[-1].type in ("succeeded", "failed"), events[-1]
    return client.job(job["id"])


def test_the_default_stack_serves_every_local_pool(stack: Stack, client: QorchClient) -> None:
    assert StackOptions().pools == ["local-sv", "local-sv", "local-dm"]
    agents = {
        s.name: s.args[s.args.index("--pool") + 1] for s in stack.services if s.args[0] == "node"
    }
    assert agents == {"node-1": "local-sv", "node-2": "local-sv", "node-3": "local-dm"}
    nodes = {n["id"]: n for n in client.nodes()["data"]}
    assert (nodes["node-3"]["pool"], nodes["node-3"]["state"]) == ("local-dm", "RUNNING")


def test_qorch_up_pool_options() -> None:
    """``qorch up``/``qorch demo``: ``--pool POOL=COUNT`` (repeatable); the older ``--nodes N``."""
    assert parse_pools([]) == ["local-sv", "local-sv", "local-dm"] == StackOptions().pools
    assert dict(DEFAULT_POOLS) == {"local-sv": 2, "local-dm": 1}
    assert parse_pools(["local-sv=1", "local-dm=2"]) == ["local-sv", "local-dm", "local-dm"]
    assert parse_pools([], nodes=3) == ["local-sv"] * 3 + ["local-dm"]
    assert parse_pools(["local-sv"], nodes=3) == ["local-sv"] * 3  # as `--nodes 3 --pool local-sv`
    assert parse_pools(["local-dm"]) == ["local-dm"] * 2  # --nodes defaulted to 2
    assert parse_pools(["aws-sv1=1", "local-dm=0"]) == ["aws-sv1"]
    for specs, nodes in (
        (["local-sv=x"], None),
        (["local-sv=-1"], None),
        (["nowhere=1"], None),
        (["local-sv=1", "local-sv=2"], None),
        (["local-sv=1"], 2),  # --nodes would count nothing
        ([], -1),
    ):
        with pytest.raises(ValueError):
            parse_pools(specs, nodes)


def test_noisy_random_circuits_equal_the_density_matrix_simulator(client: QorchClient) -> None:
    """Three random noisy programs on three qubits (one width: Braket's numba kernels are
    compiled per array rank, on the agent's first fragments), two bindings each."""
    rng = random.Random(15)
    qubits = 3
    programs = []
    for _ in range(3):
        inputs = rng.randint(1, 3)
        programs.append((random_program(rng, qubits, inputs), random_bindings(rng, inputs, 2)))
    spec = [{"source": source, "bindings": bindings} for source, bindings in programs]
    observables = ["ZII", "IXI", "IIY", "ZZI", "XIZ", "YYX", "ZZZ", "III"]

    probabilities = run_job(client, {"result": {"type": "probabilities"}, "programs": spec})
    expectations = run_job(
        client,
        {"result": {"type": "expectation", "observables": observables}, "programs": spec},
    )

    assert probabilities["status"] == "SUCCEEDED", probabilities["error"]
    assert expectations["status"] == "SUCCEEDED", expectations["error"]
    got_probabilities = client.result(probabilities["id"])["result"]["programs"]
    got_expectations = client.result(expectations["id"])["result"]["programs"]
    for (source, bindings), probs, exps in zip(
        programs, got_probabilities, got_expectations, strict=True
    ):
        for binding, values in zip(bindings, probs["values"], strict=True):
            expected = direct_probabilities(source, binding, qubits)
            assert set(values) <= set(expected)
            for bits, probability in expected.items():
                assert values.get(bits, 0.0) == pytest.approx(probability, abs=TOLERANCE), bits
            assert sum(0 < p < 1 for p in values.values()) > 1  # noise: a mixed state
        for binding, values in zip(bindings, exps["values"], strict=True):
            exact = direct_expectations(source, binding, observables[:-1]) + [1.0]
            assert values == pytest.approx(exact, abs=TOLERANCE)


def test_a_program_braket_cannot_type_fails_after_one_attempt(client: QorchClient) -> None:
    """Issue 15: from 6 qubits on, the density-matrix simulator runs single-qubit gates with
    numba kernels, and a control on the last qubit makes one raise TypingError. The failure is
    not retryable: the fragment runs once, and the job names the binding and Braket's error."""
    source = (
        "OPENQASM 3.0;\ninput float t;\nqubit[6] q;\nh q;\nrx(t) q[1];\n"
        "ctrl @ h q[5], q[0];\n#pragma braket noise depolarizing(0.1) q[0]\n"
    )
    job = run_job(
        client,
        {
            "result": {"type": "probabilities"},
            "programs": [{"source": source, "bindings": [{"t": 0.1}, {"t": 0.2}]}],
        },
    )
    assert job["status"] == "FAILED"
    assert "after 1 attempt(s)" in job["error"], job["error"]
    assert "TypingError: binding 0: " in job["error"], job["error"]
    assert job["progress"]["redispatches"] == 0
