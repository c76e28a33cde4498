"""Run simulated cooperative grids with every block at once (test-only; simulator only).

Numba's CUDA simulator runs the blocks of a launch one after another and turns ``grid.sync()``
into a block barrier, so a cooperative kernel can only be simulated with one block. That hides
the part of ``dense_cuda.train_epoch`` that matters most on a GPU: blocks owning slices of
layer 0 and exchanging activations through global memory between grid syncs. Inside
``concurrent_grids()`` a launch instead starts one Python thread per CUDA thread of EVERY block,
gives each block its own shared memory, implements ``syncthreads`` as a per-block barrier and
``grid.sync()`` as a barrier over all threads; ``dense_cuda`` is told that simulated grids may
have up to ``max_blocks`` blocks. The threads interleave freely (the GIL switches between them),
so a missing barrier or a wrong exchange index shows up as a wrong result or a hang.

What it cannot show: memory-ordering effects of the real hardware (caches, fences).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import traceback

import numpy as np
from numba.cuda.simulator import kernel as sim_kernel
from numba.cuda.simulator import kernelapi as sim_api

from fastnet.kernels import dense_cuda

_BARRIER_TIMEOUT_S = 120.0


class _PerBlockShared(sim_api.FakeCUDAShared):
    """``cuda.shared.array``: one allocation per (block, source line), not per source line."""

    def array(self, shape, dtype, alignment=None):
        if isinstance(dtype, sim_api.types.Type):
            dtype = sim_api.numpy_support.as_dtype(dtype)
        caller = tuple(traceback.extract_stack(sys._getframe())[-2][0:2])
        key = (tuple(threading.current_thread().blockIdx), caller)
        with self._lock:
            if key not in self._allocations:
                self._allocations[key] = np.empty(shape, dtype)
            return self._allocations[key]


class _GridThread(threading.Thread):
    def __init__(self, fn, args, block_idx, thread_idx, block_dim, block_barrier, grid):
        super().__init__(daemon=True)
        self._fn, self._args, self._grid = fn, args, grid
        self.blockIdx = sim_api.Dim3(*block_idx)
        self.threadIdx = sim_api.Dim3(*thread_idx)
        self.thread_id = thread_idx[0] + block_dim[0] * (thread_idx[1]
                                                         + block_dim[1] * thread_idx[2])
        self._block_barrier = block_barrier
        self.exception = None

    def run(self):
        try:
            self._fn(*self._args)
        except BaseException as exc:  # noqa: BLE001 — reported by the launcher
            self.exception = exc
            self._grid.abort()

    def syncthreads(self):
        self._block_barrier.wait(_BARRIER_TIMEOUT_S)

    def gridsync(self):
        self._grid.grid_barrier.wait(_BARRIER_TIMEOUT_S)


class _ConcurrentGrid:
    """Stands in for the simulator's BlockManager: the first block's ``run`` runs all blocks."""

    def __init__(self, f, grid_dim, block_dim, debug):
        self._f, self._grid_dim, self._block_dim = f, grid_dim, block_dim

    def abort(self):
        self.grid_barrier.abort()
        for b in self._block_barriers.values():
            b.abort()

    def run(self, grid_point, *args):
        if any(grid_point):
            return                       # already run together with block (0, 0, 0)
        context = sim_kernel._get_kernel_context()
        shared = _PerBlockShared(0)
        shared._lock = threading.Lock()
        context._shared = shared
        blocks = list(np.ndindex(*self._grid_dim))
        per_block = int(np.prod(self._block_dim))
        self.grid_barrier = threading.Barrier(len(blocks) * per_block)
        self._block_barriers = {b: threading.Barrier(per_block) for b in blocks}
        threads = [_GridThread(self._f, args, b, t, self._block_dim, self._block_barriers[b],
                               self)
                   for b in blocks for t in np.ndindex(*self._block_dim)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        errors = [t.exception for t in threads if t.exception is not None]
        real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
        if real or errors:
            raise (real or errors)[0]


def _grid_sync(self):
    threading.current_thread().gridsync()


@contextlib.contextmanager
def concurrent_grids(max_blocks: int = 8):
    """Within the block: simulated launches run all blocks concurrently, with a real grid
    barrier, and ``dense_cuda`` may use up to ``max_blocks`` blocks per cooperative grid."""
    saved = (sim_kernel.BlockManager, sim_api.GridGroup.sync, dense_cuda._SIM_MAX_BLOCKS)
    sim_kernel.BlockManager = _ConcurrentGrid
    sim_api.GridGroup.sync = _grid_sync
    dense_cuda._SIM_MAX_BLOCKS = max_blocks
    try:
        yield
    finally:
        sim_kernel.BlockManager, sim_api.GridGroup.sync, dense_cuda._SIM_MAX_BLOCKS = saved
