"""Which SIMD kernels run: chosen once at start-up, overridable with ``RECSERVE_ISA``.

``RECSERVE_ISA`` takes ``scalar``, ``avx2``, ``avx512`` or ``neon``; naming one this CPU cannot
run is an error, never a silent fallback.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from recserve import _core

__all__ = ["KernelName", "active_isa", "active_variant", "available_isas", "kernel"]

KernelName = Literal["dot_f32", "l2sq_f32", "cos_f32", "dot_i8", "l2sq_i8", "cos_i8", "dot_u8i8"]


def active_isa() -> str:
    """The ISA whose kernels this process uses: 'scalar', 'avx2', 'avx512' or 'neon'."""
    return _core.simd.active_isa()


def active_variant() -> str:
    """The exact kernel variant in use, e.g. 'avx512+vnni' or 'neon+dotprod'."""
    return _core.simd.active_variant()


def available_isas() -> list[str]:
    """ISAs this build has kernels for and this CPU can run, scalar first, best last."""
    return _core.simd.available_isas()


def kernel(op: KernelName, a: npt.NDArray[np.generic], b: npt.NDArray[np.generic],
           isa: str = "") -> float | int:
    """Runs one distance kernel of one ISA ('' = the active one) on two vectors.

    Float kernels take float32 vectors, int8 kernels int8 ones, dot_u8i8 a uint8 and an int8.
    """
    return _core.simd.kernel(op, a, b, isa)
