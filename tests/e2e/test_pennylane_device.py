"""The PennyLane device ``qorchestra.qubit`` on a real stack (Postgres, broker, API,
orchestrator, two local-sv agents and one local-dm agent):

- PennyLane's own device test suite (``pennylane/devices/tests``, what ``pl-device-test`` runs)
  passes in analytic mode and with shots, every skip one the suite makes itself for a capability
  the device lacks (the reasons are listed in docs/pennylane.md and checked here);
- the moons classifier of examples/pennylane_moons.py takes the same gradients, step by step, as
  on ``default.qubit``;
- a circuit with noise channels runs on the density-matrix pool.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pennylane as qml
import pytest

from examples.pennylane_moons import QUBITS, train
from qorch.client import QorchClient
from qorch.stack import Stack
from tests.support.stack import running_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:You are running a noise-free circuit"),
]

#: PennyLane's device test suite, as installed.
SUITE = Path(qml.__file__).parent / "devices" / "tests"

#: Why the suite may skip a test (or mark it xfail) on this device; docs/pennylane.md lists them.
#: Everything else must pass.
ALLOWED_SKIPS: dict[str, str] = {
    "amplitudes": r"is not supported without shots on qorchestra\.qubit \(needs amplitudes",
    "custom transforms": r"Device does not support custom measurement transforms",
    "continuous variables": r"Operator (Beamsplitter|Displacement|Squeezing)\(.*not supported",
    "cv xfail": r"most devices do not support CV",
    "density matrix input": r"operation not supported on the device",
    "device derivatives": r"device does not support diff_method|test only works with backprop",
    "parameter-shift only once": r"test only works with parameter-shift",
    "analytic-only tests": r"Device is in analytic mode|analytic[- ]mode|non-analytical mode"
    r"|Shots must be specified|If shots(!=|=)None|Some plugins don't update state",
    "old device interface": r"old (device )?interface|old interface specific",
    "qutrits": r"only works on qutrit devices",
    "sparse hamiltonian with shots": r"SparseHamiltonian only supported in analytic mode",
    "no jax or torch": r"could not import '(jax|torch)'",
}

#: Both modes of the suite, run at once, may take this long (about 6 min on 2 shared cores).
SUITE_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def stack(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The default pools (two local-sv agents, one local-dm). PennyLane's suite submits a job
    or two per test, hundreds in a few minutes: the tenant's rate is raised for it."""
    with running_stack(
        database_url,
        kafka_bootstrap,
        tmp_path_factory,
        tenant_submit_rate_per_s=1000.0,
        tenant_submit_burst=1000,
    ) as stack:
        yield stack


@pytest.fixture
def device_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """QORCH_API_URL and QORCH_API_KEY of the stack, in this process and for children."""
    monkeypatch.setenv("QORCH_API_URL", stack.api_url)
    monkeypatch.setenv("QORCH_API_KEY", stack.admin_key)
    return {**os.environ}


def test_moons_example_takes_default_qubits_gradients(device_env: dict[str, str]) -> None:
    steps = 3
    remote = train(qml.device("qorchestra.qubit", wires=QUBITS), steps=steps, batch=8)
    local = train(qml.device("default.qubit", wires=QUBITS), steps=steps, batch=8)
    assert len(remote.gradients) == steps
    for got, expected in zip(remote.gradients, local.gradients, strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8)
    np.testing.assert_allclose(remote.losses, local.losses, rtol=0, atol=1e-8)


def test_noise_channels_run_on_the_density_matrix_pool(
    device_env: dict[str, str], client: QorchClient
) -> None:
    def circuit(p: float) -> tuple[object, object]:
        qml.Hadamard(0)
        qml.CNOT([0, 1])
        qml.DepolarizingChannel(p, wires=0)
        qml.GeneralizedAmplitudeDamping(0.2, 0.3, wires=1)
        return qml.expval(qml.X(0) @ qml.X(1)), qml.probs(wires=[0, 1])

    dev = qml.device("qorchestra.qubit", wires=2, pool="local-sv", timeout=120)
    with qml.Tracker(dev) as tracker:
        got = qml.QNode(circuit, dev)(0.1)
    expected = qml.QNode(circuit, qml.device("default.mixed", wires=2))(0.1)
    for value, reference in zip(got, expected, strict=True):
        np.testing.assert_allclose(value, reference, atol=1e-9)
    assert tracker.totals["jobs"] == 1
    assert client.jobs(limit=1)["data"][0]["pool"] == "local-dm"


@dataclass
class SuiteRun:
    """PennyLane's device test suite running in a child process, in one mode."""

    process: subprocess.Popen[bytes]
    output: Path
    report: Path
    started: float


#: The suite's modes: analytic, and with shots.
MODES: dict[str, int | None] = {"analytic": None, "shots": 10000}


@pytest.fixture(scope="module")
def suite_runs(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, SuiteRun]]:
    """Both modes of the suite, started at once against the stack (their jobs wait on the
    platform more than on the CPU: together they take little longer than one). Stopped at the
    end if still running."""
    env = {**os.environ, "QORCH_API_URL": stack.api_url, "QORCH_API_KEY": stack.admin_key}
    runs = {}
    for mode, shots in MODES.items():
        folder = tmp_path_factory.mktemp(f"pennylane-suite-{mode}")
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(SUITE),
            "--device=qorchestra.qubit",
            "--skip-ops",  # a DeviceError "... not supported" from the device skips the test
            "--no-flaky-report",
            "-p",
            "no:cacheprovider",
            "-q",
            f"--junitxml={folder / 'report.xml'}",
            "-W",
            "ignore::DeprecationWarning",  # shots on a device: the suite's own way
            *([f"--shots={shots}"] if shots is not None else []),
        ]
        with open(folder / "output.txt", "wb") as output:
            process = subprocess.Popen(
                command, cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        runs[mode] = SuiteRun(
            process, folder / "output.txt", folder / "report.xml", time.monotonic()
        )
    yield runs
    for run in runs.values():
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


@pytest.mark.parametrize("mode", list(MODES))
def test_pennylanes_device_suite_passes(suite_runs: dict[str, SuiteRun], mode: str) -> None:
    run = suite_runs[mode]
    left = SUITE_TIMEOUT_S - (time.monotonic() - run.started)
    try:
        code = run.process.wait(timeout=max(left, 1.0))
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"the suite ({mode}) ran past {SUITE_TIMEOUT_S}s:\n{run.output.read_text()[-4000:]}"
        )
    took = time.monotonic() - run.started
    output = run.output.read_text()
    assert code == 0, output[-8000:]
    skipped = _skip_reasons(run.report)
    unexplained = {
        test: reason
        for test, reason in skipped.items()
        if not any(re.search(pattern, reason) for pattern in ALLOWED_SKIPS.values())
    }
    assert not unexplained, unexplained
    summary = output.strip().splitlines()[-1]
    print(f"PennyLane device suite, {mode}: {summary} ({took:.0f}s since the start)")
    assert " passed" in summary


def _skip_reasons(report: Path) -> dict[str, str]:
    """Each skipped (or xfailed) test of a JUnit report, with the reason."""
    reasons = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        for element in case:
            if element.tag == "skipped":
                name = f"{case.get('classname')}::{case.get('name')}"
                reasons[name] = f"{element.get('message', '')} {element.text or ''}"
    return reasons
