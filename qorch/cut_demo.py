"""The cutting part of ``qorch demo --cut``: a 12-qubit circuit on nodes of 6 qubits, its cut
plan, and its knitted values next to a direct simulation of the whole circuit.

Client side: the job goes through the API like any other; the reference is computed here, on
Braket's LocalSimulator, without the platform.
"""

from __future__ import annotations

from typing import Any

from braket.devices import LocalSimulator
from braket.ir.openqasm import Program
from rich.console import Console
from rich.table import Table

from qorch.client import Client, JobStatus
from qorch.samples import CUT_NODE_QUBITS, cut_demo_job

console = Console()


def direct_values(source: str, binding: dict[str, float], observables: list[str]) -> list[float]:
    """Expectation values of the whole circuit, simulated directly (no cutting)."""
    pragmas = []
    for obs in observables:
        factors = [f"{p.lower()}(q[{i}])" for i, p in enumerate(obs) if p != "I"]
        pragmas.append("#pragma braket result expectation " + " @ ".join(factors))
    program = Program(source=source + "\n".join(pragmas) + "\n", inputs=binding)
    result = LocalSimulator("braket_sv").run(program, shots=0).result()
    return [float(v) for v in result.values]


def print_plan(plan: dict[str, Any]) -> None:
    """The cut plan of one program, as the API shows it."""
    widths = ", ".join(str(s["width"]) for s in plan["subcircuits"])
    search = "exact" if plan["exact_search"] else "beam (not proven optimal)"
    console.print(
        f"  plan: {plan['cuts']} cuts ({plan['gate_cuts']} gates, {plan['wire_cuts']} wires); "
        f"subcircuits of {widths} qubits; {plan['subexperiments']} subexperiments "
        f"({', '.join(map(str, plan['programs_per_subcircuit']))} per subcircuit); sampling "
        f"overhead {plan['sampling_overhead']:g}; search {search}"
    )


def run_cut_demo(client: Client, watch: Any) -> bool:
    """Submit the wide job, follow it with ``watch(client, job_id) -> status``, compare."""
    spec = cut_demo_job()
    console.print(
        f"\n[bold]Cutting[/bold]: {spec['name']} (nodes take at most {CUT_NODE_QUBITS} qubits)"
    )
    job = client.submit(spec)
    print_plan((job.cutting or {})["0"])
    status = watch(client, job.id)
    if status != JobStatus.SUCCEEDED:
        console.print(f"[red]job {status}: {job.refresh().error}[/red]")
        return False
    progress = job.refresh().progress
    console.print(
        f"  {progress.bindings_done} subexperiment runs in {progress.fragments_total} "
        "fragments, knitted back:"
    )
    result = job.result().result
    observables = result["observables"]
    source = spec["programs"][0]["source"]
    table = Table(title="cut and knitted vs the whole circuit simulated directly")
    for column in ("t", "observable", "knitted", "direct", "|difference|"):
        table.add_column(column, justify="right" if column != "observable" else "left")
    worst = 0.0
    rows = zip(spec["programs"][0]["bindings"], result["programs"][0]["values"], strict=True)
    for binding, values in rows:
        direct = direct_values(source, binding, observables)
        for obs, got, want in zip(observables, values, direct, strict=True):
            worst = max(worst, abs(got - want))
            table.add_row(
                f"{binding['t']:+.2f}",
                obs,
                f"{got:+.10f}",
                f"{want:+.10f}",
                f"{abs(got - want):.1e}",
            )
    console.print(table)
    console.print(f"  largest difference: {worst:.1e}")
    return worst < 1e-8
