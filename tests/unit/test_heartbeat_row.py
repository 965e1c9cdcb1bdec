"""A heartbeat's times must not lie in the future (beyond a small clock skew): a node row keeps
only heartbeats at least as new as the one it holds, so one dated in year 9999 would pin it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.service import HEARTBEAT_MAX_SKEW, _heartbeat_row
from proto.qorch.v1 import nodes_pb2

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _beat(sent: datetime, started: datetime | None = None) -> nodes_pb2.Heartbeat:
    beat = nodes_pb2.Heartbeat(node_id="n1", pool="local-sv", pid=42)
    beat.sent_at.FromDatetime(sent)
    beat.started_at.FromDatetime(started or sent - timedelta(hours=1))
    return beat


@pytest.mark.parametrize(
    "sent",
    [NOW, NOW - timedelta(days=3), NOW + timedelta(minutes=1), NOW + HEARTBEAT_MAX_SKEW],
)
def test_heartbeats_up_to_the_skew_ahead_are_kept(sent: datetime) -> None:
    row = _heartbeat_row(_beat(sent), now=NOW)
    assert row["last_heartbeat_at"] == sent


@pytest.mark.parametrize(
    "sent",
    [
        NOW + HEARTBEAT_MAX_SKEW + timedelta(seconds=1),
        NOW + timedelta(days=1),
        datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
    ],
)
def test_heartbeats_sent_further_ahead_are_refused(sent: datetime) -> None:
    with pytest.raises(ValueError, match=r"sent_at .* is in the future"):
        _heartbeat_row(_beat(sent), now=NOW)


def test_a_start_in_the_future_is_refused_too() -> None:
    beat = _beat(NOW, started=datetime(9999, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match=r"started_at .* is in the future"):
        _heartbeat_row(beat, now=NOW)


def test_the_clock_is_the_default() -> None:
    assert _heartbeat_row(_beat(datetime.now(UTC)))["id"] == "n1"
    with pytest.raises(ValueError, match="in the future"):
        _heartbeat_row(_beat(datetime.now(UTC) + timedelta(hours=1)))
