"""A circuits job's spec read in parts, so the orchestrator never holds all of its bindings.

A job of 100,000 bindings has a spec of many megabytes; parsing it whole costs memory that grows
with the job. Planning needs only the spec's *head* (programs without their bindings, plus how
many bindings each has) and, per window of fragments, a slice of one program's bindings:
Postgres cuts both out of ``jobs.spec``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

#: The spec with each program's ``bindings`` removed, and each program's binding count.
_HEAD = text(
    """
    SELECT jsonb_set(j.spec, '{programs}', coalesce(p.programs, '[]'::jsonb)),
           coalesce(p.sizes, ARRAY[]::int[])
    FROM jobs j
    LEFT JOIN LATERAL (
        SELECT jsonb_agg(e.program - 'bindings' ORDER BY e.ord) AS programs,
               array_agg(coalesce(jsonb_array_length(e.program -> 'bindings'), 0)
                         ORDER BY e.ord) AS sizes
        FROM jsonb_array_elements(j.spec -> 'programs') WITH ORDINALITY AS e(program, ord)
    ) p ON true
    WHERE j.id = :job_id
    """
)

#: Bindings ``first`` .. ``last`` (inclusive, clipped at the end) of one program.
_SLICE = text(
    """
    SELECT jsonb_path_query_array(
        j.spec, '$.programs[$program].bindings[$first to $last]',
        jsonb_build_object('program', :program, 'first', :first, 'last', :last))
    FROM jobs j
    WHERE j.id = :job_id
    """
)


class SpecMissing(LookupError):
    """The job has no row (or no spec)."""


def spec_head(session: Session, job_id: str) -> tuple[dict[str, Any], list[int]]:
    """The job's spec without bindings, and how many bindings each program has (0 for none)."""
    row = session.execute(_HEAD, {"job_id": job_id}).one_or_none()
    if row is None or row[0] is None:
        raise SpecMissing(f"job {job_id} has no spec")
    head, sizes = row
    return dict(head), [int(n) for n in sizes]


def binding_slice(
    session: Session, job_id: str, program: int, offset: int, count: int
) -> list[dict[str, float]]:
    """Bindings ``offset`` .. ``offset + count - 1`` of one of the job's programs (fewer at
    its end; none for a program without bindings)."""
    if count <= 0:
        return []
    value = session.execute(
        _SLICE,
        {"job_id": job_id, "program": program, "first": offset, "last": offset + count - 1},
    ).scalar_one_or_none()
    if value is None:
        raise SpecMissing(f"job {job_id} has no spec")
    return [{name: float(v) for name, v in binding.items()} for binding in value]
