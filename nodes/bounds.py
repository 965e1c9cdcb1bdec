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
  whole register (or slice) once per qubit. Loops must run over a constant range or set;
  ``while`` loops and recursive subroutines cannot be bounded before running and are refused.

Names are resolved by scope, as Braket's interpreter resolves them (see :class:`_Names`): a loop
variable, a gate's or subroutine's parameter or an inner declaration named like a top-level
``const`` is that name, not the constant, so shadowing cannot make work look cheap. A name whose
value is not a compile-time constant is unknown, and a loop whose range needs it is refused.

Pure functions, no I/O. The program checks are cached by source, so a job's many fragments of
one program pay for the parse once.
"""

from __future__ import annotations

import dataclasses
from collections import ChainMap, Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
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
    names = _Names(tree)
    declared = 0
    for statement in tree.statements:
        if isinstance(statement, ast.QubitDeclaration):
            declared += names.register(statement)
        else:
            names.declare_in(statement)
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


class _Names:
    """The names in scope where the walk stands, resolved the way Braket's interpreter does.

    ``_values`` maps each visible name to its integer value, or to None where that is not a
    compile-time constant (a loop variable, a parameter, an input, a variable the program assigns
    anywhere); ``_widths`` maps qubit names to how many qubits they stand for. Both are chains of
    scopes, innermost first, so the innermost declaration of a name wins over a top-level
    ``const`` of the same name. Braket's scopes, which the walk follows:

    - the global scope, declarations applying from where they stand (a later redeclaration
      replaces the value from there on);
    - a ``for`` loop's body is a scope of its own, holding the loop variable;
    - ``if``/``else`` blocks and ``box`` bodies are not: what they declare stays visible after
      them, so afterwards those names count as unknown (the branch taken is not known);
    - a gate's or subroutine's body sees its parameters, and otherwise the names of the caller:
      Braket resolves a subroutine's free names where it is *called*. A body therefore sees only
      the top-level names declared nowhere else in the program, which every caller agrees on.
    """

    def __init__(self, tree: ast.Program) -> None:
        self._assigned = _assigned(tree)
        self._declarations = _declarations(tree)
        self._values: ChainMap[str, int | None] = ChainMap()
        self._widths: ChainMap[str, int] = ChainMap()
        self._global_values = self._values.maps[0]
        self._global_widths = self._widths.maps[0]
        #: The width of a qubit name whose size is unknown: every qubit of the program.
        self._all_qubits = 1

    def value(self, node: Any) -> int | None:
        """The integer value of expression ``node`` here, or None when unknown."""
        return _value(node, self._values)

    def width(self, operand: Any) -> int:
        """How many qubits a gate operand (or an alias's value) stands for here."""
        if isinstance(operand, ast.Identifier):
            name, whole = operand.name, True
        elif isinstance(operand, ast.IndexedIdentifier):
            name, whole = operand.name.name, any(_selects_many(i) for i in operand.indices)
        elif isinstance(operand, ast.IndexExpression) and isinstance(
            operand.collection, ast.Identifier
        ):
            name, whole = operand.collection.name, _selects_many(operand.index)
        else:
            return self._all_qubits
        if not whole:
            return 1
        if name in self._widths:
            return self._widths[name]
        # declared, but not visible from here (a subroutine's caller's name): any register
        return self._all_qubits if name in self._declarations else 1

    def register(self, statement: ast.QubitDeclaration) -> int:
        """Declare a qubit register here; its size, which must be a constant."""
        size = 1 if statement.size is None else self.value(statement.size)
        if size is None or size < 0:
            raise LimitExceeded(
                f"the size of qubit register {statement.qubit.name!r} must be a "
                "non-negative constant"
            )
        self._values[statement.qubit.name] = None
        self._widths[statement.qubit.name] = max(size, 1)
        return size

    def declare(self, statement: Any, *, known: bool = True) -> None:
        """Declare the name ``statement`` declares in the innermost scope (a no-op for other
        statements); with ``known`` False its value and width count as unknown."""
        if isinstance(statement, ast.QubitDeclaration) and known:
            self.register(statement)
        elif isinstance(statement, ast.QubitDeclaration | ast.AliasStatement):
            name = (
                statement.qubit.name
                if isinstance(statement, ast.QubitDeclaration)
                else statement.target.name
            )
            self._values[name] = None
            known_width = known and isinstance(statement, ast.AliasStatement)
            self._widths[name] = self.width(statement.value) if known_width else self._all_qubits
        elif isinstance(statement, ast.ConstantDeclaration | ast.ClassicalDeclaration):
            self._values[statement.identifier.name] = self._initial(statement) if known else None
        elif isinstance(statement, ast.IODeclaration):
            self._values[statement.identifier.name] = None

    def declare_in(self, statement: Any) -> None:
        """Declare what ``statement`` declares, when it is not one the walk costs: a declaration
        itself, or what ``if``/``else`` blocks and ``box`` bodies leave behind (as unknown)."""
        if isinstance(statement, ast.BranchingStatement | ast.Box):
            self._forget(statement)
        else:
            self.declare(statement)

    def _forget(self, statement: ast.BranchingStatement | ast.Box) -> None:
        """Make unknown what ``statement``'s blocks declare in the enclosing scope."""
        blocks = (
            [statement.body]
            if isinstance(statement, ast.Box)
            else [statement.if_block, statement.else_block]
        )
        for block in blocks:
            for inner in block:
                if isinstance(inner, ast.BranchingStatement | ast.Box):
                    self._forget(inner)
                else:
                    self.declare(inner, known=False)

    def _initial(self, statement: ast.ConstantDeclaration | ast.ClassicalDeclaration) -> int | None:
        init = statement.init_expression
        if (
            statement.identifier.name in self._assigned
            or init is None
            or isinstance(init, ast.QuantumMeasurement)
        ):
            return None
        return _cast(statement.type, self.value(init), self._values)

    @contextmanager
    def _scope(self, values: Mapping[str, int | None]) -> Iterator[None]:
        """A block scope inside the current one, holding ``values`` (a loop variable)."""
        saved = self._values, self._widths
        self._values = self._values.new_child(dict(values))
        self._widths = self._widths.new_child()
        try:
            yield
        finally:
            self._values, self._widths = saved

    @contextmanager
    def _body(
        self, definition: ast.QuantumGateDefinition | ast.SubroutineDefinition
    ) -> Iterator[None]:
        """The scope of a gate's or subroutine's body: its parameters, then the top-level names
        that every caller sees alike (declared only once in the whole program)."""
        saved = self._values, self._widths
        shared = {k: v for k, v in self._global_values.items() if self._declarations[k] == 1}
        widths = {k: v for k, v in self._global_widths.items() if self._declarations[k] == 1}
        self._values = ChainMap({}, shared)
        self._widths = ChainMap({}, widths)
        try:
            if isinstance(definition, ast.QuantumGateDefinition):
                for parameter in definition.arguments:
                    self._values[parameter.name] = None
                for qubit in definition.qubits:
                    self._values[qubit.name] = None
                    self._widths[qubit.name] = 1
            else:
                for argument in definition.arguments:
                    self._values[argument.name.name] = None
                    if isinstance(argument, ast.QuantumArgument):
                        size = 1 if argument.size is None else self.value(argument.size)
                        self._widths[argument.name.name] = (
                            self._all_qubits if size is None else max(size, 1)
                        )
            yield
        finally:
            self._values, self._widths = saved


class _Cost(_Names):
    """The walker behind :func:`program_operations`."""

    def __init__(self, tree: ast.Program, limit: int) -> None:
        super().__init__(tree)
        self._all_qubits = max(program_qubits(tree), 1)
        self._limit = limit
        # A name defined twice is costed at its dearest definition: which one a call meets
        # depends on where it runs (a subroutine calls whatever its caller sees).
        self._gates: dict[str, list[ast.QuantumGateDefinition]] = {}
        self._subroutines: dict[str, list[ast.SubroutineDefinition]] = {}
        self._costs: dict[tuple[str, str], int] = {}
        self._in_progress: set[tuple[str, str]] = set()
        for statement in tree.statements:
            if isinstance(statement, ast.QuantumGateDefinition):
                self._gates.setdefault(statement.name.name, []).append(statement)
            elif isinstance(statement, ast.SubroutineDefinition):
                self._subroutines.setdefault(statement.name.name, []).append(statement)

    def block(self, statements: Sequence[Any]) -> int:
        """The cost of ``statements``, run in order in the current scope."""
        total = 0
        for statement in statements:
            total = self._cap(total + self.statement(statement))
        return total

    def statement(self, node: Any) -> int:
        """The cost of one statement; declares what it declares."""
        if isinstance(node, ast.QuantumGateDefinition | ast.SubroutineDefinition):
            return 1  # costed where called
        calls = self._calls(node)
        if isinstance(node, ast.WhileLoop):
            raise LimitExceeded(
                "while loops cannot be bounded before running; use a for loop over a constant range"
            )
        if isinstance(node, ast.ForInLoop):
            iterations = self._iterations(node)  # evaluated outside the loop variable's scope
            with self._scope({node.identifier.name: None}):
                body = self.block(node.block)
            return self._cap(calls + iterations * max(body, 1))
        if isinstance(node, ast.BranchingStatement):
            with self._scope({}):
                if_block = self.block(node.if_block)
            with self._scope({}):
                else_block = self.block(node.else_block)
            self.declare_in(node)
            return self._cap(1 + calls + max(if_block, else_block))
        if isinstance(node, ast.Box):
            with self._scope({}):
                body = self.block(node.body)
            self.declare_in(node)
            return self._cap(1 + calls + body)
        if isinstance(node, ast.QuantumGate):
            return self._cap(calls + self._gate(node))
        self.declare(node)
        return self._cap(1 + calls)

    def _gate(self, gate: ast.QuantumGate) -> int:
        """A gate application: its definition's cost (user gates, times an integer ``pow``),
        once per qubit when applied to whole registers or slices (broadcast)."""
        name = gate.name.name
        cost = 1
        if name in self._gates:
            cost = self._definition("gate", name, self._gates[name])
            for modifier in gate.modifiers:
                if modifier.modifier == ast.GateModifierName.pow and modifier.argument is not None:
                    power = self.value(modifier.argument)
                    cost = self._cap(cost * max(abs(power), 1) if power is not None else cost)
        width = max((self.width(qubit) for qubit in gate.qubits), default=1)
        return self._cap(cost * width)

    def _definition(
        self,
        kind: str,
        name: str,
        definitions: Sequence[ast.QuantumGateDefinition | ast.SubroutineDefinition],
    ) -> int:
        """The cost of calling gate or subroutine ``name``: its dearest definition's body,
        each costed in the scope of that body."""
        key = (kind, name)
        if key in self._costs:
            return self._costs[key]
        if key in self._in_progress:
            raise LimitExceeded(
                f"{name!r} calls itself; recursion cannot be bounded before running"
            )
        self._in_progress.add(key)
        cost = 1
        for definition in definitions:
            with self._body(definition):
                cost = max(cost, self.block(definition.body))
        self._in_progress.discard(key)
        self._costs[key] = cost
        return cost

    def _calls(self, node: Any) -> int:
        """The cost of the subroutines that ``node``'s own expressions call."""
        total = 0
        for child in _nodes(node, skip=_BLOCK_FIELDS):
            if isinstance(child, ast.FunctionCall) and child.name.name in self._subroutines:
                name = child.name.name
                cost = self._definition("subroutine", name, self._subroutines[name])
                total = self._cap(total + cost)
        return total

    def _iterations(self, loop: ast.ForInLoop) -> int:
        values = loop.set_declaration
        if isinstance(values, ast.DiscreteSet):
            return len(values.values)
        if isinstance(values, ast.RangeDefinition):
            start = self.value(values.start) if values.start else 0
            end = self.value(values.end) if values.end else None
            step = self.value(values.step) if values.step else 1
            if start is not None and end is not None and step:
                return max((end - start) // step + 1, 0)
        raise LimitExceeded(
            f"the range of loop {loop.identifier.name!r} must be a constant range or set, so "
            "that its length is known before running"
        )

    def _cap(self, value: int) -> int:
        """Past the limit the exact count no longer matters: stop growing big numbers."""
        return min(value, self._limit + 1)


def _assigned(tree: ast.Program) -> set[str]:
    """Names the program assigns anywhere (in any scope: such a name is never a constant)."""
    names: set[str] = set()
    for node in _nodes(tree):
        target = None
        if isinstance(node, ast.ClassicalAssignment):
            target = node.lvalue
        elif isinstance(node, ast.QuantumMeasurementStatement):
            target = node.target
        if isinstance(target, ast.IndexedIdentifier):
            names.add(target.name.name)
        elif isinstance(target, ast.Identifier):
            names.add(target.name)
    return names


def _declarations(tree: ast.Program) -> Counter[str]:
    """How many times each name is declared in the program, in any scope and in any way."""
    names: Counter[str] = Counter()
    declarations = ast.ConstantDeclaration | ast.ClassicalDeclaration | ast.IODeclaration
    for node in _nodes(tree):
        if isinstance(node, declarations | ast.ForInLoop):
            names[node.identifier.name] += 1
        elif isinstance(node, ast.QubitDeclaration):
            names[node.qubit.name] += 1
        elif isinstance(node, ast.AliasStatement):
            names[node.target.name] += 1
        elif isinstance(node, ast.ClassicalArgument | ast.QuantumArgument):
            names[node.name.name] += 1
        elif isinstance(node, ast.QuantumGateDefinition):
            names.update(identifier.name for identifier in node.arguments + node.qubits)
    return names


def _selects_many(index: Any) -> bool:
    """Whether a qubit index (``[0:2]``, ``{0, 1}``) selects a slice rather than one qubit."""
    if isinstance(index, list):
        return any(_selects_many(element) for element in index)
    return isinstance(index, ast.RangeDefinition | ast.DiscreteSet)


def _cast(kind: Any, value: int | None, constants: Mapping[str, int | None]) -> int | None:
    """``value`` as a declaration or cast of type ``kind`` leaves it, as Braket casts; None when
    the cast could change it (a sized integer overflows and wraps, a negative ``uint``) or for
    types whose values are not integers to fold."""
    if value is None:
        return None
    if isinstance(kind, ast.IntType | ast.UintType):
        unsigned = isinstance(kind, ast.UintType)
        if unsigned and value < 0:
            return None
        if kind.size is None:
            return value
        bits = _value(kind.size, constants)
        if bits is None or bits <= 0:
            return None
        bits = min(bits, 64)  # folded values stay below 2**60
        low, high = (0, 1 << bits) if unsigned else (-(1 << (bits - 1)), 1 << (bits - 1))
        return value if low <= value < high else None
    if isinstance(kind, ast.FloatType):
        bits = 64 if kind.size is None else _value(kind.size, constants)
        exact = {16: 1 << 11, 32: 1 << 24, 64: 1 << 53}.get(bits or 0)
        return value if exact is not None and abs(value) <= exact else None
    return None


def _value(node: Any, constants: Mapping[str, int | None]) -> int | None:
    """The integer value of a constant expression, or None when unknown or too large."""
    value: int | None = None
    if isinstance(node, ast.IntegerLiteral):
        value = node.value
    elif isinstance(node, ast.FloatLiteral) and float(node.value).is_integer():
        value = int(node.value)
    elif isinstance(node, ast.Identifier):
        value = constants.get(node.name)
    elif isinstance(node, ast.Cast):
        value = _cast(node.type, _value(node.argument, constants), constants)
    elif isinstance(node, ast.UnaryExpression) and node.op == ast.UnaryOperator["-"]:
        inner = _value(node.expression, constants)
        value = None if inner is None else -inner
    elif isinstance(node, ast.BinaryExpression):
        value = _binary(node, constants)
    if value is None or abs(value) > _MAX_VALUE:
        return None
    return value


def _binary(node: ast.BinaryExpression, constants: Mapping[str, int | None]) -> int | None:
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
