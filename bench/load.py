"""Bounded load test: many jobs submitted at once while gRPC watchers follow some of them.

    .venv/bin/python bench/load.py [--jobs 200] [--watchers 20] [--nodes 2] [--timeout 600]

Starts the embedded stack (Postgres, broker, API, orchestrator, agents) on free ports, makes a
tenant with a key (read, submit) and quotas that admit the whole load, and submits ``--jobs``
small circuits jobs concurrently with that key, so every submission takes the normal tenant
path (rate limit, concurrency quota). ``--watchers`` WatchJob streams follow the first jobs,
each opened as soon as its job's id is back; the other jobs are submitted right after those,
so the watched jobs run, and are followed, while the API takes the load. It checks that every
job SUCCEEDED and that every watcher saw every event of its job exactly once, in order (the
same list the store replays), and prints throughput and p50/p99 latencies of submission (HTTP
round trip) and of event delivery (event time in Postgres to arrival at the watcher), events
delivered live (stored after the stream opened) apart from replayed ones. Everything has a
deadline (``--timeout``): jobs or watchers not done by then are listed and the script exits 1.
Not a test: it checks correctness and prints figures; timings depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proto.qorch.v1 import jobs_pb2
from qorch.client import QorchClient
from qorch.samples import demo_job
from qorch.stack import Stack, StackOptions
from qorchestra.config import Settings

TENANT = "load"


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def describe(name: str, seconds: list[float]) -> str:
    """One line of latency figures, in ms."""
    if not seconds:
        return f"{name}: n=0"
    return (
        f"{name}: n={len(seconds)} p50={percentile(seconds, 0.5) * 1000:.1f} ms "
        f"p99={percentile(seconds, 0.99) * 1000:.1f} ms max={max(seconds) * 1000:.1f} ms "
        f"mean={statistics.fmean(seconds) * 1000:.1f} ms"
    )


@dataclass
class Watched:
    """What one watcher saw: its events and their delivery delays, live apart from replayed."""

    events: list[jobs_pb2.JobEvent] = field(default_factory=list)
    live: list[float] = field(default_factory=list)
    replayed: list[float] = field(default_factory=list)
    error: str = ""


def watch(client: QorchClient, job_id: str, timeout: float, seen: Watched) -> None:
    """Follow one job to its end (or the deadline); an event stored before the stream was
    asked for can only be a replay from the store, any later one is delivered live."""
    opened = time.time()
    try:
        for event in client.watch(job_id, timeout=max(0.1, timeout)):
            at = event.at.ToMicroseconds() / 1e6
            (seen.replayed if at < opened else seen.live).append(time.time() - at)
            seen.events.append(event)
    except grpc.RpcError as exc:
        seen.error = f"{exc.code().name}: {exc.details()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--bindings", type=int, default=8, help="bindings per job")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds for everything to finish"
    )
    args = parser.parse_args()
    if not 0 <= args.watchers <= args.jobs:
        parser.error("--watchers must be between 0 and --jobs")

    settings = Settings(
        fragment_bindings=4,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=500,
        poll_interval_s=0.05,
        # A deployment setting, not a tenant quota: the tenant may submit the whole load (and
        # the warm-up job) at once.
        tenant_submit_burst=args.jobs + 1,
    )
    logs = Path(tempfile.mkdtemp(prefix="qorch-load-"))
    options = StackOptions(pools=["local-sv"] * args.nodes, log_dir=logs, free_ports=True)
    with Stack(settings, options) as stack:
        print(f"stack up; logs in {logs}")
        with QorchClient(stack.api_url, stack.grpc_target, api_key=stack.admin_key) as admin:
            admin.set_tenant(
                TENANT,
                {"max_concurrent_jobs": args.jobs + 1, "submit_rate_per_s": float(args.jobs + 1)},
            )
            key = admin.create_key(TENANT, ["read", "submit"], name="load")["key"]

        def tenant_client() -> QorchClient:
            return QorchClient(stack.api_url, stack.grpc_target, api_key=key)

        # One job first, not counted: the API's parse sandbox, the agents' simulators and the
        # connections start on first use (seconds on a small machine).
        warm_started = time.monotonic()
        with tenant_client() as client:
            warm_id = client.submit(demo_job(args.bindings, seed=args.jobs))["id"]
            warm = list(client.watch(warm_id, timeout=args.timeout))
        if warm[-1].type != "succeeded":
            print(f"the warm-up job ended {warm[-1].type}: {warm[-1].message}")
            return 1
        print(f"warm-up job done in {time.monotonic() - warm_started:.2f} s (not counted)")

        specs = [demo_job(args.bindings, seed=i) for i in range(args.jobs)]
        # A watcher can open only once its job's id is back, and under the full load an answer
        # takes seconds: the watched jobs are submitted first, the rest as soon as their ids
        # are back, so the watched jobs run, and are followed live, while the API takes the load.
        watched_at = {k: k for k in range(args.watchers)}
        submit_s: list[float] = []
        lock = threading.Lock()
        job_ids: list[str] = [""] * args.jobs
        refused: list[str] = []
        watched = [Watched() for _ in range(args.watchers)]
        known = [threading.Event() for _ in range(args.watchers)]
        # Clients made beforehand: a submission or a watcher pays only for its own requests.
        submitters = [tenant_client() for _ in range(args.jobs)]
        followers = [tenant_client() for _ in range(args.watchers)]
        began = time.monotonic()
        deadline = began + args.timeout

        def submit(i: int) -> None:
            started = time.perf_counter()
            try:
                job_ids[i] = submitters[i].submit(specs[i])["id"]
                with lock:
                    submit_s.append(time.perf_counter() - started)
            except Exception as exc:  # reported below; the rest of the load goes on
                with lock:
                    refused.append(f"job {i}: {exc}")
            finally:
                if i in watched_at:
                    known[watched_at[i]].set()

        def follow(k: int, i: int) -> None:
            known[k].wait(max(0.0, deadline - time.monotonic()))
            if not job_ids[i]:
                watched[k].error = "its job was not submitted"
                return
            watch(followers[k], job_ids[i], deadline - time.monotonic(), watched[k])

        # Watchers are daemon threads with a gRPC deadline: a stuck job cannot hang the script.
        watchers = [
            threading.Thread(target=follow, args=(k, i), daemon=True, name=f"watch-{k}")
            for i, k in watched_at.items()
        ]
        for thread in watchers:
            thread.start()
        with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            list(pool.map(submit, range(args.watchers)))
            list(pool.map(submit, range(args.watchers, args.jobs)))
        submitted = time.monotonic() - began
        for client in submitters:
            client.close()

        problems = list(refused)
        with QorchClient(stack.api_url, stack.grpc_target, api_key=key) as client:
            pending = {job_id for job_id in job_ids if job_id}
            while pending and time.monotonic() < deadline:
                for job_id in list(pending):
                    job = client.job(job_id)
                    if job["status"] in ("FAILED", "CANCELLED"):
                        problems.append(f"job {job_id} ended {job['status']}: {job['error']}")
                        pending.discard(job_id)
                    elif job["status"] == "SUCCEEDED":
                        pending.discard(job_id)
                if pending:
                    time.sleep(0.2)
            finished = time.monotonic() - began
            for job_id in sorted(pending):
                job = client.job(job_id)
                progress = job["progress"]
                problems.append(
                    f"job {job_id} not finished after {args.timeout:g} s: {job['status']}, "
                    f"{progress['fragments_done']}/{progress['fragments_total']} fragments"
                )
            for thread in watchers:
                thread.join(max(0.0, deadline - time.monotonic()) + 5.0)
            # every watcher saw every event of its job once, in order, ending with the last
            for (i, k), thread in zip(watched_at.items(), watchers, strict=True):
                seen = watched[k]
                if thread.is_alive() or seen.error:
                    problems.append(f"watcher {k} (job {i}) did not finish: {seen.error}")
                    continue
                stored = list(client.watch(job_ids[i], timeout=60))
                if [e.seq for e in seen.events] != list(range(1, len(seen.events) + 1)):
                    problems.append(f"watcher {k} saw events out of order or twice")
                elif seen.events != stored or seen.events[-1].type != "succeeded":
                    problems.append(f"watcher {k} saw {len(seen.events)} of {len(stored)} events")
        for client in followers:
            client.close()
        fragments = args.jobs * -(-args.bindings // settings.fragment_bindings)

    print(
        f"{args.jobs} jobs x {args.bindings} bindings, {args.watchers} watchers, "
        f"{args.nodes} agents; submitted with a tenant key ({TENANT!r}: read, submit)"
    )
    if problems:
        print(f"FAILED ({len(problems)} problems):")
        for problem in problems:
            print(f"  {problem}")
        return 1
    live = [d for w in watched for d in w.live]
    replayed = [d for w in watched for d in w.replayed]
    print(f"all {args.jobs} jobs SUCCEEDED; every watcher saw every event of its job in order")
    print(f"submission: {args.jobs / submitted:.1f} jobs/s ({submitted:.2f} s for all)")
    print(describe("submission latency", submit_s))
    print(
        f"completion: {finished:.2f} s for all; {args.jobs / finished:.1f} jobs/s, "
        f"{fragments / finished:.1f} fragments/s, {args.jobs * args.bindings / finished:.1f} "
        "bindings/s"
    )
    print(describe("event delivery latency, live", live))
    print(describe("event delivery latency, replayed (stored before the stream opened)", replayed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
