"""Admission under load: throughput of valid submissions, and one tenant's submissions while
another floods the shared parse workers with slow programs.

    .venv/bin/python bench/admission.py [--jobs 200] [--quiet-jobs 100] [--flooders 6]
        [--part all|burst|flood]

Starts the embedded stack (Postgres, broker, API, orchestrator, one agent) with a parse bound
of 3 s. (1) ``--jobs`` valid circuits jobs are submitted at once by one tenant: one client
thread and connection per job, all released together, so that every submission is in flight
at once; p50/p99 submit latency (HTTP round trip, from the release) and jobs/s (submissions
accepted per second of wall time, from the release to the last answer). (2) tenant B submits
``--quiet-jobs`` jobs one after another, each with a program of its own (so each is parsed),
first alone (baseline, once the burst's jobs finished) and then while tenant A's
``--flooders`` threads submit, without pause, programs that Braket takes longer than the
bound to parse (each refused after 3 s of a worker). It prints a goal/target/measured/verdict
table. Not a test: timings depend on the machine (the parse workers, the API and Postgres
share its cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
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


#: How the processes of the stack are named in the CPU split, by a part of their command line.
ROLES = {
    "qorch.cli api": "API",
    "api.sandbox": "parse workers",
    "qorch.cli orchestrator": "orchestrator",
    "qorch.cli node": "agent",
    "postgres": "Postgres",
    "tansu": "broker",
}


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) so far of this process and its descendants (the stack),
    by role. Linux (/proc) only; empty elsewhere."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    procs: dict[int, tuple[str, int, float]] = {}
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        procs[pid] = (cmd, int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    me, totals = os.getpid(), dict[str, float]()
    for pid, (cmd, _parent, seconds) in procs.items():
        ancestor, hops = pid, 0
        while ancestor not in (me, 0, 1) and hops < 32:
            ancestor, hops = procs.get(ancestor, ("", 0, 0.0))[1], hops + 1
        if ancestor != me:
            continue
        role = "bench client" if pid == me else "other"
        role = next((name for part, name in ROLES.items() if part in cmd), role)
        totals[role] = totals.get(role, 0.0) + seconds
    return totals


def cpu_split(before: dict[str, float], after: dict[str, float], jobs: int, wall: float) -> str:
    """CPU milliseconds per job of each role between two ``cpu_seconds()``, and the cores used."""
    spent = {role: after[role] - before.get(role, 0.0) for role in after}
    parts = [
        f"{role} {1000 * s / jobs:.1f}"
        for role, s in sorted(spent.items(), key=lambda kv: -kv[1])
        if s > 0
    ]
    total = sum(spent.values())
    return (
        f"CPU ms per job: {', '.join(parts)}; all {1000 * total / jobs:.1f} "
        f"({total / wall:.2f} cores busy)"
    )


def settle(admin: QorchClient, timeout_s: float = 300.0) -> None:
    """Wait until no job is queued or running (the stack is idle again)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if all(admin.jobs(status, limit=1)["count"] == 0 for status in ("QUEUED", "RUNNING")):
            return
        time.sleep(0.5)
    print(f"jobs still unfinished after {timeout_s:g} s; going on", file=sys.stderr)


def submit_at_once(
    clients: list[QorchClient], specs: list[dict[str, Any]]
) -> tuple[list[float | None], float]:
    """Submit ``specs[i]`` with ``clients[i]``, each from a thread of its own, all released at
    the same instant: (each one's seconds from the release to its answer, None when it was
    refused or failed; seconds from the release to the last answer). Closes the clients."""
    ready = threading.Barrier(len(specs) + 1)
    seconds: list[float | None] = [None] * len(specs)
    released = [0.0]

    def submit(i: int) -> None:
        ready.wait()
        try:
            clients[i].submit(specs[i])
            seconds[i] = time.perf_counter() - released[0]
        except Exception as exc:
            print(f"submission {i} failed: {exc}", file=sys.stderr)

    threads = [threading.Thread(target=submit, args=(i,), daemon=True) for i in range(len(specs))]
    for thread in threads:
        thread.start()
    released[0] = time.perf_counter()
    ready.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - released[0]
    for c in clients:
        c.close()
    return seconds, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--quiet-jobs", type=int, default=100)
    parser.add_argument("--flooders", type=int, default=6)
    parser.add_argument("--part", choices=["all", "burst", "flood"], default="all")
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

        if args.part in ("all", "burst"):
            # (1) many valid submissions at once (one program, parsed once, then cached)
            with client("bench-a") as warm:
                warm.submit(demo_job(4, seed=0))
            clients = [client("bench-a") for _ in range(args.jobs)]
            specs = [demo_job(4, seed=i) for i in range(args.jobs)]
            before = cpu_seconds()
            burst, wall = submit_at_once(clients, specs)
            split = cpu_split(before, cpu_seconds(), args.jobs, wall)
            accepted = sum(1 for seconds in burst if seconds is not None)
            times = [seconds for seconds in burst if seconds is not None]
            rate = accepted / wall
            p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
            print(
                f"(1) {args.jobs} submissions at once: {accepted} accepted in {wall:.2f} s; "
                f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, {rate:.0f} jobs/s\n    {split}"
            )
            goals.append(["submit p99, 200 at once", "< 1 s", f"{p99 * 1000:.0f} ms", p99 < 1.0])
            goals.append(["accepted jobs/s, 200 at once", ">= 100", f"{rate:.0f}", rate >= 100])

        if args.part in ("all", "flood"):
            # (2) tenant B alone, then while tenant A floods slow programs; first the burst's jobs
            # finish, so that the agent running them does not slow B's baseline
            settle(admin)
            before = cpu_seconds()
            started = time.perf_counter()
            with client("bench-b") as b:
                quiet = [timed_submit(b, fast_job(i)) for i in range(args.quiet_jobs)]
            quiet_split = cpu_split(
                before, cpu_seconds(), args.quiet_jobs, time.perf_counter() - started
            )
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
            before = cpu_seconds()
            started = time.perf_counter()
            with client("bench-b") as b:
                loud = [timed_submit(b, fast_job(10_000 + i)) for i in range(args.quiet_jobs)]
            loud_split = cpu_split(
                before, cpu_seconds(), args.quiet_jobs, time.perf_counter() - started
            )
            stop.set()
            for thread in flooders:
                thread.join(30)
            q99, l99 = percentile(quiet, 0.99), percentile(loud, 0.99)
            q50, l50 = percentile(quiet, 0.5), percentile(loud, 0.5)
            print(
                f"(2) tenant B p99: quiet {q99 * 1000:.0f} ms, while A floods {l99 * 1000:.0f} ms "
                f"(p50 {q50 * 1000:.0f} / {l50 * 1000:.0f} ms); "
                f"A's slow submissions refused: {refused[0]}\n    quiet: {quiet_split}"
                f"\n    while A floods: {loud_split}"
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
