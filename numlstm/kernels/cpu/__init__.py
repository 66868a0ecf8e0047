"""Numba ``@njit`` CPU kernels (``cache=True``); they never validate input."""
