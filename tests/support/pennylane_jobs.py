"""Circuits jobs run in this process as the pools' agents run them, for the PennyLane device's
tests without a stack: each program's bindings go through the node's own ``LocalExecutor`` as
one fragment, and the answers take the shape of ``GET /v1/jobs/{id}/result``'s ``result``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nodes.executors.local import LocalExecutor
from proto.qorch.v1 import fragments_pb2 as pb

KINDS = {
    "expectation": pb.RESULT_KIND_EXPECTATION,
    "probabilities": pb.RESULT_KIND_PROBABILITIES,
    "counts": pb.RESULT_KIND_COUNTS,
}

#: The simulator behind each pool these tests use.
BACKENDS = {"local-sv": "braket_sv", "local-dm": "braket_dm"}


class LocalJobs:
    """Stands in for the device's ``JobRunner``: ``run(specs, timeout)`` answers each job's
    result. ``specs`` keeps every job it was given."""

    def __init__(self) -> None:
        self.specs: list[dict[str, Any]] = []
        self._executors: dict[str, LocalExecutor] = {}

    def run(self, specs: Sequence[Mapping[str, Any]], timeout: float | None) -> list[Any]:
        """Each job's result, in order."""
        self.specs += [dict(spec) for spec in specs]
        return [self.result(spec) for spec in specs]

    def result(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The ``result`` of one circuits job."""
        backend = BACKENDS[spec["pool"]]
        executor = self._executors.setdefault(backend, LocalExecutor(backend))
        result = spec["result"]
        programs = []
        for index, program in enumerate(spec["programs"]):
            fragment = pb.Fragment(
                fragment_id=f"f{index}",
                job_id="j",
                attempt=1,
                pool=spec["pool"],
                program=program["source"],
                bindings=[pb.Binding(values=b) for b in program["bindings"]] or [pb.Binding()],
                shots=spec["shots"],
                result_kind=KINDS[result["type"]],
                observables=list(result.get("observables", [])),
            )
            values = [_value(r) for r in executor.execute(fragment)]
            programs.append({"index": index, "values": values})
        return {"result_type": result["type"], "shots": spec["shots"], "programs": programs}


def _value(result: pb.BindingResult) -> Any:
    """A binding's value as the API returns it."""
    kind = result.WhichOneof("value")
    if kind == "expectations":
        return list(result.expectations.values)
    if kind == "counts":
        return dict(result.counts.counts)
    return dict(result.probabilities.probabilities)
