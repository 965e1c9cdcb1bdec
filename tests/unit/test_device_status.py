"""What a heartbeat may say of its device (issue 16, "Queue-aware pools"): the values are
untrusted, so each is checked (known status and days, bounded counts and times, an observation
that is not in the future); the windows say when the device takes work; and a job that names
several pools starts on the first that is online."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.service import _heartbeat_row
from proto.qorch.v1 import nodes_pb2
from qorchestra.device_status import (
    MAX_QUEUE,
    MAX_WINDOWS,
    DeviceStatus,
    Window,
    device_message,
    device_row,
    queue_count,
    takes_work,
    within_windows,
)
from qorchestra.pool_choice import first_online

#: A Thursday.
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def at(weekday: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A time in the week of NOW (Monday = 0)."""
    monday = NOW - timedelta(days=NOW.weekday())
    return monday.replace(hour=hour, minute=minute, second=second) + timedelta(days=weekday)


def test_a_window_covers_its_days_and_hours() -> None:
    weekdays = Window("Weekdays", 9 * 3600, 17 * 3600 + 1800)
    assert weekdays.covers(at(0, 9)) and weekdays.covers(at(4, 17, 29, 59))
    assert not weekdays.covers(at(4, 17, 30)) and not weekdays.covers(at(0, 8, 59, 59))
    assert not weekdays.covers(at(5, 12)) and not weekdays.covers(at(6, 12))


def test_a_window_past_midnight_ends_the_next_day() -> None:
    saturday_night = Window("Saturday", 22 * 3600, 2 * 3600)
    assert saturday_night.covers(at(5, 22)) and saturday_night.covers(at(6, 1, 59))
    assert not saturday_night.covers(at(6, 2)) and not saturday_night.covers(at(5, 21, 59))
    assert not saturday_night.covers(at(6, 22)) and not saturday_night.covers(at(0, 1))


def test_all_day_as_braket_writes_it_covers_the_last_second_too() -> None:
    everyday = Window("Everyday", 0, 23 * 3600 + 59 * 60 + 59)
    assert all(everyday.covers(at(d, 23, 59, 59)) and everyday.covers(at(d, 0)) for d in range(7))
    assert within_windows([], at(6, 3))  # no windows: always


def beat(device: nodes_pb2.DeviceState | None) -> nodes_pb2.Heartbeat:
    message = nodes_pb2.Heartbeat(node_id="n1", pool="aws-garnet", pid=42)
    message.sent_at.FromDatetime(NOW)
    message.started_at.FromDatetime(NOW - timedelta(hours=1))
    if device is not None:
        message.device.CopyFrom(device)
    return message


def test_a_heartbeat_keeps_what_its_device_said() -> None:
    device = device_message(
        "OFFLINE",
        queue=(13, 4000, 1),
        windows=[Window("Weekdays", 9 * 3600, 17 * 3600)],
        observed_at=NOW - timedelta(seconds=30),
    )
    row = _heartbeat_row(beat(device), now=NOW)
    assert row["device"] == {
        "status": "OFFLINE",
        "queue": {"tasks": 13, "priority_tasks": 4000, "jobs": 1},
        "windows": [{"day": "Weekdays", "start_s": 32400, "end_s": 61200}],
        "observed_at": (NOW - timedelta(seconds=30)).isoformat(),
    }
    status = DeviceStatus.of(row["device"])
    assert not status.takes_work(NOW) and status.why_not(NOW) == "device OFFLINE"
    assert _heartbeat_row(beat(None), now=NOW)["device"] is None
    assert takes_work(None, NOW)


def _offline(**fields: object) -> nodes_pb2.DeviceState:
    device = device_message("ONLINE", queue=(0, 0, 0), observed_at=NOW)
    for name, value in fields.items():
        setattr(device, name, value)
    return device


@pytest.mark.parametrize(
    ("device", "reason"),
    [
        (_offline(status="MAYBE"), "device status 'MAYBE'"),
        (_offline(status="x" * 10_000), "device status 'xxxx"),
        (_offline(queue_tasks=MAX_QUEUE + 1), "queue depth above"),
        (device_message("ONLINE", windows=[Window("Someday", 0, 60)]), "not a Braket day"),
        (device_message("ONLINE", windows=[Window("Monday", 0, 90_000)]), "past the end of"),
        (
            device_message("ONLINE", windows=[Window("Monday", 0, 60)] * (MAX_WINDOWS + 1)),
            "execution windows; at most",
        ),
        (
            device_message("ONLINE", observed_at=datetime(9999, 1, 1, tzinfo=UTC)),
            "in the future",
        ),
    ],
    ids=["status", "long status", "queue", "day", "hour", "windows", "observed"],
)
def test_a_device_that_cannot_be_true_refuses_the_heartbeat(
    device: nodes_pb2.DeviceState, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        _heartbeat_row(beat(device), now=NOW)


def test_an_empty_device_is_no_device() -> None:
    assert device_row(nodes_pb2.DeviceState(), NOW) is None


def test_a_window_outside_now_keeps_a_device_from_work() -> None:
    row = device_row(
        device_message("ONLINE", windows=[Window("Weekend", 0, 86_399)]), NOW + timedelta(1)
    )
    assert row is not None
    status = DeviceStatus.of(row)
    assert status.why_not(NOW) == "outside the device's execution windows"  # a Thursday
    assert status.takes_work(at(5, 12))


@pytest.mark.parametrize(
    ("text", "count"),
    [("13", 13), (">4000", 4000), ("0 (1 prioritized job(s) running)", 0), (" 7 ", 7)],
)
def test_queue_sizes_read_as_braket_writes_them(text: str, count: int) -> None:
    assert queue_count(text) == count


def test_a_queue_size_without_a_number_is_refused() -> None:
    with pytest.raises(ValueError, match="not a queue size"):
        queue_count("many")


def test_the_first_online_pool_is_chosen_with_why_the_others_were_not() -> None:
    availability = {"aws-ankaa3": "device OFFLINE", "aws-garnet": None, "local-sv": None}
    chosen, skipped = first_online(
        ["aws-ankaa3", "aws-forte", "aws-garnet", "local-sv"], availability, "no live agent"
    )
    assert chosen == "aws-garnet"
    assert skipped == {"aws-ankaa3": "device OFFLINE", "aws-forte": "no live agent"}
    assert first_online(["aws-forte"], availability, "no live agent") == (
        None,
        {"aws-forte": "no live agent"},
    )
