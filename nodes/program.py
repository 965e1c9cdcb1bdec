"""From a fragment's program to the OpenQASM source a Braket device runs, and back.

Pure functions, no I/O: :func:`prepare` turns a fragment's OpenQASM 3 source, result kind and
observables into the sources to run for each binding (``#pragma braket result ...`` lines
appended), and :meth:`PreparedProgram.binding_result` turns Braket's results for one binding
into a :class:`BindingResult`.

Qubit order follows Braket: qubit 0 is the first qubit the program declares (registers in
declaration order) or physical qubit ``$0``, and it is the leftmost character of Pauli strings
and of basis-state bitstrings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from antlr4.error.Errors import ParseCancellationException, RecognitionException
from antlr4.error.ErrorStrategy import BailErrorStrategy
from braket.default_simulator.openqasm.parser import openqasm_ast as ast
from braket.default_simulator.openqasm.parser.generated.qasm3Lexer import qasm3Lexer
from braket.default_simulator.openqasm.parser.generated.qasm3Parser import qasm3Parser
from braket.default_simulator.openqasm.parser.openqasm_parser import QASMNodeVisitor

from proto.qorch.v1 import fragments_pb2 as pb

PAULI = frozenset("IXYZ")

#: Result kinds by their proto value, for messages.
KIND_NAMES: dict[int, str] = {int(value): name for name, value in pb.ResultKind.items()}


class TaskResult(Protocol):
    """What is read from one run: Braket's ``GateModelQuantumTaskResult`` or a compiled run's."""

    @property
    def values(self) -> Sequence[Any]:
        """Result type values, in the order of the program's result pragmas."""
        ...

    @property
    def measurement_counts(self) -> Mapping[str, int] | None:
        """Counts per bitstring (qubit 0 leftmost) when the run had shots."""
        ...


class ProgramError(ValueError):
    """The program, its observables or its result kind are invalid; running it again cannot help."""


@dataclass(frozen=True)
class Register:
    """A qubit register: ``qubit[size] name;`` (size given) or ``qubit name;`` (size None)."""

    name: str
    size: int | None

    def qubit(self, index: int) -> str:
        """OpenQASM reference to qubit ``index`` of this register."""
        return self.name if self.size is None else f"{self.name}[{index}]"


@dataclass(frozen=True)
class ProgramRun:
    """One source to run per binding, and which fragment observables its result types answer.

    ``observables[k]`` holds the indices (in the fragment's observables) that the k-th
    expectation result type of ``source`` answers; it is empty for counts and probabilities.
    """

    source: str
    observables: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True)
class PreparedProgram:
    """What to run for every binding of a fragment, and how to read the results back."""

    kind: int
    runs: tuple[ProgramRun, ...]
    observable_count: int = 0
    #: Observables that need no simulation (all identity): index -> value.
    constants: tuple[tuple[int, float], ...] = ()

    def binding_results(self, results: Sequence[TaskResult]) -> list[pb.BindingResult]:
        """Results of consecutive bindings from their task results (:attr:`runs` per binding)."""
        width = len(self.runs)
        if not width or len(results) % width:
            raise ValueError(f"{len(results)} task results do not split into {width} per binding")
        return [
            self.binding_result(results[start : start + width])
            for start in range(0, len(results), width)
        ]

    def binding_result(self, results: Sequence[TaskResult]) -> pb.BindingResult:
        """The result of one binding from Braket's results of :attr:`runs`, in the same order."""
        if len(results) != len(self.runs):
            raise ValueError(f"expected {len(self.runs)} task results, got {len(results)}")
        if self.kind == pb.RESULT_KIND_COUNTS:
            return counts_result(results[0])
        if self.kind == pb.RESULT_KIND_PROBABILITIES:
            return probabilities_result(results[0])
        values: list[float | None] = [None] * self.observable_count
        for index, value in self.constants:
            values[index] = value
        for run, result in zip(self.runs, results, strict=True):
            if len(result.values) != len(run.observables):
                raise ValueError(
                    f"expected {len(run.observables)} expectation values, got {len(result.values)}"
                )
            for indices, value in zip(run.observables, result.values, strict=True):
                for index in indices:
                    values[index] = float(value)
        missing = [i for i, v in enumerate(values) if v is None]
        if missing:
            raise ValueError(f"no expectation value for observables {missing}")
        answered = [v for v in values if v is not None]
        return pb.BindingResult(expectations=pb.Expectations(values=answered))


def counts_result(result: TaskResult) -> pb.BindingResult:
    """Measurement counts per bitstring, as Braket reports them."""
    if result.measurement_counts is None:
        raise ValueError("counts need a run with shots")
    # Both executors' counts are str -> int already; protobuf rejects anything else.
    return pb.BindingResult(counts=pb.Counts(counts=result.measurement_counts))


def probabilities_result(result: TaskResult) -> pb.BindingResult:
    """Probability per basis state (qubit 0 first), exact zeros omitted."""
    if len(result.values) != 1:
        raise ValueError(f"expected one probability result type, got {len(result.values)}")
    probabilities = [float(p) for p in result.values[0]]
    width = max(len(probabilities) - 1, 0).bit_length()
    if len(probabilities) != 1 << width:
        raise ValueError(f"{len(probabilities)} probabilities is not a power of two")
    return pb.BindingResult(
        probabilities=pb.Probabilities(
            probabilities={
                format(i, f"0{width}b") if width else "": p
                for i, p in enumerate(probabilities)
                if p != 0.0
            }
        )
    )


def prepare_fragment(fragment: pb.Fragment) -> PreparedProgram:
    """:func:`prepare` for a fragment's program, result kind, shots, observables and qubits."""
    return prepare(
        fragment.program,
        fragment.result_kind,
        tuple(fragment.observables),
        fragment.shots,
        fragment.qubits,
    )


@lru_cache(maxsize=64)
def prepare(
    program: str,
    kind: int,
    observables: tuple[str, ...] = (),
    shots: int = 0,
    qubits: int = 0,
) -> PreparedProgram:
    """The sources to run for one binding of ``program``.

    - counts: the program as is (needs ``shots > 0``);
    - probabilities: one ``#pragma braket result probability`` naming every qubit in order
      (without targets the local simulator leaves out qubits no gate touches, and bitstrings
      would be shorter than the program);
    - expectation: one ``#pragma braket result expectation`` per distinct observable that is
      not all identity (those are the constant 1.0). With ``shots > 0`` observables that act
      differently on a qubit cannot share a task, so they are split into several runs.

    ``qubits`` is the program's qubit count when it uses physical qubits only (0 = unknown).
    Raises :class:`ProgramError` for a program that does not parse or does not fit the request.
    """
    if kind == pb.RESULT_KIND_COUNTS:
        if shots <= 0:
            raise ProgramError("counts need shots > 0")
        parse_program(program)
        return PreparedProgram(kind=kind, runs=(ProgramRun(program),))
    if kind not in (pb.RESULT_KIND_PROBABILITIES, pb.RESULT_KIND_EXPECTATION):
        raise ProgramError(f"unsupported result kind {KIND_NAMES.get(kind, kind)}")

    tree = parse_program(program)
    if any(_is_result_pragma(s) for s in tree.statements):
        raise ProgramError(
            "the program must not declare result types (#pragma braket result ...): "
            "the fragment's result kind and observables decide them"
        )
    registers = qubit_registers(tree)
    names = qubit_names(registers, qubits)
    base = program if program.endswith("\n") else program + "\n"

    if kind == pb.RESULT_KIND_PROBABILITIES:
        targets = f" {', '.join(names)}" if names else ""
        return PreparedProgram(
            kind=kind, runs=(ProgramRun(f"{base}#pragma braket result probability{targets}\n"),)
        )

    if not observables:
        raise ProgramError("expectation values need at least one observable")
    paulis = [_check_pauli(o, i, len(names) if names else None) for i, o in enumerate(observables)]
    constants = tuple((i, 1.0) for i, p in enumerate(paulis) if set(p) == {"I"})
    distinct: dict[str, list[int]] = {}
    for i, pauli in enumerate(paulis):
        if set(pauli) != {"I"}:
            distinct.setdefault(pauli, []).append(i)
    groups = _commuting_groups(list(distinct)) if shots > 0 else [list(distinct)]
    runs = []
    for group in groups:
        if not group:
            continue
        pragmas = "".join(
            f"#pragma braket result expectation {pauli_observable(p, names)}\n" for p in group
        )
        # A repeated observable is one result type that answers every index it appears at.
        runs.append(ProgramRun(base + pragmas, tuple(tuple(distinct[p]) for p in group)))
    return PreparedProgram(
        kind=kind, runs=tuple(runs), observable_count=len(paulis), constants=constants
    )


def pauli_observable(pauli: str, names: Sequence[str]) -> str:
    """Braket's observable syntax for a Pauli string, e.g. ``"ZZI" -> "z(q[0]) @ z(q[1])"``."""
    terms = [
        f"{c.lower()}({names[i] if names else f'${i}'})" for i, c in enumerate(pauli) if c != "I"
    ]
    if not terms:
        raise ProgramError("an all-identity observable is a constant, not a result type")
    return " @ ".join(terms)


def qubit_names(registers: Sequence[Register], qubits: int = 0) -> list[str]:
    """OpenQASM references of every qubit in order; physical ``$i`` when none is declared.

    Empty when the program declares no qubits and ``qubits`` is 0 (count unknown).
    """
    if registers:
        return [r.qubit(i) for r in registers for i in range(1 if r.size is None else r.size)]
    return [f"${i}" for i in range(qubits)]


def qubit_registers(tree: ast.Program) -> list[Register]:
    """The program's qubit declarations, in declaration order."""
    constants: dict[str, int] = {}
    registers = []
    for statement in tree.statements:
        if isinstance(statement, ast.ConstantDeclaration) and isinstance(
            statement.init_expression, ast.IntegerLiteral
        ):
            constants[statement.identifier.name] = statement.init_expression.value
        elif isinstance(statement, ast.QubitDeclaration):
            registers.append(Register(statement.qubit.name, _size(statement, constants)))
    return registers


def _size(declaration: ast.QubitDeclaration, constants: dict[str, int]) -> int | None:
    size = declaration.size
    if size is None:
        return None
    if isinstance(size, ast.IntegerLiteral):
        return int(size.value)
    if isinstance(size, ast.Identifier) and size.name in constants:
        return constants[size.name]
    raise ProgramError(
        f"the size of qubit register {declaration.qubit.name!r} must be an integer literal "
        "or an integer constant"
    )


def _check_pauli(observable: str, index: int, qubits: int | None) -> str:
    pauli = observable.strip().upper()
    if not pauli or not set(pauli) <= PAULI:
        raise ProgramError(
            f"observable {index} ({observable!r}) must be a Pauli string over I, X, Y, Z"
        )
    if qubits is not None and len(pauli) != qubits:
        raise ProgramError(
            f"observable {index} ({observable!r}) has {len(pauli)} letters but the program "
            f"has {qubits} qubits"
        )
    return pauli


def _commuting_groups(paulis: Sequence[str]) -> list[list[str]]:
    """Greedy split into groups that act the same way on every qubit they share (sampling)."""
    groups: list[tuple[list[str], dict[int, str]]] = []
    for pauli in paulis:
        letters = {i: c for i, c in enumerate(pauli) if c != "I"}
        for members, used in groups:
            if all(used.get(i, c) == c for i, c in letters.items()):
                members.append(pauli)
                used.update(letters)
                break
        else:
            groups.append(([pauli], dict(letters)))
    return [members for members, _ in groups]


def _is_result_pragma(statement: ast.Statement) -> bool:
    return isinstance(statement, ast.Pragma) and statement.command.split()[:2] == [
        "braket",
        "result",
    ]


class _Errors(ErrorListener):
    """Collects ANTLR syntax errors instead of printing them."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def syntaxError(
        self,
        recognizer: Any,
        offendingSymbol: Any,
        line: int,
        column: int,
        msg: str,
        e: Any,
    ) -> None:
        self.messages.append(f"line {line}:{column} {msg}")


@lru_cache(maxsize=16)
def parse_program(source: str) -> ast.Program:
    """Parse OpenQASM 3 with Braket's parser; syntax errors raise :class:`ProgramError`.

    Cached: the agent's bounds check and :func:`prepare` parse the same source, and parsing a
    long program takes seconds. Callers must treat the tree as read-only.
    """
    errors = _Errors()
    lexer = qasm3Lexer(InputStream(source))
    lexer.removeErrorListeners()
    lexer.addErrorListener(errors)
    parser = qasm3Parser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(errors)
    parser._errHandler = BailErrorStrategy()
    try:
        tree = parser.program()
        if errors.messages:
            raise ProgramError(_syntax_message(errors.messages))
        program: ast.Program = QASMNodeVisitor().visitProgram(tree)
    except (RecognitionException, ParseCancellationException) as exc:
        raise ProgramError(_syntax_message(errors.messages or [_antlr_reason(exc)])) from exc
    except ProgramError:
        raise
    except Exception as exc:  # the AST visitor rejects some constructs with plain exceptions
        raise ProgramError(f"OpenQASM 3 program is not valid: {exc or type(exc).__name__}") from exc
    return program


def _syntax_message(messages: Sequence[str]) -> str:
    return "OpenQASM 3 syntax error: " + "; ".join(messages)


def _antlr_reason(exc: Exception) -> str:
    cause: Any = exc
    while cause is not None and not isinstance(cause, RecognitionException):
        cause = cause.args[0] if cause.args and isinstance(cause.args[0], Exception) else None
    token = getattr(cause, "offendingToken", None)
    if token is None:
        return "the program could not be parsed"
    return f"line {token.line}:{token.column} unexpected {token.text!r}"
