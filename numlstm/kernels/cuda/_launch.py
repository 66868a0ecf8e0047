"""Launch-shape helpers shared by the CUDA drivers (values from ``config`` at call time)."""

from __future__ import annotations

from numlstm.kernels.cuda import config


def grid_1d(n: int, threads: int | None = None) -> tuple[int, int]:
    """``(blocks, threads)`` for a grid-stride 1-d kernel over ``n`` items."""
    tpb = int(threads or config.THREADS_PER_BLOCK)
    blocks = max(1, min(-(-int(n) // tpb), int(config.MAX_BLOCKS)))
    return blocks, tpb


def flat(a):
    """A 1-d view of a C-contiguous device array."""
    return a.reshape(a.size) if a.ndim != 1 else a
