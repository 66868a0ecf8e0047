"""Matrix products into given outputs (BLAS through Numba's np.dot).

Callers pass C-contiguous 2-d arrays (row blocks of larger C arrays are
fine): BLAS is 2-3x faster on skinny products with C-contiguous operands
than with transposed views, so callers copy small transposes once.
"""

import numpy as np
from numba import njit

_KW = {"cache": True, "error_model": "numpy", "nogil": True}


@njit(**_KW)
def matmul_into(a, b, out):
    """out = a @ b. a: (M, K), b: (K, N), out: (M, N)."""
    np.dot(a, b, out)


@njit(**_KW)
def matmul_add(a, b, out):
    """out += a @ b."""
    out += np.dot(a, b)


@njit(**_KW)
def matmul_tn_add(a, b, out):
    """out += a^T @ b. a: (K, M), b: (K, N), out: (M, N); the sum over K
    (here: every time step and sequence) is one product."""
    out += np.dot(a.T, b)
