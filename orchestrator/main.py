"""Entry point of the orchestrator process."""

from __future__ import annotations

import signal
from types import FrameType

from orchestrator.service import Orchestrator
from qorchestra.config import Settings
from qorchestra.heap import freeze_startup_heap
from qorchestra.metrics import serve_metrics


def run_orchestrator(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; in-flight transactions finish, offsets are committed."""
    orchestrator = Orchestrator(settings)
    serve_metrics(settings.metrics_port)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        orchestrator.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    freeze_startup_heap()
    orchestrator.run()
    return 0
