"""Amazon Braket's API on loopback, for tests: a stand-in HTTP server, and S3 from moto.

:class:`BraketStandIn` answers the REST calls the Braket SDK and boto3 make for quantum tasks
(CreateQuantumTask, GetQuantumTask, CancelQuantumTask, GetDevice) over real HTTP. It honours
``clientToken`` (the same token and request name the task already created; the same token with
another request is refused), runs every task at once with Braket's local simulator (the
simulator ``LocalSimulator`` runs), writes the result files to a real S3 API (moto's server),
and keeps a log of every call. Program sets are checked against the device's limits and their
results written as separate files (results, metadata, one per program, one per executable)
that the result document names by relative key; ``split_results=False`` writes them inline.

``hold=True`` (or :meth:`BraketStandIn.hold`) keeps every task created meanwhile QUEUED, its
results written but not announced, until :meth:`BraketStandIn.release`: a test then knows the
tasks are waiting in the queue, with no clock involved.

Point boto3 at both with ``AWS_ENDPOINT_URL_BRAKET`` and ``AWS_ENDPOINT_URL_S3``.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
from braket.default_simulator import DensityMatrixSimulator, StateVectorSimulator
from braket.devices import LocalSimulator
from braket.ir.openqasm import Program, ProgramSet
from braket.schema_common import BraketSchemaBase
from braket.task_result import GateModelTaskResult, ProgramSetTaskResult, ResultTypeValue
from braket.tasks import GateModelQuantumTaskResult
from moto.server import ThreadedMotoServer

#: Credentials both servers accept (neither checks signatures).
ACCESS_KEY = "AKIDSTANDIN"
SECRET_KEY = "stand-in-secret"

PROGRAM_SET_ACTION = "braket.ir.openqasm.program_set"

#: The simulators ``LocalSimulator("braket_sv")`` and ``LocalSimulator("braket_dm")`` run.
SIMULATORS = {"braket_sv": StateVectorSimulator, "braket_dm": DensityMatrixSimulator}


@dataclass(frozen=True)
class Call:
    """One request to the stand-in. ``created``: CreateQuantumTask made a new task (False when
    the client token named an existing one, or the call was refused)."""

    operation: str
    arn: str = ""
    client_token: str = ""
    created: bool = False


@dataclass
class StandInTask:
    """A task the stand-in created."""

    arn: str
    client_token: str
    request: dict[str, Any]
    directory: str
    action_type: str
    programs: int = 1
    executables: int = 1
    status: str = "COMPLETED"


@dataclass
class BraketStandIn:
    """The Braket API for one device on ``127.0.0.1``, writing results through ``s3_endpoint``.

    ``program_sets``: whether the device takes program sets (limits from the local simulator's
    capabilities, ``max_executables`` overriding its maximum). ``status``, when set, is what
    every task reports instead of COMPLETED (with ``failure_reason`` for FAILED);
    ``create_error`` ``(HTTP status, error code)`` refuses every CreateQuantumTask.
    ``hold``: tasks created while it is set stay QUEUED until :meth:`release`.
    GetDevice says ``device_status``, with ``queue_info`` as its ``deviceQueueInfo`` (none when
    None) and ``execution_windows`` as its capabilities' ``service.executionWindows`` (the
    local simulator's when None).
    """

    s3_endpoint: str
    device_arn: str
    program_sets: bool = True
    max_executables: int | None = None
    backend: str = "braket_sv"
    region: str = "us-west-2"
    split_results: bool = True
    status: str | None = None
    failure_reason: str = ""
    create_error: tuple[int, str] | None = None
    hold: bool = False
    device_status: str = "ONLINE"
    queue_info: list[dict[str, str]] | None = None
    execution_windows: list[dict[str, str]] | None = None
    calls: list[Call] = field(default_factory=list)
    tasks: dict[str, StandInTask] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _s3: Any = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> BraketStandIn:
        """Serve on a free loopback port (once: a started stand-in stays as it is)."""
        if self._server is not None:
            return self
        self._s3 = boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name=self.region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        handler = type("Handler", (_Handler,), {"stand_in": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; safe to call twice."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> BraketStandIn:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The endpoint, for ``AWS_ENDPOINT_URL_BRAKET``."""
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- what tests read -------------------------------------------------------------------

    def log(self, operation: str) -> list[Call]:
        """The calls of one operation, in order."""
        with self._lock:
            return [c for c in self.calls if c.operation == operation]

    def created(self) -> list[StandInTask]:
        """The tasks created, in order."""
        with self._lock:
            return list(self.tasks.values())

    def snapshot(self) -> list[Call]:
        """Every call so far, in order."""
        with self._lock:
            return list(self.calls)

    def hold_tasks(self) -> None:
        """From now on, tasks stay QUEUED until :meth:`release`."""
        with self._lock:
            self.hold = True

    def release(self) -> list[str]:
        """End the hold: every held task that is still QUEUED completes (its results were
        written when it was created). Returns their ARNs."""
        with self._lock:
            self.hold = False
            released = [t.arn for t in self.tasks.values() if t.status == "QUEUED"]
            for arn in released:
                self.tasks[arn].status = "COMPLETED"
        return released

    # -- the API ---------------------------------------------------------------------------

    def capabilities(self) -> dict[str, Any]:
        """The device's capabilities: the local simulator's, with or without program sets."""
        capabilities: dict[str, Any] = json.loads(LocalSimulator(self.backend).properties.json())
        if not self.program_sets:
            capabilities["action"].pop(PROGRAM_SET_ACTION, None)
        elif self.max_executables is not None:
            capabilities["action"][PROGRAM_SET_ACTION]["maximumExecutables"] = self.max_executables
        if self.execution_windows is not None:
            capabilities["service"]["executionWindows"] = self.execution_windows
        return capabilities

    def get_device(self, arn: str) -> tuple[int, dict[str, Any]]:
        """GetDevice."""
        self._record(Call("GetDevice", arn))
        if arn != self.device_arn:
            return _error(404, "ResourceNotFoundException", f"no device {arn}")
        device: dict[str, Any] = {
            "deviceArn": self.device_arn,
            "deviceName": "stand-in",
            "deviceType": "SIMULATOR",
            "deviceStatus": self.device_status,
            "providerName": "Amazon Braket",
            "deviceCapabilities": json.dumps(self.capabilities()),
        }
        if self.queue_info is not None:
            device["deviceQueueInfo"] = self.queue_info
        return 200, device

    def create_quantum_task(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """CreateQuantumTask: the token's task when the token was seen with this request,
        else a new task, run at once."""
        token = str(body.get("clientToken", ""))
        with self._lock:
            if self.create_error is not None:
                self.calls.append(Call("CreateQuantumTask", client_token=token))
                return _error(*self.create_error, f"{self.create_error[1]} (stand-in)")
            if token in self._tokens:
                task = self.tasks[self._tokens[token]]
                self.calls.append(Call("CreateQuantumTask", task.arn, token))
                if task.request != body:
                    return _error(
                        400, "ValidationException", f"client token {token} names another request"
                    )
                return 201, {"quantumTaskArn": task.arn}
            if body.get("deviceArn") != self.device_arn:
                self.calls.append(Call("CreateQuantumTask", client_token=token))
                return _error(400, "ValidationException", f"no device {body.get('deviceArn')}")
            try:
                task = self._run(token, body)
            except ValueError as exc:
                self.calls.append(Call("CreateQuantumTask", client_token=token))
                return _error(400, "ValidationException", str(exc))
            if self.hold:
                task.status = "QUEUED"
            self.tasks[task.arn] = task
            self._tokens[token] = task.arn
            self.calls.append(Call("CreateQuantumTask", task.arn, token, created=True))
            return 201, {"quantumTaskArn": task.arn}

    def get_quantum_task(self, arn: str) -> tuple[int, dict[str, Any]]:
        """GetQuantumTask."""
        self._record(Call("GetQuantumTask", arn))
        with self._lock:
            task = self.tasks.get(arn)
        if task is None:
            return _error(404, "ResourceNotFoundException", f"no task {arn}")
        held = task.status in ("CANCELLED", "QUEUED")
        status = task.status if held else (self.status or task.status)
        action: dict[str, Any] = {"actionType": task.action_type}
        if task.action_type == PROGRAM_SET_ACTION:
            action |= {"programCount": task.programs, "executableCount": task.executables}
        return 200, {
            "quantumTaskArn": arn,
            "status": status,
            "deviceArn": task.request["deviceArn"],
            "deviceParameters": task.request.get("deviceParameters", "{}"),
            "shots": task.request["shots"],
            "outputS3Bucket": task.request["outputS3Bucket"],
            "outputS3Directory": task.directory,
            "createdAt": "2026-01-01T00:00:00Z",
            "failureReason": self.failure_reason if status == "FAILED" else "",
            "actionMetadata": action,
        }

    def cancel_quantum_task(self, arn: str) -> tuple[int, dict[str, Any]]:
        """CancelQuantumTask."""
        self._record(Call("CancelQuantumTask", arn))
        with self._lock:
            task = self.tasks.get(arn)
            if task is None:
                return _error(404, "ResourceNotFoundException", f"no task {arn}")
            held = task.status in ("CANCELLED", "QUEUED")
            if (task.status if held else (self.status or task.status)) in ("COMPLETED", "FAILED"):
                return _error(409, "ConflictException", f"task {arn} has ended")
            task.status = "CANCELLED"
        return 200, {"quantumTaskArn": arn, "cancellationStatus": "CANCELLING"}

    # -- running tasks ---------------------------------------------------------------------

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _run(self, token: str, body: dict[str, Any]) -> StandInTask:
        """Run the task's action on the local simulator and write its results to S3."""
        task_id = str(uuid.uuid4())
        arn = f"arn:aws:braket:{self.region}:123456789012:quantum-task/{task_id}"
        directory = f"{body['outputS3KeyPrefix']}/{task_id}"
        bucket = body["outputS3Bucket"]
        action = BraketSchemaBase.parse_raw_schema(body["action"])
        simulator = SIMULATORS[self.backend]()
        shots = int(body["shots"])
        if isinstance(action, ProgramSet):
            self._check_program_set(action, shots)
            result = simulator.run(action, shots=shots)
            assert isinstance(result, ProgramSetTaskResult)
            result.taskMetadata.id = arn
            self._write_program_set(bucket, directory, result)
            return StandInTask(
                arn,
                token,
                body,
                directory,
                PROGRAM_SET_ACTION,
                programs=action.num_programs,
                executables=action.num_executables,
            )
        if not isinstance(action, Program):
            raise ValueError(f"unsupported action {type(action).__name__}")
        gate_model = simulator.run(action, shots=shots)
        assert isinstance(gate_model, GateModelTaskResult)
        gate_model.taskMetadata.id = arn
        if not gate_model.measurements:  # the service leaves them out when nothing was sampled
            gate_model.measurements = None
        elif gate_model.resultTypes:
            # Sampled, the simulator names the result types and leaves their values to the
            # SDK; the service writes the values, computed from the measurements.
            sampled = GateModelQuantumTaskResult.from_object(gate_model)
            gate_model.resultTypes = [
                ResultTypeValue(type=r.type, value=r.value) for r in sampled.result_types
            ]
        self._put(bucket, f"{directory}/results.json", gate_model.dict(exclude_none=True))
        return StandInTask(arn, token, body, directory, "braket.ir.openqasm.program")

    def _check_program_set(self, program_set: ProgramSet, shots: int) -> None:
        limits = self.capabilities()["action"].get(PROGRAM_SET_ACTION)
        if limits is None:
            raise ValueError("this device does not take program sets")
        executables = program_set.num_executables
        if executables > limits["maximumExecutables"]:
            raise ValueError(f"{executables} executables; at most {limits['maximumExecutables']}")
        if shots > limits["maximumTotalShots"]:
            raise ValueError(f"{shots} shots; at most {limits['maximumTotalShots']}")
        if shots == 0 or shots % executables:
            raise ValueError(f"{shots} shots do not divide into {executables} executables")

    def _write_program_set(self, bucket: str, directory: str, result: ProgramSetTaskResult) -> None:
        if not self.split_results:
            self._put(bucket, f"{directory}/results.json", result.dict(exclude_none=True))
            return
        program_keys = []
        for p, program in enumerate(result.programResults):
            assert not isinstance(program, str)
            folder = f"programs/{p}"
            executable_keys = []
            for e, executable in enumerate(program.executableResults):
                assert not isinstance(executable, str)
                key = f"executables/{e}.json"
                self._put(bucket, f"{directory}/{folder}/{key}", executable.dict(exclude_none=True))
                executable_keys.append(key)
            document = program.dict(exclude_none=True) | {"executableResults": executable_keys}
            self._put(bucket, f"{directory}/{folder}/results.json", document)
            program_keys.append(f"{folder}/results.json")
        metadata = result.taskMetadata
        assert not isinstance(metadata, str)
        self._put(bucket, f"{directory}/task-metadata.json", metadata.dict(exclude_none=True))
        document = result.dict(exclude_none=True) | {
            "programResults": program_keys,
            "taskMetadata": "task-metadata.json",
            "s3Location": [bucket, directory],
        }
        self._put(bucket, f"{directory}/results.json", document)

    def _put(self, bucket: str, key: str, document: dict[str, Any]) -> None:
        self._s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(document, default=_plain))


def _plain(value: Any) -> Any:
    """numpy arrays and scalars in a result document, as JSON."""
    return value.tolist()


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"__type": code, "message": message}


class _Handler(BaseHTTPRequestHandler):
    """Routes Braket's REST paths to the stand-in."""

    stand_in: BraketStandIn

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        """Requests are in the stand-in's log, not on stderr."""

    def do_GET(self) -> None:
        """GetDevice, GetQuantumTask."""
        parts = self._parts()
        if len(parts) == 2 and parts[0] == "device":
            self._answer(*self.stand_in.get_device(parts[1]))
        elif len(parts) == 2 and parts[0] == "quantum-task":
            self._answer(*self.stand_in.get_quantum_task(parts[1]))
        else:
            self._answer(*_error(404, "UnknownOperationException", self.path))

    def do_POST(self) -> None:
        """CreateQuantumTask."""
        if self._parts() == ["quantum-task"]:
            self._answer(*self.stand_in.create_quantum_task(self._body()))
        else:
            self._answer(*_error(404, "UnknownOperationException", self.path))

    def do_PUT(self) -> None:
        """CancelQuantumTask."""
        parts = self._parts()
        if len(parts) == 3 and parts[0] == "quantum-task" and parts[2] == "cancel":
            self._body()
            self._answer(*self.stand_in.cancel_quantum_task(parts[1]))
        else:
            self._answer(*_error(404, "UnknownOperationException", self.path))

    def _parts(self) -> list[str]:
        """The path's segments, each decoded (an ARN travels as one encoded segment)."""
        path = urlsplit(self.path).path
        return [unquote(p) for p in path.strip("/").split("/")]

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b"{}"
        body: dict[str, Any] = json.loads(data or b"{}")
        return body

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400:
            self.send_header("x-amzn-ErrorType", str(body["__type"]))
        self.end_headers()
        self.wfile.write(data)


def use_loopback_aws(
    monkeypatch: Any,
    tmp_path: Any,
    s3_endpoint: str,
    braket_endpoint: str | None = None,
    *,
    max_attempts: int | None = 1,
) -> None:
    """Point boto3 at the loopback servers with their credentials (``monkeypatch``: pytest's),
    and keep this machine's AWS setup out (``tmp_path``: where empty config files go). Also
    for the children a stack starts, which inherit the environment. ``max_attempts`` 1: errors
    come back at once (None: botocore's retries)."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "BRAKET_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        empty = tmp_path / name.lower()
        empty.write_text("")
        monkeypatch.setenv(name, str(empty))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    if max_attempts is not None:
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", str(max_attempts))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    if braket_endpoint is not None:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BRAKET", braket_endpoint)


@contextmanager
def moto_s3(bucket: str, region: str = "us-west-2") -> Iterator[str]:
    """moto's server on a free loopback port, with ``bucket`` created; yields its endpoint."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        try:
            if region == "us-east-1":
                s3.create_bucket(Bucket=bucket)
            else:
                s3.create_bucket(
                    Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
                )
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass  # moto keeps its state in the process: an earlier server made it
        yield endpoint
    finally:
        server.stop()
