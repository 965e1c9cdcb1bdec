"""Admission under load: throughput of valid submissions, and one tenant's submissions while
another floods the shared parse workers with slow programs.

    .venv/bin/python bench/admission.py [--jobs 200] [--quiet-jobs 30] [--flooders 6]

Starts the embedded stack (Postgres, broker, API, orchestrator, one agent) with a parse bound
of 3 s. (1) ``--jobs`` valid circuits jobs are submitted at once by one tenant: p50/p99 submit
latency (HTTP round trip) and jobs/s (submissions accepted per second of wall time). (2) tenant
B submits ``--quiet-jobs`` jobs one after another, each with a program of its own (so each is
parsed), first alone (baseline) and then while tenant A's ``--flooders`` threads submit, without
pause, programs that Braket takes longer than the bound to parse (each refused after 3 s of a
worker). It prints a goal/target/measured/verdict table. Not a test: timings depend on the
machine (the parse workers, the API and Postgres share its cores).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import running_stack, table
from load import percentile

from qorch.client import QorchClient
from qorch.samples import demo_job

PARSE_BOUND_S = 3.0


def fast_job(i: int) -> dict[str, Any]:
    """A small valid job whose program is its own (a comment), so it is not cached."""
    source = (
        f"OPENQASM 3.0;\n// b {i} {time.monotonic_ns()}\nqubit[2] q;\nh q[0];\ncnot q[0], q[1];\n"
    )
    return {
        "kind": "circuits",
        "pool": "local-sv",
        "shots": 0,
        "result": {"type": "expectation", "observables": ["ZZ"]},
        "programs": [{"source": source}],
    }


def slow_job(i: int) -> dict[str, Any]:
    """A job whose program Braket unrolls for longer than the parse bound (refused with 422)."""
    job = fast_job(i)
    job["programs"] = [
        {"source": f"OPENQASM 3.0;\n// a {i}\nqubit[1] q;\nfor int i in [0:80000] {{ x q[0]; }}\n"}
    ]
    return job


def timed_submit(client: QorchClient, spec: dict[str, Any]) -> float:
    started = time.perf_counter()
    client.submit(spec)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--quiet-jobs", type=int, default=30)
    parser.add_argument("--flooders", type=int, default=6)
    args = parser.parse_args()
    lots = {"max_concurrent_jobs": 100_000, "submit_rate_per_s": 100_000.0}
    goals: list[list[Any]] = []
    with running_stack(
        1, parse_timeout_s=PARSE_BOUND_S, tenant_submit_burst=100_000, log_level="WARNING"
    ) as (stack, admin):
        keys = {}
        for tenant in ("bench-a", "bench-b"):
            admin.set_tenant(tenant, lots)
            keys[tenant] = admin.create_key(tenant, ["read", "submit"], name="bench")["key"]

        def client(tenant: str) -> QorchClient:
            return QorchClient(stack.api_url, stack.grpc_target, api_key=keys[tenant])

        # (1) many valid submissions at once (one program, parsed once, then cached)
        with client("bench-a") as warm:
            warm.submit(demo_job(4, seed=0))
        clients = [client("bench-a") for _ in range(32)]
        started = time.perf_counter()
        with ThreadPoolExecutor(len(clients)) as pool:
            burst = list(
                pool.map(
                    lambda i: timed_submit(clients[i % len(clients)], demo_job(4, seed=i)),
                    range(args.jobs),
                )
            )
        wall = time.perf_counter() - started
        for c in clients:
            c.close()
        rate = args.jobs / wall
        p50, p99 = percentile(burst, 0.5), percentile(burst, 0.99)
        print(
            f"(1) {args.jobs} submissions: p50 {p50 * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms, {rate:.0f} jobs/s"
        )
        goals.append(["submit p99, 200 at once", "< 1 s", f"{p99 * 1000:.0f} ms", p99 < 1.0])
        goals.append(["accepted jobs/s, 200 at once", ">= 100", f"{rate:.0f}", rate >= 100])

        # (2) tenant B alone, then while tenant A floods slow programs
        with client("bench-b") as b:
            quiet = [timed_submit(b, fast_job(i)) for i in range(args.quiet_jobs)]
        stop = threading.Event()
        refused = [0]

        def flood(n: int) -> None:
            with client("bench-a") as a:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        a.submit(slow_job(n * 1_000_000 + i))
                    except Exception:
                        refused[0] += 1

        flooders = [
            threading.Thread(target=flood, args=(n,), daemon=True) for n in range(args.flooders)
        ]
        for thread in flooders:
            thread.start()
        time.sleep(1.0)
        with client("bench-b") as b:
            loud = [timed_submit(b, fast_job(10_000 + i)) for i in range(args.quiet_jobs)]
        stop.set()
        for thread in flooders:
            thread.join(30)
        q99, l99 = percentile(quiet, 0.99), percentile(loud, 0.99)
        print(
            f"(2) tenant B p99: quiet {q99 * 1000:.0f} ms, while A floods {l99 * 1000:.0f} ms "
            f"(p50 {percentile(quiet, 0.5) * 1000:.0f} / {percentile(loud, 0.5) * 1000:.0f} ms); "
            f"A's slow submissions refused: {refused[0]}"
        )
        goals.append(
            [
                "tenant B submit p99 while A floods slow programs",
                "<= 2x quiet",
                f"{l99 * 1000:.0f} ms vs {q99 * 1000:.0f} ms ({l99 / q99:.1f}x)",
                l99 <= 2 * q99,
            ]
        )
    rows = [[g, t, m, "met" if ok else "NOT met"] for g, t, m, ok in goals]
    print(table("Goals (admission)", ["goal", "target", "measured", "verdict"], rows))


if __name__ == "__main__":
    main()
