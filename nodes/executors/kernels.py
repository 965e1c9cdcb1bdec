"""How Braket's numba kernels run in an agent process: the threading layer and thread count.

From 11 qubits on, Braket's state-vector kernels are numba ``parallel=True`` functions. Importing
``braket.default_simulator.linalg_utils`` sets numba's threading layer to ``workqueue``, which
hands every kernel launch to a pool thread and waits for it, even with one thread. Measured on the
2-core development machine (a small VM): that hand-over costs about 0.2 ms per launch, more than
the 12-qubit gate it launches, so a 105-gate 12-qubit circuit spent 22 of its 24 ms in hand-overs.
OpenMP runs a one-thread launch on the calling thread: the same circuit took 1.8 ms. The layer
does not change any amplitude (the same compiled loop runs), only who runs it.

numba fixes the layer at a process's first parallel launch, so :func:`select_threading_layer`
must run before the first simulation; an executor calls it when it is built.
"""

from __future__ import annotations

import logging
import os
from typing import Literal

import numba

logger = logging.getLogger(__name__)

#: ``default`` is numba's own order (tbb, omp, workqueue); ``workqueue`` is what Braket selects.
ThreadingLayer = Literal["omp", "tbb", "workqueue", "default"]
THREADING_LAYERS: tuple[ThreadingLayer, ...] = ("omp", "tbb", "workqueue", "default")


def select_threading_layer(preferred: ThreadingLayer) -> str:
    """Make ``preferred`` numba's threading layer in this process; the layer in use.

    Where ``preferred`` cannot be loaded (no OpenMP or TBB runtime), falls back to ``workqueue``,
    which ships with numba, and logs why. Where this process already launched a parallel kernel
    the layer is fixed: it is returned as it is (with a warning if it is not ``preferred``).
    """
    if preferred not in THREADING_LAYERS:
        raise ValueError(
            f"unknown threading layer {preferred!r}; expected one of {THREADING_LAYERS}"
        )
    # Braket's import assigns numba.config.THREADING_LAYER; ours has to come after it.
    import braket.default_simulator.linalg_utils  # noqa: F401
    from numba.np.ufunc import parallel

    if parallel._is_initialized:
        layer = numba.threading_layer()
        if preferred not in ("default", layer):
            logger.warning(
                "numba's threading layer is already %s in this process; %s was asked for",
                layer,
                preferred,
            )
        return layer
    for candidate in dict.fromkeys((preferred, "workqueue")):
        numba.config.THREADING_LAYER = candidate  # type: ignore[attr-defined]
        try:
            parallel._launch_threads()
        except ValueError as exc:  # the layer's runtime library is missing
            logger.warning("numba threading layer %s unavailable (%s)", candidate, exc)
            continue
        break
    layer = numba.threading_layer()
    logger.info("numba threading layer: %s", layer)
    return layer


def limit_kernel_threads(threads: int) -> None:
    """At most ``threads`` numba threads for the calling thread (numba's count is per thread)."""
    try:
        numba.set_num_threads(min(threads, os.cpu_count() or 1))
    except ValueError:  # above the pool size numba started with (NUMBA_NUM_THREADS)
        logger.debug("numba refused %s threads; keeping %s", threads, numba.get_num_threads())
