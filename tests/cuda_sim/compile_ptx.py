"""Compile every kernel of ``layers_cuda`` and ``conv_cuda`` (and the cost kernel they borrow
from ``dense_cuda``) for a real GPU target — PTX, then ``ptxas`` when found — WITHOUT a GPU:
catches what the simulator cannot (typing errors, float32 kernels promoted to float64,
register spills). The cost kernel works in float64 on purpose.

Needs the CUDA toolkit's libnvvm (e.g. ``CUDA_HOME=/usr/local/cuda-13.0``) and libnvrtc (e.g.
``pip install --target /tmp/nvrtc nvidia-cuda-nvrtc`` and ``LD_LIBRARY_PATH`` pointing at its
``nvidia/cu13/lib``); no driver. A manual tool, not a test::

    NUMBA_FORCE_CUDA_CC=9.0 CUDA_HOME=/usr/local/cuda-13.0 \\
        LD_LIBRARY_PATH=/tmp/nvrtc/nvidia/cu13/lib python tests/cuda_sim/compile_ptx.py

Prints one line per kernel and dtype (PTX size, ``.f64`` mentions — a float32 kernel should have
none beyond converting its float64 scalar arguments — and ptxas registers/spills for sm_90);
exits 1 if any kernel fails to compile.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from numba import cuda
from numba import types as T
import numba.cuda.dispatcher as _dispatcher

from fastnet.kernels import conv_cuda, dense_cuda, layers_cuda

CC = (9, 0)


class _NoDevice:
    """Device functions ask the current device for its compute capability; there is none."""
    compute_capability = CC


_dispatcher.get_current_device = _NoDevice


def signatures(dt):
    f1, f2, f4 = (T.Array(dt, nd, "C") for nd in (1, 2, 4))
    i32x4, i8, f8 = T.Array(T.int32, 4, "C"), T.int64, T.float64
    bounds = T.UniTuple(T.int64, 4)
    return [
        ("layers", "gather", (f1, T.Array(T.int64, 1, "C"), i8, f1)),
        ("layers", "scale", (f1, f8, f1)),
        ("layers", "mul", (f1, f1, f1)),
        ("layers", "dropout", (f1, i8, i8, i8, f1, f1)),
        ("layers", "activate", (f1, i8, f1)),
        ("layers", "softmax_rows", (f2, f2)),
        ("layers", "act_backward", (f1, f1, i8, f1, f1)),
        ("layers", "output_delta", (f1, f1, f1, i8, i8, f1)),
        ("layers", "sgd", (f1, f1, T.Array(T.boolean, 1, "C"), f8, f8)),
        ("layers", "dense_fwd", (f2, f2, f1, f2)),
        ("layers", "dense_bwd", (f2, f2, f2, f2, f2, f1, i8, i8)),
        ("conv", "conv_fwd", (f4, f4, f1, f4)),
        ("conv", "pool_fwd", (f4, i8, i8, f4, i32x4)),
        ("conv", "pool_bwd", (f4, i32x4, bounds, f4)),
        ("conv", "convpool_fwd", (f4, f4, f1, i8, i8, i8, f4, f4, i32x4)),
        ("conv", "conv_bwd", (f4, f4, f4, f4, f4, f1, i8)),
        ("conv", "convpool_bwd", (f4, f4, f4, f4, i32x4, f4, i8, bounds, f4, f4, f1, i8)),
        # dense_cuda's cost kernel, which layers_cuda.loss_and_correct launches
        ("infer", "cost_and_hits", (f2, f2, f2, i8, T.Array(T.float64, 1, "C"))),
    ]


def _ptxas(ptx: str) -> str:
    exe = shutil.which("ptxas") or os.path.join(os.environ.get("CUDA_HOME", ""), "bin", "ptxas")
    if not os.path.exists(exe):
        return "(no ptxas)"
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    try:
        r = subprocess.run([exe, f"-arch=sm_{CC[0]}{CC[1]}", "-v", "-o", os.devnull, f.name],
                           capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    info = " ".join(re.findall(r"Used \d+ registers|\d+ bytes spill stores", r.stderr))
    return info if r.returncode == 0 else f"ptxas FAILED: {r.stderr[-500:]}"


def main() -> int:
    ok = True
    for np_dt, dt in ((np.float32, T.float32), (np.float64, T.float64)):
        spaces = {"layers": layers_cuda.kernels(np_dt), "conv": conv_cuda.kernels(np_dt),
                  "infer": {"cost_and_hits": dense_cuda.infer_kernels(np_dt)[2]}}
        for space, name, sig in signatures(dt):
            try:
                ptx, _ = cuda.compile_ptx(spaces[space][name].py_func, sig, cc=CC)
            except Exception as exc:  # report every kernel, then fail
                ok = False
                print(f"{np_dt.__name__:8s} {name:14s} FAILED: {type(exc).__name__}: "
                      f"{str(exc)[:2000]}")
                continue
            f64 = len(re.findall(r"\.f64", ptx))
            print(f"{np_dt.__name__:8s} {name:14s} ok  PTX {len(ptx):6d} chars  "
                  f".f64 mentions {f64:3d}  {_ptxas(ptx)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
