"""A job's result assembled by Postgres from its fragments' stored values.

The orchestrator never holds a whole result: a 100,000-binding job's values go from the
fragment rows into ``jobs.result`` in one statement, and Python only compares a few counts.
This is ``qorchestra.aggregation.assemble_result`` for jobs without cutting, byte for byte
in JSON terms (``tests/integration/test_store.py`` compares the two).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

#: Values of each program, from the done fragments, in binding order.
_COUNTS = text(
    """
    SELECT f.program_index, sum(jsonb_array_length(f.result))
    FROM fragments f
    WHERE f.job_id = :job_id AND f.status = 'done'
    GROUP BY f.program_index
    """
)

#: Bindings each program of the spec has (at least 1: a program without bindings runs once).
_SIZES = text(
    """
    SELECT p.ord - 1, greatest(1, coalesce(jsonb_array_length(p.program -> 'bindings'), 0))
    FROM jobs j, jsonb_array_elements(j.spec -> 'programs') WITH ORDINALITY AS p(program, ord)
    WHERE j.id = :job_id
    """
)

_STORE = text(
    """
    UPDATE jobs j SET result = jsonb_build_object(
        'result_type', j.spec -> 'result' -> 'type',
        'shots', j.spec -> 'shots',
        'observables', coalesce(j.spec -> 'result' -> 'observables', '[]'::jsonb),
        'programs', coalesce((
            SELECT jsonb_agg(
                jsonb_build_object('index', v.program_index, 'values', v.vals)
                ORDER BY v.program_index)
            FROM (
                SELECT f.program_index,
                       jsonb_agg(e.value ORDER BY f.binding_offset, e.ord) AS vals
                FROM fragments f,
                     jsonb_array_elements(f.result) WITH ORDINALITY AS e(value, ord)
                WHERE f.job_id = j.id AND f.status = 'done'
                GROUP BY f.program_index
            ) v
        ), '[]'::jsonb))
    WHERE j.id = :job_id
    """
)


def missing_values(sizes: dict[int, int], counts: dict[int, int]) -> list[str]:
    """Why stored values do not make a result: one line per program whose count is off."""
    return [
        f"program {index} has {counts.get(index, 0)} values for {size} bindings"
        for index, size in sorted(sizes.items())
        if counts.get(index, 0) != size
    ] + [
        f"values for program {index}, which the job lacks" for index in counts if index not in sizes
    ]


def store_result(session: Session, job_id: str) -> None:
    """Write the job's result from its done fragments (uncut jobs); ValueError when a
    program's values do not cover its bindings exactly."""
    sizes = {int(i): int(n) for i, n in session.execute(_SIZES, {"job_id": job_id})}
    counts = {int(i): int(n) for i, n in session.execute(_COUNTS, {"job_id": job_id})}
    problems = missing_values(sizes, counts)
    if problems:
        raise ValueError("; ".join(problems))
    session.execute(_STORE, {"job_id": job_id})
