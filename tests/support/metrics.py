"""Reading this process's Prometheus counters (``qorchestra/metrics.py``) in tests.

Counters are process-wide and only grow, so a test compares against what it read before it
acted: ``before = CounterReading(); ...; before.grew("qorch_results_total", outcome="unknown")``.
"""

from __future__ import annotations

from prometheus_client import REGISTRY


def counter_value(name: str, **labels: str) -> float:
    """The counter's value now (0 when it was never moved)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class CounterReading:
    """The counters as they were when it was made."""

    def __init__(self) -> None:
        self._at: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for metric in REGISTRY.collect():
            for sample in metric.samples:
                self._at[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def grew(self, name: str, **labels: str) -> float:
        """How much a counter (e.g. ``qorch_results_total``) grew since this reading."""
        before = self._at.get((name, tuple(sorted(labels.items()))), 0.0)
        return counter_value(name, **labels) - before
