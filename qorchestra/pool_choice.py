"""The pool a job names, or the pools it names in order of preference (every submitted kind).

A request's ``pool`` is one pool (``"local-sv"``) or a list of them
(``["aws-ankaa3", "aws-garnet"]``). Either way the job holds the list (``pools``) and writes it
back as it was given: a string for one pool. ``pool`` on the job is the first of them. The
orchestrator starts a job that names several pools on the first one that is online when it
plans the job (docs/jobs.md, "Several pools"); the API checks the job against every pool it
names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer

#: What a pool's name looks like.
POOL_NAME = re.compile(r"^(local-sv|local-dm|(aws|emu)-[a-z0-9][a-z0-9-]*)$")
#: Most pools one job may name.
MAX_POOLS = 8


def _pool_name(value: str) -> str:
    if not POOL_NAME.match(value):
        raise ValueError("pool must be local-sv, local-dm, aws-<device> or emu-<profile>")
    return value


def _as_list(value: Any) -> Any:
    """One pool as a list of one; anything else as it is (a list, or a type error to come)."""
    return [value] if isinstance(value, str) else value


def _named_as_list(value: Any) -> Any:
    """``_as_list``, checking one pool's name here, so that its error names ``pool`` itself."""
    return [_pool_name(value)] if isinstance(value, str) else value


def _distinct(value: list[str]) -> list[str]:
    seen: set[str] = set()
    for name in value:
        if name in seen:
            raise ValueError(f"pool {name} is named twice")
        seen.add(name)
    return value


def _as_given(value: list[str]) -> str | list[str]:
    """How a job writes its pools back: one pool as a string, several as a list."""
    return value[0] if len(value) == 1 else list(value)


#: One pool's name.
PoolName = Annotated[str, AfterValidator(_pool_name)]

#: A circuits job's ``pool`` field: one pool, or 1 to ``MAX_POOLS`` distinct pools in order of
#: preference, each named like ``POOL_NAME``; held as a list, written back as given.
PoolChoice = Annotated[
    list[PoolName],
    BeforeValidator(_named_as_list, json_schema_input_type=str | list[str]),
    AfterValidator(_distinct),
    PlainSerializer(_as_given, return_type=str | list[str]),
]

#: A training kind's ``pool`` field: as ``PoolChoice``, but any name (such a job may run on a
#: pool of any name the platform knows: the API checks that each is known).
AnyPoolChoice = Annotated[
    list[str],
    BeforeValidator(_as_list, json_schema_input_type=str | list[str]),
    AfterValidator(_distinct),
    PlainSerializer(_as_given, return_type=str | list[str]),
]

#: What the ``pool`` field says, for every kind.
POOL_DESCRIPTION = (
    "Device pool: `local-sv` (state vector), `local-dm` (density matrix), an AWS pool such as "
    "`aws-sv1`, or an emulated device such as `emu-garnet`. Or a list of 1 to "
    f'{MAX_POOLS} of them in order of preference, e.g. `["aws-ankaa3", "aws-garnet"]`: the '
    "job runs on the first that is online when the orchestrator starts it (a live agent, its "
    "device not OFFLINE or RETIRED and within its execution windows) and whose cost estimate "
    "fits `max_cost_usd`; it waits, QUEUED, while none is."
)


def pool_field() -> Any:
    """The ``pool`` field of a job model: held in the model's ``pools`` (alias ``pool``),
    ``local-sv`` by default."""
    return Field(
        ["local-sv"],
        alias="pool",
        min_length=1,
        max_length=MAX_POOLS,
        description=POOL_DESCRIPTION,
        json_schema_extra={"default": "local-sv"},
    )


def first_online(
    pools: Sequence[str], availability: Mapping[str, str | None], absent: str
) -> tuple[str | None, dict[str, str]]:
    """The first of ``pools`` that is online, and why each one before it is not.

    ``availability`` maps a pool to None when it is online, else to why not; a pool it does not
    list is not online for the reason ``absent`` (no live agent). None when none is online."""
    skipped: dict[str, str] = {}
    for name in pools:
        reason = availability.get(name, absent)
        if reason is None:
            return name, skipped
        skipped[name] = reason
    return None, skipped
