"""Checks on a program's text that need no parser, shared by the API and the node agents
(``nodes/`` imports nothing from the orchestrator, so they live here)."""

from __future__ import annotations

_OPENERS = frozenset("([{")
_CLOSERS = frozenset(")]}")


def nesting_depth(source: str) -> int:
    """The deepest nesting of parentheses, brackets and braces in ``source`` (comments
    included: a cheap, conservative bound checked before any parser sees the program)."""
    depth = deepest = 0
    for char in source:
        if char in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif char in _CLOSERS:
            depth = max(0, depth - 1)
    return deepest
