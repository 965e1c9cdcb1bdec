"""Training steps side by side: qorchestra on 2 agents against PennyLane in one process.

The demo's classifier (4 qubits, angle map re-uploaded before each of 3 layers, 24 weights,
``<Z_0>`` readout, BCE, Adam, batch 16, moons): the same data, split, scaling, batch order and
initial weights (all from qorchestra's own setup) in every row. Prints, in one run:

- qorchestra with ``gradient: adjoint`` and with ``parameter_shift``, on a fresh embedded stack
  with 2 local-sv agents and ``QORCH_FRAGMENT_BINDINGS=64``;
- qorchestra at a baseline commit (``--baseline``, default ``HEAD``: ``git archive`` of it, run
  from a temporary directory in a subprocess) with ``parameter_shift``: "today", unless
  ``--no-today``;
- PennyLane 0.45 in this process: ``lightning.qubit`` with ``adjoint`` and with
  ``parameter-shift``, ``default.qubit`` with ``backprop`` (the batch as one broadcast circuit,
  which is PennyLane's fastest form here; ``--pennylane-loop`` also times a loop over samples);
- the targets (adjoint <= lightning adjoint; parameter shift >= 2x today and >= 2x lightning
  parameter shift) and whether this run met them;
- where a qorchestra step's time goes, per stage, on the step's critical path (the fragment
  whose result came last), median over the steps: planning (the step event of the step before,
  recorded in the transaction that steps the optimizer and plans this step, to the fragment
  message being built), outbox (to the relay producing it to Kafka), Kafka to the agent (and any
  wait behind the agent's other fragments), agent (decode, encode, simulate), Kafka back (to a
  tap on the results topic in this process), and aggregation (the orchestrator verifying and
  counting the result, assembling the gradient, stepping the optimizer and writing the
  checkpoint, in one transaction, to the step event).

A qorchestra step's time is the interval between consecutive ``step`` events (the first step of
each epoch, which also waits for the previous epoch's evaluation, and the job's first step are
left out); PennyLane's is one loss-and-gradient evaluation plus the same Adam update. Figures
only, nothing asserts a time; the machine is shared, so run it twice before believing a ratio::

    .venv/bin/python bench/training.py [--epochs 2] [--pennylane-steps 6] [--baseline REV]

PennyLane and pennylane-lightning come with the ``bench`` extra (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import running_stack, table

from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import signed_pb2
from qorchestra.config import Settings
from qorchestra.examples import example
from qorchestra.kafka import Consumer

STAGES = (
    "planning",
    "outbox",
    "Kafka to agent",
    "agent",
    "Kafka back",
    "aggregation, optimizer, checkpoint",
)


def demo_spec(gradient: str, epochs: int) -> dict[str, Any]:
    """The demo's classifier with ``gradient`` for ``epochs`` epochs."""
    spec = copy.deepcopy(example("moons-classifier"))
    spec["name"] = f"bench: moons classifier, {gradient}"
    spec["training"]["gradient"] = gradient
    spec["training"]["epochs"] = epochs
    return spec


# ---------------------------------------------------------------- qorchestra


@dataclass
class Seen:
    """What the taps saw of one fragment (seconds since the epoch)."""

    job_id: str = ""
    step: int = -1
    built: float = math.nan  # the message's dispatched_at, stamped while planning
    produced: float = math.nan  # the relay's produce time (Kafka create time)
    started: float = math.nan  # the agent's finished_at - duration_s
    finished: float = math.nan
    tapped: float = math.nan  # the result's receipt by the tap


@dataclass
class Taps:
    """Follows the pool's fragments topic and the results topic in a thread."""

    settings: Settings
    seen: dict[str, Seen] = field(default_factory=lambda: defaultdict(Seen))
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Taps:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        topics = [self.settings.fragments_topic("local-sv"), self.settings.topic("results")]
        consumer = Consumer(self.settings, topics, None)
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                received = time.time()
                created = msg.timestamp()[1] / 1e3
                if msg.topic() == topics[0]:
                    fragment = pb.Fragment.FromString(msg.value() or b"")
                    seen = self.seen[fragment.fragment_id]
                    seen.job_id = fragment.job_id
                    seen.step = fragment.program_index
                    seen.built = fragment.dispatched_at.ToMicroseconds() / 1e6
                    seen.produced = created
                    continue
                envelope = signed_pb2.Signed.FromString(msg.value() or b"")
                if envelope.type not in ("", "qorch.v1.FragmentResult"):
                    continue
                result = pb.FragmentResult.FromString(envelope.body)
                seen = self.seen[result.fragment_id]
                seen.job_id = result.job_id
                seen.finished = result.finished_at.ToMicroseconds() / 1e6
                seen.started = seen.finished - result.duration_s
                seen.tapped = received
        finally:
            consumer.close()


def request_step(request: int, batches: int) -> int | None:
    """The optimizer step a request (fragment ``program_index``) computes; None for the
    evaluation after each epoch."""
    epoch, position = divmod(request, batches + 1)
    return None if position == batches else epoch * batches + position + 1


def qorchestra_run(
    client: Any, settings: Settings, gradient: str, epochs: int, batches: int
) -> dict[str, Any]:
    """Train the demo classifier once; step times (ms), stage medians (ms), accuracy."""
    with Taps(settings) as taps:
        job = client.submit(demo_spec(gradient, epochs))
        events = list(client.watch(job["id"]))
        mine = [s for s in list(taps.seen.values()) if s.job_id == job["id"]]
        deadline = time.monotonic() + 10
        while any(math.isnan(s.tapped) for s in mine) and time.monotonic() < deadline:
            time.sleep(0.05)  # the tap reads the last results after the final event
    status = events[-1].status
    step_at = {
        int(e.metrics["step"]): e.at.ToMicroseconds() / 1e6 for e in events if e.type == "step"
    }
    accuracy = [e.metrics["val_accuracy"] for e in events if e.type == "epoch"]
    by_step: dict[int, list[Seen]] = defaultdict(list)
    for seen in mine:
        step = request_step(seen.step, batches)
        if step is not None:
            by_step[step].append(seen)
    periods, stages = [], defaultdict(list)
    for step in sorted(step_at):
        if step == 1 or (step - 1) % batches == 0 or step - 1 not in step_at:
            continue  # the job's start, or after an evaluation
        periods.append((step_at[step] - step_at[step - 1]) * 1e3)
        last = max(by_step[step], key=lambda s: s.finished, default=None)
        if last is None or math.isnan(last.tapped):
            continue
        marks = [
            step_at[step - 1],
            last.built,
            last.produced,
            last.started,
            last.finished,
            last.tapped,
            step_at[step],
        ]
        for name, (a, b) in zip(STAGES, itertools.pairwise(marks), strict=True):
            stages[name].append((b - a) * 1e3)
    fragments = statistics.median(len(v) for v in by_step.values()) if by_step else 0
    return {
        "gradient": gradient,
        "status": jobs_status(status),
        "step_ms": periods,
        "stages_ms": {k: statistics.median(v) for k, v in stages.items()},
        "fragments_per_step": fragments,
        "val_accuracy": accuracy[-1] if accuracy else math.nan,
    }


def jobs_status(status: Any) -> str:
    """The job status's name."""
    from proto.qorch.v1 import jobs_pb2

    return jobs_pb2.JobStatus.Name(status)


def qorchestra_runs(gradients: list[str], epochs: int) -> list[dict[str, Any]]:
    """Each gradient's run on one stack with 2 agents (after a one-step warm-up job)."""
    from qorchestra.training.spec import TrainJob
    from qorchestra.training.trainer import build_setup

    setup = build_setup(TrainJob.model_validate(demo_spec("parameter_shift", 1)), 20)
    batches = math.ceil(len(setup.train) / 16)
    out = []
    with running_stack(agents=2, fragment_bindings=64) as (stack, client):
        warm = demo_spec(gradients[0], 1)
        warm["data"]["samples"] = 24  # one short epoch: the agents compile the program
        list(client.watch(client.submit(warm)["id"]))
        for gradient in gradients:
            out.append(qorchestra_run(client, stack.settings, gradient, epochs, batches))
    return out


def today_run(epochs: int, baseline: str) -> dict[str, Any] | None:
    """``parameter_shift`` on the code of commit ``baseline`` (``git archive``), in a
    subprocess."""
    root = Path(__file__).resolve().parent.parent
    work = Path(tempfile.mkdtemp(prefix="qorch-today-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", baseline], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
        shutil.copy(__file__, work / "bench" / "training.py")
        out = work / "today.json"
        env = {**os.environ, "PYTHONPATH": str(work)}
        command = [sys.executable, str(work / "bench" / "training.py"), "--only-qorchestra"]
        command += ["--gradients", "parameter_shift", "--epochs", str(epochs), "--json", str(out)]
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"today's run failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            return None
        runs: list[dict[str, Any]] = json.loads(out.read_text())
        return runs[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- PennyLane


def pennylane_steps(device: str, diff_method: str, steps: int, loop: bool) -> dict[str, Any]:
    """ms per optimizer step of the demo classifier in PennyLane, and the first step's loss."""
    import numpy as onp
    import pennylane as qml
    from pennylane import numpy as pnp

    from qorchestra.training import optimizers
    from qorchestra.training.spec import TrainJob
    from qorchestra.training.trainer import build_setup, start

    job = TrainJob.model_validate(demo_spec("adjoint", 1))
    setup = build_setup(job, 20)
    state, _ = start(job, setup)
    assert setup.data is not None and setup.scaling is not None
    qubits, layers, features = 4, 3, setup.data.features.shape[1]
    dev = qml.device(device, wires=qubits)

    @qml.qnode(dev, diff_method=diff_method)
    def circuit(x: Any, w: Any) -> Any:
        k = 0
        for _ in range(layers):  # the angle map before every layer (re-uploading)
            for q in range(qubits):
                qml.RY(x[..., q % features], wires=q)
            for q in range(qubits):
                qml.RY(w[k], wires=q)
                qml.RZ(w[k + 1], wires=q)
                k += 2
            for q in range(qubits):
                qml.CNOT(wires=[q, (q + 1) % qubits])
        return qml.expval(qml.PauliZ(0))

    def loss_of(x: Any, y: Any) -> Callable[[Any], Any]:
        def loss(w: Any) -> Any:
            z = pnp.stack([circuit(row, w) for row in x]) if loop else circuit(x, w)
            p = pnp.clip((1 - z) / 2, 1e-12, 1 - 1e-12)
            return -pnp.mean(y * pnp.log(p) + (1 - y) * pnp.log(1 - p))

        return loss

    weights = onp.asarray(state["weights"], dtype=float)
    optimizer: dict[str, Any] = {}
    times, first_loss = [], math.nan
    order = state["order"]
    for step in range(steps):
        batch = order[(step % 8) * 16 : (step % 8 + 1) * 16]
        x = setup.scaling.apply(setup.data.features[batch])
        y = setup.data.labels[batch].astype(float)
        started = time.perf_counter()
        loss = loss_of(x, y)
        w = pnp.array(weights, requires_grad=True)
        gradient = qml.grad(loss)(w)
        weights, optimizer = optimizers.adam(
            weights, onp.asarray(gradient), optimizer, 0.2, 0.9, 0.999, 1e-8
        )
        times.append((time.perf_counter() - started) * 1e3)
        if step == 0:
            first_loss = float(loss(pnp.array(onp.asarray(state["weights"]))))
    return {"step_ms": times[1:] or times, "first_loss": first_loss}


# ---------------------------------------------------------------- report


def median(values: list[float]) -> float:
    """The median, NaN for none."""
    return statistics.median(values) if values else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="qorchestra epochs per gradient")
    parser.add_argument("--pennylane-steps", type=int, default=6)
    parser.add_argument("--pennylane-loop", action="store_true")
    parser.add_argument("--no-today", action="store_true")
    parser.add_argument("--baseline", default="HEAD", help="the commit 'today' runs")
    parser.add_argument("--only-qorchestra", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--gradients", nargs="+", default=["adjoint", "parameter_shift"])
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    runs = qorchestra_runs(args.gradients, args.epochs)
    if args.only_qorchestra:
        if args.json is not None:
            args.json.write_text(json.dumps(runs))
        return
    today = None if args.no_today else today_run(args.epochs, args.baseline)

    pennylane = {}
    for device, method in (
        ("lightning.qubit", "adjoint"),
        ("lightning.qubit", "parameter-shift"),
        ("default.qubit", "backprop"),
    ):
        steps = max(3, args.pennylane_steps // 2) if method == "parameter-shift" else 0
        forms = [False, True] if args.pennylane_loop else [False]
        for loop in forms:
            name = f"PennyLane {device}, {method}" + (", loop over samples" if loop else "")
            pennylane[name] = pennylane_steps(device, method, steps or args.pennylane_steps, loop)

    by = {r["gradient"]: r for r in runs}
    lightning_adjoint = median(pennylane["PennyLane lightning.qubit, adjoint"]["step_ms"])
    lightning_shift = median(pennylane["PennyLane lightning.qubit, parameter-shift"]["step_ms"])
    rows = []
    for r in runs:
        rows.append(
            [
                f"qorchestra, 2 agents, {r['gradient']}",
                f"{median(r['step_ms']):.0f}",
                f"{lightning_adjoint / median(r['step_ms']):.2f}x",
                f"{r['fragments_per_step']:.0f} fragments a step, {len(r['step_ms'])} steps, "
                f"val accuracy {r['val_accuracy']:.3f} ({r['status']})",
            ]
        )
    if today is not None:
        rows.append(
            [
                f"qorchestra today ({args.baseline}), 2 agents, parameter_shift",
                f"{median(today['step_ms']):.0f}",
                f"{lightning_adjoint / median(today['step_ms']):.2f}x",
                f"{today['fragments_per_step']:.0f} fragments a step, "
                f"val accuracy {today['val_accuracy']:.3f} ({today['status']})",
            ]
        )
    for name, found in pennylane.items():
        rows.append(
            [
                name,
                f"{median(found['step_ms']):.0f}",
                f"{lightning_adjoint / median(found['step_ms']):.2f}x",
                f"one process, first loss {found['first_loss']:.6f}",
            ]
        )
    print(
        table(
            "Training steps of the demo classifier (ratio: lightning.qubit adjoint's time / "
            "this row's; above 1 is faster)",
            ["how", "ms per step (median)", "ratio", "notes"],
            rows,
        )
    )
    print(
        table(
            "Where a qorchestra step's time goes (ms, median over steps, critical path)",
            ["stage", *(r["gradient"] for r in runs), *(["today"] if today else [])],
            [
                [
                    stage,
                    *(f"{r['stages_ms'].get(stage, math.nan):.1f}" for r in runs),
                    *([f"{today['stages_ms'].get(stage, math.nan):.1f}"] if today else []),
                ]
                for stage in STAGES
            ],
        )
    )
    targets = []
    if "adjoint" in by:
        value = median(by["adjoint"]["step_ms"])
        targets.append(
            [
                "adjoint <= lightning.qubit adjoint",
                f"{value:.0f} vs {lightning_adjoint:.0f} ms",
                "met" if value <= lightning_adjoint else "NOT met",
            ]
        )
    if "parameter_shift" in by:
        value = median(by["parameter_shift"]["step_ms"])
        if today is not None:
            ratio = median(today["step_ms"]) / value
            targets.append(
                ["parameter_shift >= 2x today", f"{ratio:.2f}x", "met" if ratio >= 2 else "NOT met"]
            )
        ratio = lightning_shift / value
        targets.append(
            [
                "parameter_shift >= 2x lightning.qubit parameter-shift",
                f"{ratio:.2f}x",
                "met" if ratio >= 2 else "NOT met",
            ]
        )
    print(table("Targets", ["target", "this run", "verdict"], targets))


if __name__ == "__main__":
    main()
