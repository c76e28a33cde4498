"""Synchronisation for the CPU kernels that run one compiled loop on several OS threads (the
fused dense, sparse and CNN epochs): atomic loads and adds on an int64 array, a spin-wait hint,
a reusable barrier built on them, and ``run_threads``, which runs a kernel on n threads.

State: one ``int64[SYNC_SIZE]`` array shared by the threads (zeros to start): the arrival
count, the barrier generation, an abort flag and the epoch's progress (mini-batches done,
``advance``; read by a display thread), each on its own 64-byte cache line. A waiting
thread spins ``_SPINS`` times, then calls ``sched_yield`` on every further turn. Setting the
abort flag (``abort(sync)``, or ``sync[ABORT] = 1`` from Python) releases every waiter; loops
check ``aborted(sync)`` after each barrier and return. Everything is ``@njit(cache=True)``
compatible: LLVM atomics and the C library's ``sched_yield`` (``SwitchToThread`` on Windows).

NumPy twin: none (threading primitives). Tests: ``tests/test_sync_cpu.py``. Why a barrier and
not ``prange``: docs/kernels.md.
"""

import platform
import sys

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import config
from .config import SYNC_ABORT as ABORT
from .config import SYNC_COUNT as COUNT
from .config import SYNC_GENERATION as GENERATION
from .config import SYNC_PROGRESS as PROGRESS
from .config import SYNC_SIZE  # noqa: F401  (the array's length, for callers)

_SPINS = 4096  # busy turns before a waiter starts yielding its core

_jit = njit(cache=config.CACHE, nogil=True)


def _element_pointer(context, builder, sig, args):
    aryty = sig.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]])


@intrinsic
def _atomic_load(typingctx, arr, i):
    """arr[i] read with acquire ordering (int64 arrays)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_element_pointer(context, builder, sig, args), "acquire", 8)

    return types.int64(arr, i), codegen


@intrinsic
def _atomic_add(typingctx, arr, i, v):
    """arr[i] += v atomically (acquire-release); returns the old value (int64 arrays)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig, args)
        val = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, val, "acq_rel")

    return types.int64(arr, i, v), codegen


@intrinsic
def _spin_hint(typingctx):
    """The CPU's spin-wait hint (x86 ``pause``, Arm ``yield``, as LLVM intrinsics); nothing
    on other machines."""
    machine = platform.machine().lower()

    def codegen(context, builder, sig, args):
        if machine in ("x86_64", "amd64", "i686", "x86"):
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
            builder.call(fn, [])
        elif machine in ("aarch64", "arm64"):
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(32)]),
                "llvm.aarch64.hint")
            builder.call(fn, [ir.Constant(ir.IntType(32), 1)])  # 1 = YIELD
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def _sched_yield(typingctx):
    """Give this thread's core to another runnable thread: the C library's ``sched_yield``
    (POSIX), ``SwitchToThread`` from kernel32 on Windows."""
    name = "SwitchToThread" if sys.platform == "win32" else "sched_yield"

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                            name)
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@_jit
def aborted(sync):
    """True once any thread (or the Python caller) has asked the others to stop."""
    return _atomic_load(sync, ABORT) != 0


@_jit
def abort(sync):
    _atomic_add(sync, ABORT, 1)


@_jit
def advance(sync):
    """One more mini-batch done (an epoch's thread 0 calls it after each)."""
    _atomic_add(sync, PROGRESS, 1)


@_jit
def barrier(sync, nthreads, generation):
    """Wait until ``nthreads`` threads have called ``barrier`` with the same ``sync`` (or until
    an abort). Every thread passes the generation it last got back (0 at first) and keeps the
    value returned. Memory written before the barrier by any thread is visible after it to all
    of them (the counter updates are acquire-release). With one thread it returns at once."""
    if nthreads > 1:
        if _atomic_add(sync, COUNT, 1) == nthreads - 1:  # last to arrive: reset, then release
            _atomic_add(sync, COUNT, -nthreads)
            _atomic_add(sync, GENERATION, 1)
        else:
            spins = 0
            while _atomic_load(sync, GENERATION) == generation and not aborted(sync):
                if spins < _SPINS:
                    spins += 1
                    _spin_hint()
                else:
                    _sched_yield()
    return generation + 1


def run_threads(worker, nthreads, sync):
    """Call ``worker(tid)`` for tid in 0..nthreads-1: tid 0 on this thread, the others on OS
    threads started here (compiled workers release the GIL). An exception in any of them sets
    the abort flag in ``sync`` (releasing every barrier) and is raised here after all return.
    ``sync`` may come from an earlier run (an epoch trained in pieces): its barrier slots are
    reset here, its progress and abort flag kept."""
    import threading

    sync[COUNT] = sync[GENERATION] = 0
    errors = []

    def run(tid):
        try:
            worker(tid)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller below
            sync[ABORT] = 1
            errors.append(e)

    helpers = [threading.Thread(target=run, args=(t,), name=f"fastnet-worker-{t}", daemon=True)
               for t in range(1, nthreads)]
    for t in helpers:
        t.start()
    run(0)
    for t in helpers:
        t.join()
    if errors:
        raise errors[0]
