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


# Numba checks a cached kernel against its own source file only, but a kernel compiles in the
# functions it calls from the other kernel modules (cnn_cpu's epoch holds conv_cpu's and
# dense_cpu's), so an edit or an upgrade there would keep serving the stale build. For the
# files of this package the cache is keyed on a digest of all of them instead. (Numba's
# cache-locator list is internal: if it ever changes, the default keying applies.)
_KERNELS_DIR = os.path.dirname(os.path.abspath(__file__))


def sources_digest(directory: str = _KERNELS_DIR) -> bytes:
    """sha256 over the names and contents of the ``.py`` files in ``directory``."""
    import hashlib
    h = hashlib.sha256()
    for name in sorted(os.listdir(directory)):
        if name.endswith(".py"):
            h.update(name.encode() + b"\0")
            with open(os.path.join(directory, name), "rb") as f:
                h.update(f.read() + b"\0")
    return h.digest()


class _PackageStamp:
    """Cache-locator mixin: serves only this package's files; their stamp is the digest of
    all of them (computed once per process)."""

    _digest = None

    def get_source_stamp(self):
        if _PackageStamp._digest is None:
            _PackageStamp._digest = sources_digest()
        return _PackageStamp._digest

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.dirname(os.path.abspath(py_file)) != _KERNELS_DIR:
            return None
        return super().from_function(py_func, py_file)


def _install_locators():
    try:
        from numba.core import caching
        classes = caching.CacheImpl._locator_classes
    except (ImportError, AttributeError):
        return
    if any(issubclass(c, _PackageStamp) for c in classes):
        return
    ours = [type(f"Fastnet{base.__name__}", (_PackageStamp, base), {})
            for base in (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator,
                         caching.UserWideCacheLocator)]
    classes[0:0] = ours      # NUMBA_CACHE_DIR first, then __pycache__, then the user cache


_install_locators()
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
