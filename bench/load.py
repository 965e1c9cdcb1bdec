"""Bounded load test: many jobs submitted at once while gRPC watchers follow some of them.

    .venv/bin/python bench/load.py [--jobs 200] [--watchers 20] [--nodes 2]

Starts the embedded stack (Postgres, broker, API, orchestrator, agents) on free ports, submits
``--jobs`` small circuits jobs concurrently, and has ``--watchers`` concurrent WatchJob streams
follow one job each from its first event. It checks that every job SUCCEEDED and that every
watcher saw every event of its job exactly once, in order (the same list the store replays),
and prints throughput and p50/p99 latencies of submission (HTTP round trip) and of event
delivery (event time in Postgres to arrival at the watcher). Not a test: it asserts
correctness and prints figures; timings depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proto.qorch.v1 import jobs_pb2
from qorch.client import QorchClient
from qorch.config import Settings
from qorch.samples import demo_job
from qorch.stack import Stack, StackOptions


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def describe(name: str, seconds: list[float]) -> str:
    return (
        f"{name}: n={len(seconds)} p50={percentile(seconds, 0.5) * 1000:.1f} ms "
        f"p99={percentile(seconds, 0.99) * 1000:.1f} ms max={max(seconds) * 1000:.1f} ms "
        f"mean={statistics.fmean(seconds) * 1000:.1f} ms"
    )


def watch(client: QorchClient, job_id: str, delays: list[float]) -> list[jobs_pb2.JobEvent]:
    """Follow one job to its end; record each event's delivery delay."""
    events = []
    for event in client.watch(job_id):
        delays.append(time.time() - event.at.ToMicroseconds() / 1e6)
        events.append(event)
    return events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--bindings", type=int, default=8, help="bindings per job")
    args = parser.parse_args()

    settings = Settings(
        fragment_bindings=4,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=500,
        poll_interval_s=0.05,
    )
    logs = Path(tempfile.mkdtemp(prefix="qorch-load-"))
    options = StackOptions(pools=["local-sv"] * args.nodes, log_dir=logs, free_ports=True)
    with Stack(settings, options) as stack:
        print(f"stack up; logs in {logs}")
        specs = [demo_job(args.bindings, seed=i) for i in range(args.jobs)]
        submit_s: list[float] = []
        delays: list[float] = []
        lock = threading.Lock()
        job_ids: list[str] = [""] * args.jobs
        watched: dict[int, list[jobs_pb2.JobEvent]] = {}
        watcher_ready = [threading.Event() for _ in range(args.watchers)]

        def submit(i: int) -> None:
            with QorchClient(stack.api_url, stack.grpc_target, api_key=stack.admin_key) as client:
                started = time.perf_counter()
                job = client.submit(specs[i])
                with lock:
                    submit_s.append(time.perf_counter() - started)
                job_ids[i] = job["id"]
                if i < args.watchers:
                    watcher_ready[i].set()

        def follow(i: int) -> None:
            watcher_ready[i].wait()
            with QorchClient(stack.api_url, stack.grpc_target, api_key=stack.admin_key) as client:
                own: list[float] = []
                watched[i] = watch(client, job_ids[i], own)
                with lock:
                    delays.extend(own)

        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.jobs + args.watchers) as pool:
            watchers = [pool.submit(follow, i) for i in range(args.watchers)]
            submits = [pool.submit(submit, i) for i in range(args.jobs)]
            for future in submits:
                future.result()
            submitted = time.perf_counter() - began
            for future in watchers:
                future.result()

        # every job completes
        with QorchClient(stack.api_url, stack.grpc_target, api_key=stack.admin_key) as client:
            pending = set(job_ids)
            while pending:
                for job_id in list(pending):
                    status = client.job(job_id)["status"]
                    if status in ("FAILED", "CANCELLED"):
                        raise SystemExit(f"job {job_id} ended {status}")
                    if status == "SUCCEEDED":
                        pending.discard(job_id)
                time.sleep(0.2)
            finished = time.perf_counter() - began
            # every watcher saw every event of its job once, in order, ending with the last
            for i, events in watched.items():
                stored = list(client.watch(job_ids[i]))
                assert [e.seq for e in events] == list(range(1, len(events) + 1)), i
                assert events == stored, f"watcher {i} saw {len(events)} of {len(stored)} events"
                assert events[-1].type == "succeeded"
        fragments = args.jobs * -(-args.bindings // settings.fragment_bindings)

    print(
        f"{args.jobs} jobs x {args.bindings} bindings, {args.watchers} watchers, "
        f"{args.nodes} agents"
    )
    print(f"all {args.jobs} jobs SUCCEEDED; every watcher saw every event of its job in order")
    print(f"submission: {args.jobs / submitted:.1f} jobs/s ({submitted:.2f} s for all)")
    print(describe("submission latency", submit_s))
    print(
        f"completion: {finished:.2f} s for all; {args.jobs / finished:.1f} jobs/s, "
        f"{fragments / finished:.1f} fragments/s, {args.jobs * args.bindings / finished:.1f} "
        "bindings/s"
    )
    print(describe("event delivery latency", delays))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
