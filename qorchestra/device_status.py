"""A device's status, queue depth and availability windows, as its agents report them in their
heartbeats, and whether the device takes work now (pure: no I/O).

An agent of an ``aws-*`` pool reads them from Braket (GetDevice: ``deviceStatus``,
``deviceQueueInfo``, ``properties.service.executionWindows``); an agent of an ``emu-*`` pool
reports its emulated queue; the local simulators report nothing. Heartbeats are untrusted:
:func:`device_row` checks every value (known status and days, bounded counts, times of day
within a day, at most ``MAX_WINDOWS`` windows, an observation time that is not in the future)
and raises ValueError for anything else. What it returns is what the store keeps per node
(``nodes.device``), and what :func:`takes_work` and the API read back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from proto.qorch.v1 import nodes_pb2

#: Braket's device statuses.
STATUSES = frozenset({"ONLINE", "OFFLINE", "RETIRED"})
#: Statuses of a device that takes no work.
UNAVAILABLE = frozenset({"OFFLINE", "RETIRED"})
#: Braket's ``executionDay`` values, and the weekdays (Monday = 0) each one covers.
DAYS: dict[str, frozenset[int]] = {
    "Everyday": frozenset(range(7)),
    "Weekdays": frozenset(range(5)),
    "Weekend": frozenset({5, 6}),
    "Monday": frozenset({0}),
    "Tuesday": frozenset({1}),
    "Wednesday": frozenset({2}),
    "Thursday": frozenset({3}),
    "Friday": frozenset({4}),
    "Saturday": frozenset({5}),
    "Sunday": frozenset({6}),
}
#: Most windows a heartbeat may carry (real devices list one to a few).
MAX_WINDOWS = 28
#: Largest queue depth a heartbeat may report (Braket shows more than 4000 as ">4000").
MAX_QUEUE = 1_000_000
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Window:
    """When a device runs tasks: on ``day`` (a key of ``DAYS``), from ``start_s`` to ``end_s``
    seconds after midnight UTC; a window whose end is at or before its start ends the next
    day."""

    day: str
    start_s: int
    end_s: int

    def covers(self, at: datetime) -> bool:
        """Whether ``at`` falls in this window. An end at 23:59:59, as Braket writes "until
        midnight", covers that last second too."""
        at = at.astimezone(UTC)
        second = at.hour * 3600 + at.minute * 60 + at.second
        days = DAYS[self.day]
        end = SECONDS_PER_DAY if self.end_s >= SECONDS_PER_DAY - 1 else self.end_s
        if self.start_s < end:
            return at.weekday() in days and self.start_s <= second < end
        # Past midnight: the evening of a covered day, or the morning after one.
        yesterday = (at - timedelta(days=1)).weekday()
        return (at.weekday() in days and second >= self.start_s) or (
            yesterday in days and second < self.end_s
        )


def within_windows(windows: Iterable[Window], at: datetime) -> bool:
    """Whether ``at`` falls in one of ``windows``; no windows at all means always."""
    listed = list(windows)
    return not listed or any(w.covers(at) for w in listed)


def seconds_after_midnight(at: time) -> int:
    """A time of day (Braket's ``windowStartHour`` / ``windowEndHour``) in seconds."""
    return at.hour * 3600 + at.minute * 60 + at.second


def queue_count(value: object) -> int:
    """A queue size as Braket writes it (``"13"``, ``">4000"``,
    ``"0 (1 prioritized job(s) running)"``) as a number: its leading digits."""
    text = str(value).strip().lstrip(">").strip()
    digits = text[: len(text) - len(text.lstrip("0123456789"))]
    if not digits:
        raise ValueError(f"not a queue size: {value!r}")
    return min(int(digits), MAX_QUEUE)


def device_row(message: nodes_pb2.DeviceState, latest: datetime) -> dict[str, Any] | None:
    """What the store keeps of a heartbeat's ``device``: None when the heartbeat has none;
    ValueError for a value that cannot be true (untrusted input). ``latest`` is the latest
    observation time believed (the clock, plus the heartbeat's allowance for skew)."""
    if not message.status and not message.windows and not message.queue_known:
        return None
    if message.status not in STATUSES:
        raise ValueError(f"device status {message.status[:32]!r} is not one of {sorted(STATUSES)}")
    if len(message.windows) > MAX_WINDOWS:
        raise ValueError(f"{len(message.windows)} execution windows; at most {MAX_WINDOWS}")
    windows = []
    for window in message.windows:
        if window.day not in DAYS:
            raise ValueError(f"execution window day {window.day[:32]!r} is not a Braket day")
        if window.start_s > SECONDS_PER_DAY or window.end_s > SECONDS_PER_DAY:
            raise ValueError("execution window time past the end of a day")
        windows.append({"day": window.day, "start_s": window.start_s, "end_s": window.end_s})
    queue = None
    if message.queue_known:
        counts = (message.queue_tasks, message.queue_priority_tasks, message.queue_jobs)
        if max(counts) > MAX_QUEUE:
            raise ValueError(f"device queue depth above {MAX_QUEUE}")
        queue = dict(zip(("tasks", "priority_tasks", "jobs"), counts, strict=True))
    observed = None
    if message.HasField("observed_at"):
        try:
            observed = message.observed_at.ToDatetime(UTC)
        except (ValueError, OverflowError, OSError) as exc:
            raise ValueError(f"device observed at an impossible time: {exc}") from exc
        if observed > latest:
            raise ValueError(f"device observed at {observed.isoformat()}, in the future")
    return {
        "status": message.status,
        "queue": queue,
        "windows": windows,
        "observed_at": observed.isoformat() if observed else None,
    }


@dataclass(frozen=True)
class DeviceStatus:
    """A stored device report (:func:`device_row`), read back."""

    status: str
    queue: Mapping[str, int] | None
    windows: tuple[Window, ...]
    observed_at: datetime | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> DeviceStatus:
        """The report of a stored ``nodes.device`` value."""
        observed = row.get("observed_at")
        return cls(
            status=str(row.get("status", "")),
            queue=row.get("queue"),
            windows=tuple(
                Window(str(w["day"]), int(w["start_s"]), int(w["end_s"]))
                for w in row.get("windows") or []
            ),
            observed_at=datetime.fromisoformat(observed) if observed else None,
        )

    def takes_work(self, at: datetime) -> bool:
        """Whether the device runs tasks at ``at``: not OFFLINE or RETIRED, and within one of
        its windows (if it has any)."""
        return self.status not in UNAVAILABLE and within_windows(self.windows, at)

    def why_not(self, at: datetime) -> str | None:
        """Why the device takes no work at ``at`` (None when it does)."""
        if self.status in UNAVAILABLE:
            return f"device {self.status}"
        if not within_windows(self.windows, at):
            return "outside the device's execution windows"
        return None


def takes_work(row: Mapping[str, Any] | None, at: datetime) -> bool:
    """Whether an agent whose latest heartbeat reported ``row`` (None: nothing, as the local
    simulators) serves a device that runs tasks at ``at``."""
    return row is None or DeviceStatus.of(row).takes_work(at)


def device_message(
    status: str,
    *,
    queue: tuple[int, int, int] | None = None,
    windows: Iterable[Window] = (),
    observed_at: datetime | None = None,
) -> nodes_pb2.DeviceState:
    """The heartbeat's ``device`` for what an agent saw (``queue``: normal tasks, priority
    tasks, hybrid jobs)."""
    message = nodes_pb2.DeviceState(
        status=status,
        windows=[
            nodes_pb2.ExecutionWindow(day=w.day, start_s=w.start_s, end_s=w.end_s) for w in windows
        ],
    )
    if queue is not None:
        message.queue_known = True
        message.queue_tasks, message.queue_priority_tasks, message.queue_jobs = queue
    if observed_at is not None:
        message.observed_at.FromDatetime(observed_at.astimezone(UTC))
    return message
