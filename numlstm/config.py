"""Tunables of the CPU kernels, in one place so that tests can patch them.

They are read by the Python layer at call time (never frozen into cached
kernels).
"""

#: A small batch is split into row blocks that run the whole time loop on
#: separate threads (all BLAS single-threaded meanwhile, every product split
#: into row halves) when every block gets at least this many rows ...
PARALLEL_MIN_ROWS = 4

#: ... and the batch has at most this many rows: up to about 16 rows OpenBLAS
#: runs the per-step product on one thread (measured: (8, 128) x (128, 512)
#: takes the same time with 1 or 2 threads), so a second core is idle; above
#: it, OpenBLAS threads each step itself and the split measured slower ...
PARALLEL_MAX_BATCH = 16

#: ... and one step's recurrent product has at least this many multiply-adds
#: (B * H * 4H): below it, handing work to a second thread costs more than it
#: saves (measured: (16, 50, 32, 64) 1.4 ms serial, 2.0 ms split).
PARALLEL_MIN_STEP_MACS = 400_000

#: Upper bound on row blocks; None means numba.get_num_threads().
PARALLEL_MAX_CHUNKS = None

#: Convolutions (Conv2D, and ConvLSTM's input and recurrent convolutions)
#: split the batch over threads when a call has at least this many
#: multiply-adds: below it, handing work to a thread costs more than it saves.
CONV_PARALLEL_MIN_MACS = 2_000_000
