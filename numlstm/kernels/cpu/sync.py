"""Spin-waits on shared int64 flags, for the thread pool in ``numlstm._threads``.

The pool hands a block of work to a thread that is already running (spinning
here, without the GIL) instead of one that sleeps: on this kind of virtual
machine a sleeping thread takes 30-80 us to wake (the idle vCPU halts, and
guest halt-polling is off), which is as long as one LSTM step's kernel.

The flags are read with atomic acquire loads and written with release stores:
a plain load in a loop with no stores would be hoisted out of the loop by
LLVM. ``pause`` (x86) keeps the spinning core from starving its SMT sibling
and from flooding the memory system with loads.
"""

import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_KW = {"cache": True, "nogil": True}
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def _flag_pointer(context, builder, aryty, ary, idx):
    arr = context.make_array(aryty)(context, builder, ary)
    return cgutils.get_item_pointer(context, builder, aryty, arr, [idx])


@intrinsic
def _load_acquire(typingctx, flags, idx):
    """flags[idx] (int64 array) as an atomic acquire load."""

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_flag_pointer(context, builder, signature.args[0], *args), "acquire", 8)

    return types.int64(flags, idx), codegen


@intrinsic
def _store_release(typingctx, flags, idx, value):
    """flags[idx] = value (int64) as an atomic release store."""

    def codegen(context, builder, signature, args):
        ptr = _flag_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(flags, idx, value), codegen


@intrinsic
def _relax(typingctx):
    """The x86 ``pause`` hint (nothing elsewhere)."""

    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@njit(**_KW)
def store_flag(flags, i, value):
    """flags[i] = value, visible to other threads' ``spin_*`` loads."""
    _store_release(flags, i, value)


@njit(**_KW)
def spin_while_equal(flags, i, old, iters):
    """Spin (at most ``iters`` pauses) while flags[i] == old; return its value."""
    for _ in range(iters):
        v = _load_acquire(flags, i)
        if v != old:
            return v
        _relax()
    return _load_acquire(flags, i)


@njit(**_KW)
def spin_until_at_least(flags, i, target, iters):
    """Spin (at most ``iters`` pauses) until flags[i] >= target; True if it is."""
    for _ in range(iters):
        if _load_acquire(flags, i) >= target:
            return True
        _relax()
    return _load_acquire(flags, i) >= target


@njit(**_KW)
def worker_wait(seq, done, slot, last, iters, settle):
    """A pool worker between blocks: publish ``done[slot] = last`` (the block
    of generation ``last`` is finished; stored here, after the GIL is
    released, so the waiting caller never has to wait for the GIL), then spin
    while ``seq[0] == last``. On a new generation, pause ``settle`` more
    times before returning: the caller publishes while it still holds the GIL
    and releases it a few microseconds later, when it enters its own block;
    asking for the GIL before that would put this thread to sleep on it."""
    _store_release(done, slot, last)
    for _ in range(iters):
        v = _load_acquire(seq, 0)
        if v != last:
            for _ in range(settle):
                _relax()
            return v
        _relax()
    return _load_acquire(seq, 0)
