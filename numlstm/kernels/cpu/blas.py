"""General matrix product with BLAS's own arguments, callable from kernels.

``np.dot`` in Numba always computes ``C = A B`` with ``beta = 0`` into a
whole array. ``gemm`` here exposes the rest of ``?gemm``: transposes, ``alpha``
and ``beta`` (accumulate into C without a temporary), and sub-matrix views
with a leading dimension (a block of rows and columns of a larger C-ordered
array), so that a kernel can cut a product into tiles that each take
OpenBLAS's small-matrix path (see ``linalg.dot_panels``) and write or add
them in place.

It calls the ``numba_xxgemm`` helper that Numba's own ``np.dot`` lowers to (it
forwards to SciPy's ``cython_blas``), by symbol name: kernels that use it can
be cached (``cache=True``), unlike kernels holding a ctypes function pointer.
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.linalg import ensure_blas

_KW = {"cache": True, "error_model": "numpy", "nogil": True}

_CHAR = ir.IntType(8)
_VOIDP = ir.IntType(8).as_pointer()


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major ``?gemm`` through Numba's helper; returns its status."""
    if not all(isinstance(t, types.Array) for t in (a, b, c)):
        return None
    if a.dtype not in (types.float32, types.float64) or not (a.dtype == b.dtype == c.dtype):
        return None
    ensure_blas()
    kind = ord("s") if a.dtype == types.float32 else ord("d")
    sig = types.int32(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        ta, tb, m_, n_, k_, alpha_, a_, lda_, b_, ldb_, beta_, c_, ldc_ = args
        st = signature.args
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(
            ir.IntType(32),
            [_CHAR, _CHAR, _CHAR, intp, intp, intp, _VOIDP, _VOIDP, intp, _VOIDP, intp, _VOIDP, _VOIDP, intp],
        )
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        dt = context.get_value_type(st[6].dtype)

        def scalar(val, ty):
            slot = cgutils.alloca_once(builder, dt)
            builder.store(context.cast(builder, val, ty, st[6].dtype), slot)
            return builder.bitcast(slot, _VOIDP)

        def data(val, ty):
            return builder.bitcast(context.make_array(ty)(context, builder, val).data, _VOIDP)

        def flag(val, ty):
            is_t = context.cast(builder, val, ty, types.boolean)
            return builder.select(is_t, ir.Constant(_CHAR, ord("t")), ir.Constant(_CHAR, ord("n")))

        def size(val, ty):
            return context.cast(builder, val, ty, types.intp)

        return builder.call(
            fn,
            [
                ir.Constant(_CHAR, kind),
                flag(ta, st[0]),
                flag(tb, st[1]),
                size(m_, st[2]),
                size(n_, st[3]),
                size(k_, st[4]),
                scalar(alpha_, st[5]),
                data(a_, st[6]),
                size(lda_, st[7]),
                data(b_, st[8]),
                size(ldb_, st[9]),
                scalar(beta_, st[10]),
                data(c_, st[11]),
                size(ldc_, st[12]),
            ],
        )

    return sig, codegen


@njit(**_KW)
def _ld(x):
    """Leading dimension of a 2-d row-major view (its row stride in elements);
    raises when its rows are not contiguous."""
    rows, cols = x.shape
    if cols > 1 and x.strides[1] != x.itemsize:
        raise ValueError("gemm: every operand needs contiguous rows")
    ld = x.strides[0] // x.itemsize if rows > 1 else cols
    return max(1, cols, ld)


@njit(**_KW)
def gemm(ta, tb, alpha, a, b, beta, c):
    """c = alpha * op(a) @ op(b) + beta * c, row-major, in place.

    op(x) is x, or x.T when its flag is true. a, b, c: 2-d float32 or float64
    arrays (one dtype) whose rows are contiguous: whole C-ordered arrays or
    blocks of rows and columns of one. c: (M, N); op(a): (M, K); op(b): (K, N).
    With ``beta == 0`` c is not read (it may hold anything, even NaN).
    """
    M, N = c.shape
    K = a.shape[0] if ta else a.shape[1]
    if (a.shape[1] if ta else a.shape[0]) != M or (b.shape[0] if tb else b.shape[1]) != N:
        raise ValueError("gemm: shapes do not match")
    if (b.shape[1] if tb else b.shape[0]) != K:
        raise ValueError("gemm: inner dimensions do not match")
    if M == 0 or N == 0:
        return
    # row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the
    # column-major view of a row-major buffer is its transpose, so the flags
    # pass through and the operands swap
    _xxgemm(tb, ta, N, M, K, alpha, b, _ld(b), a, _ld(a), beta, c, _ld(c))
