"""Two-qubit gates that can be cut, written as local gates around ``exp(i θ Z⊗Z)``.

Every gate here equals, up to a global phase,

    after · (rz(φ₀) ⊗ rz(φ₁)) · exp(i θ Z⊗Z) · before

with single-qubit ``before``/``after`` gates on each side. The Z rotations commute with the
core, so the cut only has to replace ``exp(i θ Z⊗Z)`` (see :mod:`qorchestra.cutting.qpd`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from braket.circuits import Instruction, gates
from braket.circuits.gate import Gate

from qorchestra.cutting.ir import Angle, AngleFunction
from qorchestra.cutting.qpd import gate_gamma

_HALF_PI = math.pi / 2


@dataclass(frozen=True)
class ZZForm:
    """A cuttable gate on (qubit 0, qubit 1) of its instruction: the core angle θ and the
    local gates of each side, in circuit order."""

    theta: Angle
    before: tuple[tuple[Gate, ...], tuple[Gate, ...]]
    phases: tuple[Angle | None, Angle | None]  # rz angle on each side, None = no rotation
    after: tuple[tuple[Gate, ...], tuple[Gate, ...]]

    def gamma(self) -> float:
        """The decomposition's 1-norm ``1 + 2|sin 2θ|``; 3 (its maximum) for an angle that
        depends on the inputs."""
        value = AngleFunction(self.theta).constant
        return 3.0 if value is None else gate_gamma(value)


def zz_form(instruction: Instruction) -> ZZForm | None:
    """The ZZ form of a cuttable two-qubit gate, or None when the gate cannot be cut
    (it then needs wire cuts around it)."""
    op = instruction.operator
    if instruction.power != 1:
        return None
    if len(instruction.control) == 1 and len(instruction.target) == 1:
        return _controlled_rotation(instruction)
    if instruction.control or len(instruction.target) != 2:
        return None
    none: tuple[Gate, ...] = ()
    if isinstance(op, gates.CZ):
        return ZZForm(math.pi / 4, (none, none), (_HALF_PI, _HALF_PI), (none, none))
    if isinstance(op, gates.CNot):
        h = (gates.H(),)
        return ZZForm(math.pi / 4, (none, h), (_HALF_PI, _HALF_PI), (none, h))
    if isinstance(op, gates.CY):
        return ZZForm(
            math.pi / 4,
            (none, (gates.Si(), gates.H())),
            (_HALF_PI, _HALF_PI),
            (none, (gates.H(), gates.S())),
        )
    if isinstance(op, gates.ZZ):  # exp(-i φ/2 Z⊗Z)
        return ZZForm(-0.5 * op.angle, (none, none), (None, None), (none, none))
    if isinstance(op, gates.XX):
        h = (gates.H(),)
        return ZZForm(-0.5 * op.angle, (h, h), (None, None), (h, h))
    if isinstance(op, gates.YY):
        into = (gates.Si(), gates.H())
        out = (gates.H(), gates.S())
        return ZZForm(-0.5 * op.angle, (into, into), (None, None), (out, out))
    if isinstance(op, gates.CPhaseShift):  # diag(1, 1, 1, e^{iφ})
        half = 0.5 * op.angle
        return ZZForm(0.25 * op.angle, (none, none), (half, half), (none, none))
    return None


def _controlled_rotation(instruction: Instruction) -> ZZForm | None:
    """``ctrl @`` / ``negctrl @`` on ``rx``, ``ry`` or ``rz``, as a ZZ form. With
    ``|1><1| = (1 - Z)/2`` on the control, ``ctrl @ rz(φ) = exp(-i φ/4 Z_t) exp(i φ/4 Z_c Z_t)``:
    θ = φ/4 (-φ/4 for a control on ``|0>``) and ``rz(φ/2)`` on the target, so
    gamma = 1 + 2|sin(φ/2)|, as qiskit-addon-cutting's controlled rotations. ``rx`` and ``ry``
    are ``rz`` in another basis of the target."""
    op = instruction.operator
    (state,) = tuple(instruction.control_state) or (1,)
    sign = 1.0 if state == 1 else -1.0
    none: tuple[Gate, ...] = ()
    if isinstance(op, gates.Rz):
        into: tuple[Gate, ...] = ()
        out: tuple[Gate, ...] = ()
    elif isinstance(op, gates.Rx):
        into, out = (gates.H(),), (gates.H(),)
    elif isinstance(op, gates.Ry):
        into, out = (gates.Si(), gates.H()), (gates.H(), gates.S())
    else:
        return None
    angle = op.angle
    return ZZForm(sign * 0.25 * angle, (none, into), (None, 0.5 * angle), (none, out))
