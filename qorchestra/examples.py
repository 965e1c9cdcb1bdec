"""The example jobs: one copy each, in ``examples/`` at the top of the tree.

The OpenAPI docs show them, the guides quote them, the demo and the benches run them and the
tests validate them, all from these files. ``examples/`` is found by path beside this package
(as ``migrations/`` is), in a checkout and in an installed wheel alike.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import yaml

#: The folder of example job specs (JSON or YAML, one job each).
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"

_lock = threading.Lock()
_loaded: dict[str, dict[str, Any]] = {}


def example(name: str) -> dict[str, Any]:
    """The job spec in ``examples/<name>.json`` (or ``.yaml``), as a fresh dict the caller may
    change. Raises FileNotFoundError for an unknown name."""
    with _lock:
        spec = _loaded.get(name)
        if spec is None:
            path = EXAMPLES_DIR / f"{name}.json"
            if not path.exists():
                path = EXAMPLES_DIR / f"{name}.yaml"
            spec = _loaded[name] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return copy.deepcopy(spec)
