"""``python -m nodes --pool local-sv``: one node agent, configured from ``QORCH_*`` env vars."""

from __future__ import annotations

import argparse

from nodes.main import run_agent
from qorchestra.config import get_settings
from qorchestra.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, configure logging, run the agent."""
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m nodes", description=__doc__)
    parser.add_argument("--pool", default=settings.node_pool, help="device pool to serve")
    args = parser.parse_args(argv)
    configure_logging("node", settings.log_level, settings.log_json)
    return run_agent(args.pool, settings)


if __name__ == "__main__":
    raise SystemExit(main())
