"""recserve.simd: ISA reporting and every kernel of every available ISA against NumPy."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from recserve import simd

SIZES = [1, 3, 17, 97, 1000]


def test_active_isa_is_one_of_the_available_ones() -> None:
    assert simd.active_isa() in simd.available_isas()
    assert simd.available_isas()[0] == "scalar"
    assert simd.active_variant().startswith(simd.active_isa())


@pytest.mark.parametrize("isa", simd.available_isas())
@pytest.mark.parametrize("dims", SIZES)
def test_float_kernels_match_numpy(isa: str, dims: int) -> None:
    rng = np.random.default_rng(dims)
    a = rng.standard_normal(dims).astype(np.float32)
    b = rng.standard_normal(dims).astype(np.float32)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64))
    assert simd.kernel("dot_f32", a, b, isa) == pytest.approx(a64 @ b64, rel=1e-4, abs=1e-4)
    assert simd.kernel("l2sq_f32", a, b, isa) == pytest.approx(((a64 - b64) ** 2).sum(), rel=1e-4)
    assert simd.kernel("cos_f32", a, b, isa) == pytest.approx(1.0 - cos, rel=1e-3, abs=1e-5)


@pytest.mark.parametrize("isa", simd.available_isas())
@pytest.mark.parametrize("dims", SIZES)
def test_int_kernels_are_exact(isa: str, dims: int) -> None:
    rng = np.random.default_rng(1000 + dims)
    a = rng.integers(-128, 128, dims).astype(np.int8)
    b = rng.integers(-128, 128, dims).astype(np.int8)
    u = rng.integers(0, 256, dims).astype(np.uint8)
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    assert simd.kernel("dot_i8", a, b, isa) == int(a64 @ b64)
    assert simd.kernel("l2sq_i8", a, b, isa) == int(((a64 - b64) ** 2).sum())
    assert simd.kernel("dot_u8i8", u, b, isa) == int(u.astype(np.int64) @ b64)


def test_extreme_int8_values_do_not_overflow() -> None:
    a = np.full(1000, -128, dtype=np.int8)
    u = np.full(1000, 255, dtype=np.uint8)
    for isa in simd.available_isas():
        assert simd.kernel("dot_i8", a, a, isa) == 128 * 128 * 1000
        assert simd.kernel("dot_u8i8", u, a, isa) == -255 * 128 * 1000


def test_cosine_of_a_zero_vector_is_one() -> None:
    zero = np.zeros(17, dtype=np.float32)
    other = np.ones(17, dtype=np.float32)
    for isa in simd.available_isas():
        assert simd.kernel("cos_f32", zero, other, isa) == 1.0


def test_kernel_rejects_mismatched_lengths_and_dtypes() -> None:
    a = np.ones(4, dtype=np.float32)
    with pytest.raises(ValueError, match="same length"):
        simd.kernel("dot_f32", a, np.ones(5, dtype=np.float32))
    with pytest.raises(TypeError, match="dtype"):
        simd.kernel("dot_f32", a, np.ones(4, dtype=np.float64))
    with pytest.raises(ValueError, match="unknown kernel"):
        simd.kernel("dot_f16", a, a)  # type: ignore[arg-type]


def _isa_in_fresh_process(value: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RECSERVE_ISA=value)
    code = "from recserve import simd; print(simd.active_isa())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=False)


def test_recserve_isa_selects_the_scalar_kernels() -> None:
    result = _isa_in_fresh_process("scalar")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "scalar"


def test_unknown_recserve_isa_is_an_error_not_a_fallback() -> None:
    result = _isa_in_fresh_process("sse9")
    assert result.returncode != 0
    assert "sse9" in result.stderr
