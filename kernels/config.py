"""The one place for kernel settings (fastmath, caching, threads) and the codes shared by the
CPU and CUDA kernels. See docs/design.md for the conventions."""

import os

# Activation codes.
LINEAR, SIGMOID, TANH, RELU, SOFTPLUS, SOFTMAX = 0, 1, 2, 3, 4, 5
ACTIVATIONS = {"linear": LINEAR, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU,
               "softplus": SOFTPLUS, "softmax": SOFTMAX}

# Loss codes.
QUADRATIC, CROSS_ENTROPY, LOG_LIKELIHOOD = 0, 1, 2
LOSSES = {"quadratic": QUADRATIC, "cross_entropy": CROSS_ENTROPY,
          "log_likelihood": LOG_LIKELIHOOD}

# CPU kernels: cached on disk so a second process does not compile again.
CACHE = os.environ.get("FASTNET_NO_CACHE", "") == ""
# fastmath lets LLVM vectorise reductions; it is used only in kernels whose tests pass with
# margin under it, and never where NaN/inf must be detected (validation happens in Python).
FASTMATH = {"contract", "reassoc", "nsz", "arcp"}
# The options of every CPU kernel. error_model="numpy": a float division by zero gives inf/NaN
# (IEEE) instead of a Python ZeroDivisionError; the check that raises it is a branch in every
# division, and it keeps LLVM from vectorising any loop holding one (the sigmoid: 12 ns per
# element with it, 3 ns without, float32). Kernels never divide by zero on valid input: the
# Python layer validates first.
# _nrt=True (Numba's reference counting, its default) is explicit: a function compiled without
# it (dense_cpu._lite) would otherwise have every function it calls compiled without it too,
# and a later counting caller would reuse that build.
CPU_JIT = dict(cache=CACHE, fastmath=FASTMATH, nogil=True, error_model="numpy", _nrt=True)

# CUDA launch configuration.
THREADS_PER_BLOCK = int(os.environ.get("FASTNET_CUDA_TPB", "256"))
