"""The ``qorch`` command: run the platform's services, or use it as a client."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qorch.client import ApiError, Client, ConnectionFailed, Cost, Job, JobStatus, Timeout
from qorch.devices_cli import add_commands as add_device_commands
from qorch.training_cli import (
    DEMO_CLASSIFIER,
    add_commands,
    print_metrics,
    step_time,
    watch_training,
)
from qorchestra.apikeys import key_prefix
from qorchestra.config import Settings, get_settings
from qorchestra.logs import configure_logging
from qorchestra.redaction import mask_url

console = Console(stderr=False)
#: Warnings go to stderr, so that a script reading a submitted job's id from stdout gets it alone.
warnings_console = Console(stderr=True)


# ------------------------------------------------------------------ services


EXIT_NOT_READY = 2


def _database_problem(settings: Settings) -> str | None:
    """Why a service that needs Postgres cannot start, or None."""
    from qorchestra.store.db import make_engine
    from qorchestra.store.migrate import SchemaNotReady

    if not settings.database_url:
        return "QORCH_DATABASE_URL is not set (or use `qorch up`, which starts an embedded one)"
    if not settings.kafka_bootstrap:
        return "QORCH_KAFKA_BOOTSTRAP is not set (or use `qorch up`, which starts an embedded one)"
    try:
        make_engine(settings.database_url, pool_size=1).dispose()
    except SchemaNotReady as exc:
        return str(exc)
    return None


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from api.main import serve

    configure_logging("api", settings.log_level, settings.log_json)
    problem = _database_problem(settings)
    if problem:
        logging.getLogger("qorch.cli").error("cannot start the API: %s", problem)
        return EXIT_NOT_READY
    return serve(settings)


def cmd_orchestrator(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.main import run_orchestrator

    configure_logging("orchestrator", settings.log_level, settings.log_json)
    problem = _database_problem(settings)
    if problem:
        logging.getLogger("qorch.cli").error("cannot start the orchestrator: %s", problem)
        return EXIT_NOT_READY
    return run_orchestrator(settings)


def cmd_node(args: argparse.Namespace, settings: Settings) -> int:
    from nodes.main import run_agent

    if args.node_id:
        settings = settings.model_copy(update={"node_id": args.node_id})
    configure_logging(f"node[{args.pool}]", settings.log_level, settings.log_json)
    return run_agent(args.pool, settings)


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from qorchestra.store.migrate import upgrade

    configure_logging("db", settings.log_level, settings.log_json)
    if not settings.database_url:
        console.print("[red]QORCH_DATABASE_URL is not set[/red]")
        return 2
    upgrade(settings.database_url, args.revision)
    console.print(f"database migrated to {args.revision}")
    return 0


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from qorch.stack import Stack, StackOptions
    from qorch.supervisor import Supervisor

    pools = _pools(args)
    if pools is None:
        return 2
    configure_logging("up", settings.log_level, settings.log_json)
    # /metrics for the orchestrator and every agent: free ports, or consecutive ones from
    # QORCH_METRICS_PORT when it is set; QORCH_METRICS_PORT=0 turns them off.
    metrics = "QORCH_METRICS_PORT" not in os.environ or settings.metrics_port > 0
    options = StackOptions(
        pools=pools, data_dir=Path(settings.data_dir) / "postgres", metrics_ports=metrics
    )
    stop = threading.Event()
    _stop_on_signals(stop)
    generated = not settings.admin_key.get_secret_value()
    with Stack(settings, options) as stack:
        console.print("[bold green]qorchestra is up[/bold green]")
        if generated:
            console.print(f"  admin key     {stack.admin_key}")
            console.print(f"                (export QORCH_API_KEY={stack.admin_key})")
            console.print(
                "                (new at each start: it revokes the one of an earlier start; "
                "set QORCH_ADMIN_KEY to keep one)"
            )
        else:
            console.print(f"  admin key     {key_prefix(stack.admin_key)}... (QORCH_ADMIN_KEY)")
        console.print(f"  REST API      {stack.api_url}")
        console.print(f"  dashboard     {stack.api_url}/ui")
        console.print(f"  OpenAPI docs  {stack.api_url}/docs")
        console.print(f"  gRPC          {stack.grpc_target}")
        console.print(f"  Postgres      {mask_url(stack.settings.database_url)}")
        console.print(f"  Kafka         {stack.settings.kafka_bootstrap}")
        console.print(f"  node agents   {_pool_summary(pools)}")
        console.print(f"  metrics       {stack.metrics_url('api')} (api)")
        for service in stack.services[1:] if metrics else []:
            console.print(f"                {stack.metrics_url(service.name)} ({service.name})")
        console.print("A service that exits is started again; Ctrl-C stops everything.")
        supervisor = Supervisor(stack)  # a service that dies is started again, with backoff
        while not stop.wait(1.0):
            supervisor.check()
        console.print("stopping ...")
    console.print("stopped")
    return 0


def _interrupt_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so ``with Stack(...)`` stops every child it started."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from qorch.samples import demo_job
    from qorch.stack import Stack, StackOptions

    pools = _pools(args)
    if pools is None:
        return 2
    configure_logging("demo", "WARNING", settings.log_json)
    _interrupt_on_sigterm()
    if args.cut:  # nodes of 6 qubits: the 12-qubit circuit must be cut to run
        from qorch.samples import CUT_NODE_QUBITS

        limits = {**settings.pool_max_qubits, "local-sv": CUT_NODE_QUBITS}
        settings = settings.model_copy(update={"pool_max_qubits": limits})
    if "QORCH_FRAGMENT_BINDINGS" not in os.environ:
        # Fragments of 16: the 64-setting sample job then visibly spreads over both agents.
        settings = settings.model_copy(update={"fragment_bindings": 16})
    log_dir = Path(settings.data_dir) / "demo-logs"
    options = StackOptions(pools=pools, log_dir=log_dir, free_ports=True)
    console.print(
        "[bold]Starting the embedded stack[/bold] (Postgres, Kafka-protocol broker, "
        f"API + gRPC, orchestrator, node agents {_pool_summary(pools)}) ..."
    )
    started = time.monotonic()
    with Stack(settings, options) as stack:
        console.print(
            f"  ready in {time.monotonic() - started:.1f}s; API {stack.api_url}, "
            f"gRPC {stack.grpc_target}, logs in {log_dir}/"
        )
        with Client(stack.api_url, stack.admin_key, stack.grpc_target) as client:
            if args.cut:
                from qorch.cut_demo import run_cut_demo

                if not run_cut_demo(client, watch_with_progress):
                    return 1
                console.print("Shutting down ...")
                return 0
            spec = demo_job(args.settings, shots=args.shots)
            job = client.submit(spec)
            console.print(f"Submitted job [cyan]{job.id}[/cyan]: {spec['name']}")
            status = watch_with_progress(client, job.id)
            if status != JobStatus.SUCCEEDED:
                console.print(f"[red]job {status}: {job.refresh().error}[/red]")
                return 1
            print_summary(client, job.id)
            if args.train and not _demo_training(client):
                return 1
            _await_heartbeats(client, settings)
            print_nodes(client)
        console.print("Shutting down ...")
    console.print("[green]done[/green]")
    return 0


# ------------------------------------------------------------------ client commands


def _client(settings: Settings) -> Client:
    tls, roots = settings.client_grpc_tls()
    return Client(
        settings.client_api_url(),
        settings.api_key.get_secret_value(),
        settings.client_grpc_target(),
        grpc_credentials=grpc.ssl_channel_credentials(roots) if tls else None,
    )


def watch_with_progress(client: Client, job_id: str, from_seq: int = 0) -> JobStatus:
    """Follow a job over gRPC with a progress bar; returns its final status.

    ``Client.watch`` resumes a dropped stream from the last event seen, so nothing is missed
    or repeated. The job is looked up over REST first, so an unknown job or an unreachable API
    is reported at once rather than after the reconnection attempts.
    """
    job = client.job(job_id)
    if job.kind in ("train", "minimize"):
        return watch_training(client, job, from_seq)
    status = JobStatus.QUEUED
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("circuits"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("queued", total=None)
        for event in client.watch(job_id, from_seq):
            status = event.status
            progress.update(
                task,
                description=status.lower(),
                completed=event.bindings_done,
                total=event.bindings_total or None,
            )
            if event.type in ("redispatched", "failed", "cancelled"):
                progress.console.print(f"  [yellow]{event.type}[/yellow]: {event.message}")
            if event.terminal:
                return status
    return job.refresh().status


def print_summary(client: Client, job_id: str) -> None:
    """A short table of a finished job's result."""
    job = client.job(job_id)
    result = client.result(job_id).result
    timings, progress = job.timings, job.progress
    console.print(
        f"[bold green]SUCCEEDED[/bold green] {progress.bindings_done} circuits in "
        f"{progress.fragments_total} fragments, {timings.run_s or 0.0:.2f}s "
        f"(queued {timings.queued_s or 0.0:.2f}s), redispatches: {progress.redispatches}"
    )
    if job.cost is not None and job.cost.estimate_usd:
        console.print(cost_line(job.cost))
    kind = result["result_type"]
    for program in result["programs"]:
        values = program["values"]
        if kind == "expectation":
            table = Table(
                title=f"program {program['index']}: expectation values over {len(values)} settings"
            )
            for col in ("observable", "mean", "min", "max"):
                table.add_column(col)
            for k, obs in enumerate(result["observables"]):
                column = [v[k] for v in values]
                table.add_row(
                    obs,
                    f"{sum(column) / len(column):+.4f}",
                    f"{min(column):+.4f}",
                    f"{max(column):+.4f}",
                )
            console.print(table)
            energies = [sum(v) for v in values]
            best = min(range(len(energies)), key=energies.__getitem__)
            console.print(f"lowest sum of observables: {energies[best]:+.4f} at setting {best}")
        else:
            first = values[0]
            top = sorted(first.items(), key=lambda kv: -kv[1])[:5]
            console.print(f"program {program['index']} binding 0, top {kind}: {top}")


def _demo_training(client: Client) -> bool:
    """Train the demo classifier on ``moons``, show it learning, classify two new points."""
    console.print(
        "\n[bold]Training[/bold] a 4-qubit classifier on moons with the adjoint gradient on "
        "local-sv: the agents run each sample's circuit and return its readout and exact "
        "gradient (one forward and one backward pass; `gradient: parameter_shift` would run "
        "1 + 2 x 24 circuits per sample)"
    )
    job = client.train(DEMO_CLASSIFIER)
    status = watch_training(client, job)
    if status != JobStatus.SUCCEEDED:
        console.print(f"[red]training {status}: {job.refresh().error}[/red]")
        return False
    history = print_metrics(client, job.id)
    console.print(f"  training: {step_time(history) or 'no step times reported'}")
    points = [[0.0, 1.0], [1.0, -0.5], [-0.8, 0.3], [2.0, 0.2]]
    answer = client.predict(job.id, points)
    for point, p in zip(points, answer.predictions, strict=True):
        console.print(
            f"  predict {point}: class {p.class_} (p = {max(p.probabilities.values()):.3f})"
        )
    return True


def _await_heartbeats(client: Client, settings: Settings) -> None:
    """Give the agents up to two heartbeats to report the last fragments of the jobs.

    ``/v1/nodes`` counts what the agents last reported, so right after a job ends the table
    could otherwise miss the final fragments.
    """
    fragments = sum(j.progress.fragments_done for j in client.jobs(limit=500).data)
    deadline = time.monotonic() + 2 * settings.heartbeat_interval_s
    while time.monotonic() < deadline:
        if sum(n.fragments_done for n in client.nodes().data) >= fragments:
            return
        time.sleep(0.2)


def print_nodes(client: Client) -> None:
    """Which agents did the work, and every pool with its live agents and waiting work."""
    table = Table(title="node agents")
    for col in ("node", "pool", "state", "fragments", "circuits"):
        table.add_column(col)
    for node in client.nodes().data:
        table.add_row(
            node.id, node.pool, node.state, str(node.fragments_done), str(node.bindings_done)
        )
    console.print(table)
    pools = Table(title="pools")
    for col in ("pool", "live agents", "waiting jobs", "queued", "in flight", "oldest (s)"):
        pools.add_column(col)
    for pool in client.pools().data:
        oldest = pool.oldest_in_flight_s
        pools.add_row(
            pool.name,
            str(pool.agents_live),
            str(pool.jobs_waiting),
            str(pool.fragments_queued),
            str(pool.fragments_in_flight),
            "" if oldest is None else f"{oldest:.0f}",
        )
    console.print(pools)


def _when(at: datetime | None) -> str:
    """A time for a table, to the second (empty for None)."""
    return "" if at is None else at.isoformat(timespec="seconds")


def _load_spec(path: str) -> dict[str, Any]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    spec = yaml.safe_load(text)  # JSON is YAML too
    if not isinstance(spec, dict):
        raise SystemExit(f"{path}: a job spec is a JSON/YAML object")
    return spec


def print_warnings(job: Job) -> None:
    """The warnings of a submission's answer (e.g. no live agent serves its pool), on stderr."""
    for warning in job.warnings:
        warnings_console.print(
            f"[bold yellow]warning:[/bold yellow] {escape(warning)}", soft_wrap=True
        )


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        job = client.submit(_load_spec(args.file))
        console.print(job.id)
        print_warnings(job)
        if args.watch:
            return 0 if watch_with_progress(client, job.id) == JobStatus.SUCCEEDED else 1
    return 0


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        status = watch_with_progress(client, args.job_id, args.from_seq)
        console.print(f"{args.job_id}: {status}")
        return 0 if status == JobStatus.SUCCEEDED else 1


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        page = client.jobs(args.status, args.limit)
    table = Table(title=f"{page.count} job(s)")
    for col in ("id", "name", "pool", "status", "progress", "created"):
        table.add_column(col)
    for job in page.data:
        p = job.progress
        table.add_row(
            job.id,
            job.name[:40],
            job.pool,
            job.status,
            f"{p.bindings_done}/{p.bindings_total}",
            _when(job.timings.created_at),
        )
    console.print(table)
    return 0


def cost_line(cost: Cost) -> str:
    """A paid job's estimate against its actual cost, for people."""
    return (
        f"cost: estimate ${cost.estimate_usd:.2f}, actual ${cost.actual_usd:.4f} "
        f"(${cost.estimate_usd - cost.actual_usd:.4f} under the estimate)"
    )


def cmd_job(args: argparse.Namespace, settings: Settings) -> int:
    """``qorch job ID``: the job as JSON (``cost`` holds its estimate and actual), and on a paid
    pool the two side by side on stderr."""
    with _client(settings) as client:
        job = client.job(args.job_id)
        console.print_json(json.dumps(job.to_dict()))
        if job.cost is not None and job.cost.estimate_usd:
            warnings_console.print(cost_line(job.cost))
    return 0


def cmd_result(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        console.print_json(json.dumps(client.result(args.job_id).to_dict()))
    return 0


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        console.print(client.cancel(args.job_id).status)
    return 0


def cmd_nodes(args: argparse.Namespace, settings: Settings) -> int:
    """``qorch nodes [enroll|credentials|revoke]``: agents, and (admin) their credentials."""
    with _client(settings) as client:
        if args.nodes_command == "enroll":
            made = client.enroll_node(args.pool, args.name)
            console.print(f"node credential {made.id} for pool {made.pool}")
            console.print(
                "It is shown only this once; start the agent with QORCH_NODE_CREDENTIAL set to:"
            )
            print(made.credential)
        elif args.nodes_command == "credentials":
            table = Table(title="node credentials")
            for col in ("id", "pool", "name", "created", "revoked"):
                table.add_column(col)
            for row in client.node_credentials(args.pool, args.revoked).data:
                table.add_row(
                    row.id, row.pool, row.name, _when(row.created_at), _when(row.revoked_at)
                )
            console.print(table)
        elif args.nodes_command == "revoke":
            row = client.revoke_node(args.credential_id)
            console.print(f"node credential {row.id} revoked at {_when(row.revoked_at)}")
        else:
            print_nodes(client)
    return 0


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    """``qorch keys create|list|revoke|rotate-admin`` (needs an admin key in QORCH_API_KEY)."""
    with _client(settings) as client:
        if args.keys_command == "create":
            made = client.create_key(args.tenant, args.scope or ["read", "submit"], args.name)
            console.print(f"key {made.id} for tenant {made.tenant} ({', '.join(made.scopes)})")
            console.print("It is shown only this once; keep it secret:")
            print(made.key)
        elif args.keys_command == "list":
            table = Table(title="API keys")
            columns = ("id", "prefix", "tenant", "scopes", "name", "created", "revoked")
            for col in (*columns, "configured"):
                table.add_column(col)
            for key in client.keys().data:
                table.add_row(
                    key.id,
                    f"{key.prefix}...",
                    key.tenant,
                    ",".join(key.scopes),
                    key.name,
                    _when(key.created_at),
                    _when(key.revoked_at),
                    "yes" if key.configured else "",
                )
            console.print(table)
        elif args.keys_command == "rotate-admin":
            rotated = client.rotate_admin_key()
            old = ", ".join(f"{k.prefix}..." for k in rotated.revoked) or "none"
            console.print(f"new admin key {rotated.id}; revoked configured admin key(s): {old}")
            console.print("It is shown only this once; keep it secret:")
            print(rotated.key, flush=True)
            console.print(
                "Put it in QORCH_ADMIN_KEY (the deployment's secret) before the API starts "
                "next, and in QORCH_API_KEY for these commands: the old key is refused from now on."
            )
        else:
            revoked = client.revoke_key(args.key_id)
            console.print(f"revoked {revoked.id} ({revoked.prefix}...)")
    return 0


def cmd_tenant(args: argparse.Namespace, settings: Settings) -> int:
    """``qorch tenant NAME [--budget-usd X ...]``: show, or (admin) set, quotas and budget."""
    with _client(settings) as client:
        changes = {
            name: getattr(args, name)
            for name in (
                "max_concurrent_jobs",
                "max_circuits_per_job",
                "max_shots_per_job",
                "submit_rate_per_s",
                "budget_usd",
            )
            if getattr(args, name) is not None
        }
        if changes:
            console.print_json(json.dumps(client.set_tenant(args.tenant, **changes).to_dict()))
        else:
            console.print_json(json.dumps(client.tenant(args.tenant).to_dict()))
    return 0


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qorch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("api", help="run the REST API and gRPC server").set_defaults(func=cmd_api)
    sub.add_parser("orchestrator", help="run the orchestrator").set_defaults(func=cmd_orchestrator)
    node = sub.add_parser("node", help="run a node agent")
    node.add_argument("--pool", default=None, help="device pool (default QORCH_NODE_POOL)")
    node.add_argument("--node-id", default="", help="node id (default hostname-pid)")
    node.set_defaults(func=cmd_node)
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="migrate the schema (Alembic)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=cmd_db)

    stack = sub.add_parser("up", help="start the whole platform and keep it running")
    _add_pool_options(stack)
    stack.set_defaults(func=cmd_up)
    demo = sub.add_parser("demo", help="start the platform, run the sample job, stop")
    _add_pool_options(demo)
    demo.add_argument("--settings", type=int, default=64, help="parameter settings to run")
    demo.add_argument("--shots", type=int, default=0, help="shots per circuit (0 = exact)")
    demo.add_argument(
        "--no-train", dest="train", action="store_false", help="skip the training part"
    )
    demo.add_argument(
        "--cut",
        action="store_true",
        help="instead: a 12-qubit circuit on nodes of 6 qubits, cut, knitted, checked",
    )
    demo.set_defaults(func=cmd_demo)

    submit = sub.add_parser("submit", help="submit a job spec (JSON or YAML file, - = stdin)")
    submit.add_argument("file")
    submit.add_argument("--watch", action="store_true", help="follow it to the end")
    submit.set_defaults(func=cmd_submit)
    watch = sub.add_parser("watch", help="follow a job's progress over gRPC")
    watch.add_argument("job_id")
    watch.add_argument("--from-seq", type=int, default=0, help="replay events after this seq")
    watch.set_defaults(func=cmd_watch)
    jobs = sub.add_parser("jobs", help="list jobs")
    jobs.add_argument("--status", default=None)
    jobs.add_argument("--limit", type=int, default=50)
    jobs.set_defaults(func=cmd_jobs)
    for name, func, text in (
        ("job", cmd_job, "show a job"),
        ("result", cmd_result, "print a finished job's result"),
        ("cancel", cmd_cancel, "cancel a job"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("job_id")
        p.set_defaults(func=func)
    nodes = sub.add_parser("nodes", help="list node agents; enroll and revoke them (admin)")
    nodes_sub = nodes.add_subparsers(dest="nodes_command")
    enroll = nodes_sub.add_parser(
        "enroll", help="issue a node credential for an agent of a pool; prints it once"
    )
    enroll.add_argument("--pool", required=True)
    enroll.add_argument("--name", default="")
    listed = nodes_sub.add_parser("credentials", help="list node credentials")
    listed.add_argument("--pool")
    listed.add_argument("--revoked", action="store_true", help="include revoked ones")
    revoke_node = nodes_sub.add_parser("revoke", help="revoke a node credential by id")
    revoke_node.add_argument("credential_id")
    nodes.set_defaults(func=cmd_nodes)
    keys = sub.add_parser("keys", help="API keys (admin)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; prints it once")
    create.add_argument("--tenant", required=True)
    create.add_argument(
        "--scope", action="append", choices=["read", "submit", "admin"], help="repeatable"
    )
    create.add_argument("--name", default="")
    keys_sub.add_parser("list", help="list keys by prefix")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    keys_sub.add_parser(
        "rotate-admin",
        help="replace the configured admin key (QORCH_ADMIN_KEY): make a new one, print it "
        "once, revoke the old one",
    )
    keys.set_defaults(func=cmd_keys)
    tenant = sub.add_parser("tenant", help="show or (admin) set a tenant's quotas and budget")
    tenant.add_argument("tenant")
    tenant.add_argument("--max-concurrent-jobs", type=int)
    tenant.add_argument("--max-circuits-per-job", type=int)
    tenant.add_argument("--max-shots-per-job", type=int)
    tenant.add_argument("--submit-rate-per-s", type=float)
    tenant.add_argument("--budget-usd", type=float)
    tenant.set_defaults(func=cmd_tenant)
    add_commands(sub, _with_client)
    add_device_commands(sub)
    return parser


def _add_pool_options(parser: argparse.ArgumentParser) -> None:
    """``--pool POOL=COUNT`` (repeatable) and the older ``--nodes N`` of ``up`` and ``demo``."""
    parser.add_argument(
        "--pool",
        dest="pools",
        action="append",
        default=[],
        metavar="POOL=COUNT",
        help="start COUNT node agents on POOL; repeatable (default: every local pool, "
        "--pool local-sv=2 --pool local-dm=1)",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=None,
        help="agents of each --pool given without =COUNT (default 2); without --pool, "
        "agents of local-sv next to the default local-dm one",
    )


def _pools(args: argparse.Namespace) -> list[str] | None:
    """The agents' pools from ``--pool``/``--nodes``; None (after saying why) when invalid."""
    from qorch.stack import parse_pools

    try:
        pools = parse_pools(args.pools, args.nodes)
    except ValueError as exc:
        print(f"qorch {args.command}: {exc}", file=sys.stderr)
        return None
    known = get_settings().emulated_profiles()
    unknown = sorted({p for p in pools if p.startswith("emu-") and p not in known})
    if unknown:
        print(
            f"qorch {args.command}: no device profile for {', '.join(unknown)} (known: "
            f"{', '.join(sorted(known))}; see qorch devices list)",
            file=sys.stderr,
        )
        return None
    return pools


def _pool_summary(pools: list[str]) -> str:
    """E.g. ``3 (local-sv 2, local-dm 1)``."""
    counts = {pool: pools.count(pool) for pool in pools}
    return f"{len(pools)} (" + ", ".join(f"{p} {n}" for p, n in counts.items()) + ")"


def _with_client(
    command: Callable[[argparse.Namespace, Client], int],
) -> Callable[[argparse.Namespace, Settings], int]:
    """Adapt a client command to the parser's ``func(args, settings)``."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        with _client(settings) as client:
            return command(args, client)

    return run


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``qorch`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:  # the messages never hold the values (hide_input_in_errors)
        for error in exc.errors(include_input=False, include_url=False):
            name = "QORCH_" + "_".join(str(part) for part in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ")
            if not message.startswith(name):
                message = f"{name}: {message}"
            print(f"qorch: invalid setting {message}", file=sys.stderr)
        return EXIT_NOT_READY
    if getattr(args, "pool", "x") is None:
        args.pool = settings.node_pool
    try:
        code: int = args.func(args, settings)
    except ApiError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        return 1
    except (ConnectionFailed, Timeout) as exc:
        console.print(
            f"[red]{escape(str(exc))}[/red]\n"
            "Is it running (`qorch up`)? Set QORCH_API_URL to point elsewhere."
        )
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
