"""Built-in Hamiltonians for ``minimize`` jobs, as weighted Pauli strings (qubit 0 first)."""

from __future__ import annotations

import numpy as np

#: H2 in the STO-3G basis at bond length 0.7414 Angstrom, reduced to two qubits by parity
#: mapping with two-qubit reduction; coefficients in Hartree, electronic energy only (add the
#: nuclear repulsion, 0.7199 Ha, for the total: -1.1373 Ha at the minimum).
H2 = [
    (-1.052373245772859, "II"),
    (0.39793742484318045, "IZ"),
    (-0.39793742484318045, "ZI"),
    (-0.01128010425623538, "ZZ"),
    (0.18093119978423156, "XX"),
]

BUILTIN: dict[str, list[tuple[float, str]]] = {"h2": H2}

_PAULI = {
    "I": np.eye(2, dtype=complex),
    "X": np.array([[0, 1], [1, 0]], dtype=complex),
    "Y": np.array([[0, -1j], [1j, 0]], dtype=complex),
    "Z": np.array([[1, 0], [0, -1]], dtype=complex),
}


def matrix(terms: list[tuple[float, str]]) -> np.ndarray:
    """The dense matrix of ``sum c P`` (qubit 0 is the most significant tensor factor, as in
    Braket's basis-state order)."""
    size = 2 ** len(terms[0][1])
    total = np.zeros((size, size), dtype=complex)
    for coeff, pauli in terms:
        op = np.array([[1.0 + 0j]])
        for letter in pauli:
            op = np.kron(op, _PAULI[letter])
        total += coeff * op
    return total


def ground_energy(terms: list[tuple[float, str]]) -> float:
    """The lowest eigenvalue, by dense diagonalisation (small systems only)."""
    return float(np.linalg.eigvalsh(matrix(terms))[0])
