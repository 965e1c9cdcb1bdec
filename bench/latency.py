"""Event latency: from the orchestrator recording an event to a gRPC watcher receiving it.

Starts the embedded stack with two agents, submits a job of many small fragments (one
``progress`` event each), follows it with 20 concurrent ``WatchJob`` streams, and prints
p50/p90/p99/max of ``received - event.at`` over every event every watcher saw (issue 6, goal 4)::

    .venv/bin/python bench/latency.py [--watchers 20] [--bindings 2000]

``event.at`` is the row's ``created_at``, Postgres ``now()``: the start of the transaction that
recorded it, so the figure also counts the rest of that transaction (an upper bound). Same
machine, same clock. Figures only; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from common import bindings, running_stack, table, trivial

from qorch.client import QorchClient


def follow(client: QorchClient, job_id: str, out: list[float], replays: list[int]) -> None:
    """One watcher: the latency in seconds of every event recorded after it attached.

    Events recorded before the stream opened are replays from the store, not deliveries;
    they are counted in ``replays`` and left out.
    """
    attached = time.time()
    for event in client.watch(job_id):
        received = time.time()
        at = event.at.ToMicroseconds() / 1e6
        if at >= attached:
            out.append(received - at)
        else:
            replays.append(event.seq)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--bindings", type=int, default=2000)
    parser.add_argument("--fragment-bindings", type=int, default=8)
    args = parser.parse_args()
    source, names = trivial()
    spec = {
        "name": "bench: event latency",
        "kind": "circuits",
        "pool": "local-sv",
        "shots": 0,
        "result": {"type": "expectation", "observables": ["Z"]},
        "programs": [{"source": source, "bindings": bindings(names, args.bindings)}],
    }
    spec_warm = bindings(names, 64)  # a first job warms the agents and the database
    with running_stack(agents=2, fragment_bindings=args.fragment_bindings) as (_, client):
        client.submit({**spec, "programs": [{"source": source, "bindings": spec_warm}]})
        job = client.submit(spec)
        samples: list[list[float]] = [[] for _ in range(args.watchers)]
        replays: list[int] = []
        threads = [
            threading.Thread(target=follow, args=(client, job["id"], samples[i], replays))
            for i in range(args.watchers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ms = [x * 1e3 for watcher in samples for x in watcher]
    replayed = len(replays)
    print(
        table(
            f"Goal 4 - event latency, {args.watchers} gRPC watchers, ms",
            ["events received", "p50", "p90", "p99", "max", "mean", "replayed (excluded)"],
            [
                [
                    len(ms),
                    f"{percentile(ms, 0.5):.1f}",
                    f"{percentile(ms, 0.9):.1f}",
                    f"**{percentile(ms, 0.99):.1f}**",
                    f"{max(ms):.1f}",
                    f"{statistics.fmean(ms):.1f}",
                    replayed,
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
