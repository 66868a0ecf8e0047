"""Tunables of the CPU kernels, in one place so that tests can patch them.

They are read by the Python layer at call time (never frozen into cached
kernels).
"""

import os

#: A small batch is split into row blocks that run the whole time loop on
#: separate threads (all BLAS single-threaded meanwhile, every product split
#: into row halves) when every block gets at least this many rows ...
PARALLEL_MIN_ROWS = 4

#: ... and the batch has at most this many rows (None: no limit). Every
#: per-step product runs in small-matrix tiles on its block's own thread
#: (``BLAS_SMALL_MNK``), which beats OpenBLAS's own two threads on one big
#: product at every batch measured (64 rows: 9.5 ms against 14.2 ms forward
#: at (64, 100, 64, 128)).
PARALLEL_MAX_BATCH = None

#: ... and one step's recurrent product has at least this many multiply-adds
#: (B * H * 4H): below it, handing work to a second thread costs more than it
#: saves. Measured with the spinning pool (training step, serial -> split):
#: (16, 50, 32, 64) 1.33 -> 0.99 ms, (16, 50, 32, 32) 0.83 -> 0.72 ms, but
#: (8, 50, 32, 32) (33k) 0.43 -> 0.47 ms.
PARALLEL_MIN_STEP_MACS = 60_000

#: Upper bound on row blocks; None means numba.get_num_threads().
PARALLEL_MAX_CHUNKS = None

#: Convolutions (Conv2D, and ConvLSTM's input and recurrent convolutions)
#: split the batch over threads, and the LSTM's whole-sequence products their
#: rows, when a call has at least this many multiply-adds: below it, handing
#: work to a thread costs more than it saves.
CONV_PARALLEL_MIN_MACS = 2_000_000

#: Per-step recurrent products are cut into tiles of at most this many
#: multiply-adds (M * N * K), the size up to which OpenBLAS takes its
#: small-matrix kernel (about 1.4-2x faster than its general path at the LSTM's
#: per-step shapes, see ``numlstm.kernels.cpu.linalg.dot_panels``). 0 turns
#: the tiling off (one BLAS call per step).
BLAS_SMALL_MNK = 1_000_000

#: A pool thread that has finished a block spins this long (microseconds,
#: without the GIL) for the next one before it sleeps: the LSTM and ConvLSTM
#: hand out blocks every few tens of microseconds, and waking a sleeping
#: thread costs 30-80 us on a virtual machine (see ``numlstm._threads._Pool``).
#: 0: sleep at once. Read when a worker next waits.
POOL_SPIN_US = 300.0

#: After seeing a new block, a worker waits this long (microseconds) before
#: it asks for the GIL, which the caller still holds until it enters its own
#: block: a thread that asks too early sleeps on the GIL and is slow to wake.
POOL_SETTLE_US = 1.0

#: Pin each thread of a parallel block to its own CPU while the block runs
#: (Linux): otherwise a woken pool thread can share the caller's core for
#: tens of milliseconds (see ``numlstm._threads._pin``).
PIN_THREADS = True

#: How the CPU drivers choose among their schedules (``numlstm.kernels.plan``):
#: ``"measure"`` times the candidates on first use of a shape class (within
#: ``PLAN_BUDGET_S``) and keeps the winner in the user's cache folder;
#: ``"default"`` uses the built-in choices (the same on every host, nothing
#: timed or read); a path uses that plan file as it is (pinned). The
#: environment variable ``NUMLSTM_PLAN`` sets it at import.
PLAN = os.environ.get("NUMLSTM_PLAN", "measure")

#: The folder of plan files; None: ``$XDG_CACHE_HOME/numlstm``, else ``~/.cache/numlstm``.
PLAN_DIR = os.environ.get("NUMLSTM_PLAN_DIR") or None

#: Seconds the planner may spend timing the candidates of one shape class.
PLAN_BUDGET_S = 0.5

#: Forced choices, ``{"lstm.rec": "own/1"}``: they win over every mode (tests
#: use it to run each candidate).
PLAN_OVERRIDE: dict = {}
