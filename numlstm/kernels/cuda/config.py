"""Launch configurations of the CUDA kernels, in one place so tests can patch them.

Read by the host drivers at call time and passed into the kernels as launch
parameters or arguments (never frozen into compiled kernels), so patching a
value takes effect at the next launch. ``SIMULATOR_LAUNCHES`` holds small
values for the CUDA simulator (applied by ``tests_cuda/conftest.py`` and
``perf/gpu_check.py``) so that several blocks run even on tiny inputs.
"""

#: threads per block of the 1-d elementwise kernels (gates, activations,
#: optimizer updates, losses, fills)
THREADS_PER_BLOCK = 256

#: upper bound on blocks of a 1-d launch: the kernels loop over a grid stride,
#: so a huge array does not need a huge grid
MAX_BLOCKS = 4096

#: side of the square tile of the output each GEMM block computes ...
GEMM_TILE = 64

#: ... with each thread accumulating a GEMM_THREAD_TILE x GEMM_THREAD_TILE
#: sub-tile in registers (threads per block = (GEMM_TILE / GEMM_THREAD_TILE)**2;
#: GEMM_TILE must be a multiple of it) ...
GEMM_THREAD_TILE = 4

#: ... walking K in slices of this many (shared memory = 2 * GEMM_TILE *
#: GEMM_TILE_K elements: 8 KiB in float32 with the defaults)
GEMM_TILE_K = 16

#: a product that would get fewer than this many blocks of GEMM_TILE (a
#: per-step product of a small batch) uses GEMM_SMALL_TILE and
#: GEMM_SMALL_THREAD_TILE instead (4x the blocks with the defaults), so that
#: more of the GPU's multiprocessors work on it
GEMM_MIN_BLOCKS = 128
GEMM_SMALL_TILE = 32
GEMM_SMALL_THREAD_TILE = 2

#: threads per block of the reductions (sums for bias gradients, norms, losses);
#: a power of two
REDUCE_THREADS = 256

#: the persistent LSTM kernel (one launch runs the whole time loop, one block
#: per group of batch rows) is chosen when the batch has at most this many rows ...
#: (untuned defaults, set without a GPU from an estimate: the general path
#: launches two kernels per step and direction, each costing a Python-side
#: launch of roughly 10-30 us, while the persistent kernel reads W_hh
#: (4H*H elements) from L2 once per step and block; perf/gpu_check.py times
#: both paths at each size so these can be set from measurements)
PERSISTENT_MAX_BATCH = 64

#: ... and the hidden size is at most this ...
PERSISTENT_MAX_HIDDEN = 256

#: ... and, when W_h (4H x H) fits in this many bytes of shared memory, it is
#: staged there once per launch; otherwise the kernel reads it from global
#: memory (L2-resident for the sizes above) on every step
PERSISTENT_MAX_SHARED_BYTES = 48 * 1024

#: threads per block of the persistent kernel (a multiple of 32 on a GPU);
#: each thread computes one or more of the 4H gate pre-activations of its rows.
#: None: one thread per gate column, 4H rounded up to a warp, at most 1024
PERSISTENT_THREADS = None

#: batch rows per block of the persistent kernel: each weight read from
#: memory serves this many rows (fewer blocks, more work per read); 1 gives
#: the most blocks for the small batches the persistent path is for
PERSISTENT_ROWS_PER_BLOCK = 1

#: force a path: None chooses by the thresholds above; True / False forces the
#: persistent / general path (tests and benchmarks)
PERSISTENT = None

#: threads per block of the per-sequence time-loop kernels of the attention
#: layers (one block runs every step of one batch row; a multiple of 32 on a GPU)
ATTENTION_THREADS = 128

#: split reductions (convolution weight/bias gradients, the image layers'
#: matrix products over batch*time): each output's sum is split over lanes
#: (lane s adds terms s, s + S, ...) so that about this many threads run ...
SPLIT_REDUCE_THREADS = 65536

#: ... and at least this many lanes per output (a warp: the lanes of one sum
#: are neighbouring threads reading neighbouring terms, so their loads coalesce)
SPLIT_REDUCE_MIN_LANES = 32

#: the convolution's forward pass and input gradient as an implicit GEMM
#: (shared-memory tiles, register tiles; True) or as the direct one-thread-
#: per-output kernels (False)
CONV_IMPLICIT_GEMM = True

#: implicit-GEMM convolution: output tile of a block, CONV_TILE_M pixels x
#: CONV_TILE_N channels (at most; narrower for fewer channels), ...
CONV_TILE_M = 64
CONV_TILE_N = 64

#: ... walking the C*kh*kw (or O*kh*kw) reduction axis in slices of this many
#: (shared memory = CONV_TILE_K * (CONV_TILE_M + CONV_TILE_N) elements) ...
CONV_TILE_K = 16

#: ... each thread accumulating CONV_THREAD_TILE x CONV_THREAD_TILE outputs in
#: registers (threads per block = (CONV_TILE_M / t) * (CONV_TILE_N / t); the
#: tile sides must be multiples of t, CONV_TILE_N of t*t)
CONV_THREAD_TILE = 4

#: implicit-GEMM weight gradient: the N*H'*W' pixels are split so that about
#: this many blocks run (each adds its share into its own partial sums)
CONV_WGRAD_BLOCKS = 512

#: the values above for Numba's CUDA simulator, where every CUDA thread is a
#: Python thread (a 256-thread block costs seconds): small enough that tiny
#: inputs still span several blocks. ``tests_cuda/conftest.py`` and
#: ``perf/gpu_check.py`` (on the simulator) apply them; a real GPU keeps the defaults.
SIMULATOR_LAUNCHES = {
    "THREADS_PER_BLOCK": 8,
    "GEMM_TILE": 4,
    "GEMM_THREAD_TILE": 2,
    "GEMM_TILE_K": 3,
    "GEMM_SMALL_TILE": 2,
    "GEMM_SMALL_THREAD_TILE": 1,
    "REDUCE_THREADS": 8,
    "PERSISTENT_THREADS": 4,
    "SPLIT_REDUCE_THREADS": 16,
    "SPLIT_REDUCE_MIN_LANES": 2,
    "ATTENTION_THREADS": 4,
    "CONV_TILE_M": 4,
    "CONV_TILE_N": 4,
    "CONV_TILE_K": 2,
    "CONV_THREAD_TILE": 2,
    "CONV_WGRAD_BLOCKS": 3,
}
