"""Structured logging for every qorchestra process.

Context such as ``job_id`` or ``fragment_id`` goes in ``extra={...}`` and is printed as
``key=value`` pairs (or as JSON fields with ``QORCH_LOG_JSON=true``).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from qorchestra.apikeys import redact

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool, service: str) -> None:
        super().__init__()
        self._json = as_json
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        # Secrets never reach a log line: keys show their prefix, URL passwords and
        # password-like settings read ***; each part first, then the line it makes up.
        message = redact(message)
        extra = {k: redact(v) if isinstance(v, str) else v for k, v in extra.items()}
        if self._json:
            doc: dict[str, Any] = {
                "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                "level": record.levelname,
                "service": self._service,
                "logger": record.name,
                "msg": message,
                **extra,
            }
            return redact(json.dumps(doc, default=str))
        context = " ".join(f"{k}={v}" for k, v in extra.items())
        ts = self.formatTime(record, "%H:%M:%S")
        line = f"{ts} {record.levelname:<7} {self._service} {record.name}: {message} {context}"
        return redact(line.rstrip())


def configure_logging(service: str, level: str = "INFO", as_json: bool = False) -> None:
    """Send log records of every library to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(as_json, service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "urllib3", "numba", "alembic.runtime.migration", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
