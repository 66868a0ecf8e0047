"""Compiled kernels: ``cpu`` (Numba ``@njit``). Arrays and scalars in, arrays out."""
