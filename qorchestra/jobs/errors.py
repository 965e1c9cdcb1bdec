"""How a job is refused: every field at fault, each with its reason (422 over HTTP)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Fail(Protocol):
    """Records one refusal: ``fail("programs", 0, "source", msg="...")``."""

    def __call__(self, *loc: str | int, msg: str) -> None: ...


@dataclass(frozen=True)
class FieldError:
    """One reason a job is refused: where (a path into the request body) and why."""

    loc: tuple[str | int, ...]
    msg: str


class SpecError(ValueError):
    """The job is not valid; ``errors`` names every field at fault."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))
        self.errors = errors
