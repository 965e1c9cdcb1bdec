"""Bounds an agent checks on every fragment before it runs anything: fragments are untrusted.

The API validates jobs, but anything that can write to ``fragments.<pool>`` can hand an agent a
small message that would take it hours or all its memory: a ``for`` loop over a billion values
(Braket's interpreter unrolls loops one iteration at a time), gate definitions that double at
every level, a huge qubit count, shot count or binding count. :func:`check_fragment` refuses
such a fragment from its message and its parsed program alone, without interpreting it:

- the cheap checks first, before any parser sees the program: bindings (an encoding expands to
  samples x weight shifts), shots, observables, the qubit counts the message claims, program
  length and nesting depth;
- then the program is parsed (ANTLR, linear in its length, which is already bounded) and its
  qubits are counted and its *operations* estimated: every statement once, loop bodies times
  their iteration count, a user gate or subroutine call its body's cost, a gate applied to a
  whole register once per qubit. Loops must run over a constant range or set; ``while`` loops
  and recursive subroutines cannot be bounded before running and are refused.

Pure functions, no I/O. The program checks are cached by source, so a job's many fragments of
one program pay for the parse once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from braket.default_simulator.openqasm.parser import openqasm_ast as ast

from nodes.program import ProgramError, parse_program
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import Settings
from qorchestra.program_text import nesting_depth

#: Largest magnitude constant folding works with; beyond it a value counts as unknown.
_MAX_VALUE = 10**18
#: Fields of AST nodes that hold nested statement blocks (costed by the walker, not as calls).
_BLOCK_FIELDS = frozenset({"block", "if_block", "else_block", "body"})


class LimitExceeded(ValueError):
    """The fragment is over a bound of this agent; running it again cannot help."""


@dataclass(frozen=True)
class FragmentLimits:
    """What one fragment may ask of an agent."""

    max_qubits: int
    max_program_chars: int
    max_nesting: int
    max_operations: int
    max_bindings: int
    max_shots: int
    max_observables: int

    @classmethod
    def for_pool(cls, settings: Settings, pool: str) -> FragmentLimits:
        """The limits of ``pool`` from the settings (the same bounds the API validates with)."""
        return cls(
            max_qubits=settings.max_qubits(pool),
            max_program_chars=settings.max_program_chars,
            max_nesting=settings.max_program_nesting,
            max_operations=settings.max_program_operations,
            max_bindings=settings.max_bindings,
            max_shots=settings.max_shots,
            max_observables=settings.max_observables,
        )


def check_fragment(fragment: pb.Fragment, limits: FragmentLimits) -> None:
    """Raise :class:`LimitExceeded` (or :class:`ProgramError` for a program that does not
    parse) when ``fragment`` is over ``limits``; return when it may run."""
    bindings = len(fragment.bindings)
    if fragment.HasField("encoding"):
        encoding = fragment.encoding
        bindings += max(len(encoding.samples), 1) * max(len(encoding.shifts), 1)
        if encoding.qubits > limits.max_qubits:
            raise LimitExceeded(
                f"encoding for {encoding.qubits} qubits; this pool allows {limits.max_qubits}"
            )
    if bindings > limits.max_bindings:
        raise LimitExceeded(f"{bindings} bindings; at most {limits.max_bindings} per fragment")
    if fragment.shots > limits.max_shots:
        raise LimitExceeded(f"{fragment.shots} shots; at most {limits.max_shots}")
    if len(fragment.observables) > limits.max_observables:
        raise LimitExceeded(
            f"{len(fragment.observables)} observables; at most {limits.max_observables}"
        )
    if fragment.qubits > limits.max_qubits:
        raise LimitExceeded(
            f"fragment for {fragment.qubits} qubits; this pool allows {limits.max_qubits}"
        )
    problem = program_problem(
        fragment.program,
        limits.max_qubits,
        limits.max_program_chars,
        limits.max_nesting,
        limits.max_operations,
    )
    if problem is not None:
        kind, message = problem
        raise (ProgramError if kind == "syntax" else LimitExceeded)(message)


@lru_cache(maxsize=64)
def program_problem(
    source: str, max_qubits: int, max_chars: int, max_nesting: int, max_operations: int
) -> tuple[str, str] | None:
    """Why ``source`` may not run here, as ``("syntax" | "limit", message)``; None when it may.

    Returns rather than raises so that outcomes, refusals included, are cached.
    """
    if len(source) > max_chars:
        return "limit", f"program of {len(source)} characters; at most {max_chars}"
    depth = nesting_depth(source)
    if depth > max_nesting:
        return "limit", f"program nested {depth} deep; at most {max_nesting}"
    try:
        tree = parse_program(source)
    except ProgramError as exc:
        return "syntax", str(exc)
    try:
        qubits = program_qubits(tree)
        if qubits > max_qubits:
            return "limit", f"program uses {qubits} qubits; this pool allows {max_qubits}"
        operations = program_operations(tree, max_operations)
    except LimitExceeded as exc:
        return "limit", str(exc)
    except RecursionError:  # expressions chained deeper than the interpreter could follow
        return "limit", "program expressions are nested too deeply"
    if operations > max_operations:
        return "limit", (
            f"program runs more than {max_operations} operations once its loops and gate "
            "definitions are unrolled (QORCH_MAX_PROGRAM_OPERATIONS)"
        )
    return None


def program_qubits(tree: ast.Program) -> int:
    """Qubits the program uses: its declared registers, or its highest physical qubit + 1."""
    constants = _constants(tree)
    declared = 0
    for statement in tree.statements:
        if isinstance(statement, ast.QubitDeclaration):
            size = 1 if statement.size is None else _value(statement.size, constants)
            if size is None or size < 0:
                raise LimitExceeded(
                    f"the size of qubit register {statement.qubit.name!r} must be a "
                    "non-negative constant"
                )
            declared += size
    physical = [
        int(node.name[1:])
        for node in _nodes(tree)
        if isinstance(node, ast.Identifier) and node.name[:1] == "$" and node.name[1:].isdigit()
    ]
    return max(declared, max(physical, default=-1) + 1)


def program_operations(tree: ast.Program, limit: int) -> int:
    """Operations the program runs once unrolled (an upper estimate).

    Stops counting past ``limit`` (the answer is then some value above it). Raises
    :class:`LimitExceeded` for what cannot be bounded statically.
    """
    return _Cost(tree, limit).block(tree.statements)


class _Cost:
    """The walker behind :func:`program_operations`."""

    def __init__(self, tree: ast.Program, limit: int) -> None:
        self._limit = limit
        self._constants = _constants(tree)
        self._registers: dict[str, int] = {}
        self._gates: dict[str, ast.QuantumGateDefinition] = {}
        self._subroutines: dict[str, ast.SubroutineDefinition] = {}
        self._costs: dict[str, int] = {}
        self._in_progress: set[str] = set()
        for statement in tree.statements:
            if isinstance(statement, ast.QuantumGateDefinition):
                self._gates[statement.name.name] = statement
            elif isinstance(statement, ast.SubroutineDefinition):
                self._subroutines[statement.name.name] = statement
            elif isinstance(statement, ast.QubitDeclaration):
                size = _value(statement.size, self._constants) if statement.size else 1
                self._registers[statement.qubit.name] = size or 1

    def block(self, statements: Sequence[Any]) -> int:
        total = 0
        for statement in statements:
            total = self._cap(total + self.statement(statement))
        return total

    def statement(self, node: Any) -> int:
        if isinstance(node, ast.QuantumGateDefinition | ast.SubroutineDefinition):
            return 1  # costed where called
        calls = self._calls(node)
        if isinstance(node, ast.WhileLoop):
            raise LimitExceeded(
                "while loops cannot be bounded before running; use a for loop over a constant range"
            )
        if isinstance(node, ast.ForInLoop):
            return self._cap(calls + self._iterations(node) * max(self.block(node.block), 1))
        if isinstance(node, ast.BranchingStatement):
            return self._cap(
                1 + calls + max(self.block(node.if_block), self.block(node.else_block))
            )
        if isinstance(node, ast.Box):
            return self._cap(1 + calls + self.block(node.body))
        if isinstance(node, ast.QuantumGate):
            return self._cap(calls + self._gate(node))
        return self._cap(1 + calls)

    def _gate(self, gate: ast.QuantumGate) -> int:
        """A gate application: its definition's cost (user gates, times an integer ``pow``),
        once per qubit when applied to whole registers (broadcast)."""
        name = gate.name.name
        cost = 1
        if name in self._gates:
            cost = self._definition(name, self._gates[name].body)
            for modifier in gate.modifiers:
                if modifier.modifier == ast.GateModifierName.pow and modifier.argument is not None:
                    power = _value(modifier.argument, self._constants)
                    cost = self._cap(cost * max(abs(power), 1) if power is not None else cost)
        width = max(
            (self._registers.get(q.name, 1) for q in gate.qubits if isinstance(q, ast.Identifier)),
            default=1,
        )
        return self._cap(cost * width)

    def _definition(self, name: str, body: Sequence[Any]) -> int:
        if name in self._costs:
            return self._costs[name]
        if name in self._in_progress:
            raise LimitExceeded(
                f"{name!r} calls itself; recursion cannot be bounded before running"
            )
        self._in_progress.add(name)
        cost = max(self.block(body), 1)
        self._in_progress.discard(name)
        self._costs[name] = cost
        return cost

    def _calls(self, node: Any) -> int:
        """The cost of the subroutines that ``node``'s own expressions call."""
        total = 0
        for child in _nodes(node, skip=_BLOCK_FIELDS):
            if isinstance(child, ast.FunctionCall) and child.name.name in self._subroutines:
                name = child.name.name
                total = self._cap(total + self._definition(name, self._subroutines[name].body))
        return total

    def _iterations(self, loop: ast.ForInLoop) -> int:
        values = loop.set_declaration
        if isinstance(values, ast.DiscreteSet):
            return len(values.values)
        if isinstance(values, ast.RangeDefinition):
            start = _value(values.start, self._constants) if values.start else 0
            end = _value(values.end, self._constants) if values.end else None
            step = _value(values.step, self._constants) if values.step else 1
            if start is not None and end is not None and step:
                return max((end - start) // step + 1, 0)
        raise LimitExceeded(
            f"the range of loop {loop.identifier.name!r} must be a constant range or set, so "
            "that its length is known before running"
        )

    def _cap(self, value: int) -> int:
        """Past the limit the exact count no longer matters: stop growing big numbers."""
        return min(value, self._limit + 1)


def _constants(tree: ast.Program) -> dict[str, int]:
    """Integer values of constants and of integer variables the program never assigns."""
    assigned = {
        node.lvalue.name.name
        if isinstance(node.lvalue, ast.IndexedIdentifier)
        else node.lvalue.name
        for node in _nodes(tree)
        if isinstance(node, ast.ClassicalAssignment)
    }
    constants: dict[str, int] = {}
    for statement in tree.statements:
        if isinstance(statement, ast.ConstantDeclaration | ast.ClassicalDeclaration):
            name = statement.identifier.name
            init = statement.init_expression
            if name in assigned or init is None or isinstance(init, ast.QuantumMeasurement):
                continue
            value = _value(init, constants)
            if value is not None:
                constants[name] = value
    return constants


def _value(node: Any, constants: Mapping[str, int]) -> int | None:
    """The integer value of a constant expression, or None when unknown or too large."""
    value: int | None = None
    if isinstance(node, ast.IntegerLiteral):
        value = node.value
    elif isinstance(node, ast.FloatLiteral) and float(node.value).is_integer():
        value = int(node.value)
    elif isinstance(node, ast.Identifier):
        value = constants.get(node.name)
    elif isinstance(node, ast.Cast):
        value = _value(node.argument, constants)
    elif isinstance(node, ast.UnaryExpression) and node.op == ast.UnaryOperator["-"]:
        inner = _value(node.expression, constants)
        value = None if inner is None else -inner
    elif isinstance(node, ast.BinaryExpression):
        value = _binary(node, constants)
    if value is None or abs(value) > _MAX_VALUE:
        return None
    return value


def _binary(node: ast.BinaryExpression, constants: Mapping[str, int]) -> int | None:
    lhs, rhs = _value(node.lhs, constants), _value(node.rhs, constants)
    if lhs is None or rhs is None:
        return None
    op = node.op.name
    if op == "+":
        return lhs + rhs
    if op == "-":
        return lhs - rhs
    if op == "*":
        return lhs * rhs
    if op == "/" and rhs:
        return int(lhs / rhs)  # OpenQASM integer division truncates
    if op == "%" and rhs:
        return lhs % rhs
    if op == "**" and 0 <= rhs <= 64:
        return lhs**rhs if abs(lhs) <= 1 << 16 else None
    if op == "<<" and 0 <= rhs <= 62:
        return lhs << rhs
    if op == ">>" and rhs >= 0:
        return lhs >> rhs
    return None


def _nodes(node: Any, skip: frozenset[str] = frozenset()) -> Iterator[Any]:
    """``node`` and every AST node below it, except under fields named in ``skip``."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if not dataclasses.is_dataclass(current):
            continue
        for field in dataclasses.fields(current):
            if field.name in skip or field.name == "span":
                continue
            value = getattr(current, field.name)
            if isinstance(value, list):
                stack.extend(v for v in value if dataclasses.is_dataclass(v))
            elif dataclasses.is_dataclass(value):
                stack.append(value)
