"""The one place for kernel settings (fastmath, caching, threads) and the codes shared by the
CPU and CUDA kernels. See docs/design.md for the conventions."""

import os
import sys

# Activation codes.
LINEAR, SIGMOID, TANH, RELU, SOFTPLUS, SOFTMAX = 0, 1, 2, 3, 4, 5
ACTIVATIONS = {"linear": LINEAR, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU,
               "softplus": SOFTPLUS, "softmax": SOFTMAX}

# Loss codes.
QUADRATIC, CROSS_ENTROPY, LOG_LIKELIHOOD = 0, 1, 2
LOSSES = {"quadratic": QUADRATIC, "cross_entropy": CROSS_ENTROPY,
          "log_likelihood": LOG_LIKELIHOOD}

# The slots of a ``sync_cpu`` array (int64, 64 bytes apart): the barrier's arrival count and
# generation, the abort flag, the epoch's progress (mini-batches done).
SYNC_COUNT, SYNC_GENERATION, SYNC_ABORT, SYNC_PROGRESS = 0, 8, 16, 24
SYNC_SIZE = 32

# Optimizer codes (``fastnet.optimizers``); hyper-parameters go to the kernels as
# ``hyper = [beta1 (momentum), beta2 (RMSprop's alpha), eps, weight_decay, l1]`` (float64[5]:
# ``Optimizer.hyper(l1)``; l1 = fit's L1 coefficient over n).
SGD, MOMENTUM, NESTEROV, RMSPROP, ADAM, ADAMW = 0, 1, 2, 3, 4, 5
OPTIMIZERS = {"sgd": SGD, "momentum": MOMENTUM, "nesterov": NESTEROV, "rmsprop": RMSPROP,
              "adam": ADAM, "adamw": ADAMW}
#: state arrays (each the parameters' size) an optimizer keeps
OPTIMIZER_SLOTS = {SGD: 0, MOMENTUM: 1, NESTEROV: 1, RMSPROP: 1, ADAM: 2, ADAMW: 2}

# CPU kernels: cached on disk so a second process does not compile again.
CACHE = os.environ.get("FASTNET_NO_CACHE", "") == ""


# Where the builds go. Never inside the package: an installed package's directory belongs to
# pip, which removes only the files it installed, so builds left in
# site-packages/fastnet/kernels/__pycache__ outlive an uninstall and turn the leftover
# site-packages/fastnet/ into a namespace package that shadows the next (editable) install.
# A per-user cache directory instead, keyed by fastnet's and Numba's versions and the kernel
# sources so that two installs never overwrite each other's builds.
#
# Numba checks a cached kernel against its own source file only, but a kernel compiles in the
# functions it calls from the other kernel modules (cnn_cpu's epoch holds conv_cpu's and
# dense_cpu's), so an edit or an upgrade there would keep serving the stale build. For the
# files of this package the cache is keyed on a digest of all of them instead. (Numba's
# cache-locator list is internal: if it ever changes, Numba's own locators apply.)
_KERNELS_DIR = os.path.dirname(os.path.abspath(__file__))

#: Names the kernel cache directory itself (builds go in a keyed subdirectory of it).
KERNEL_CACHE_ENV = "FASTNET_KERNEL_CACHE"


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


def kernel_cache_root(platform: str = sys.platform) -> str:
    """The kernel cache directory (not created here); builds go in a keyed subdirectory.

    In order: ``$NUMBA_CACHE_DIR/fastnet/kernels`` when Numba's cache directory is set
    (``numba.config.CACHE_DIR``); else ``$FASTNET_KERNEL_CACHE``; else the per-user cache:
    ``%LOCALAPPDATA%\\fastnet\\kernels`` on Windows, ``~/Library/Caches/fastnet/kernels`` on
    macOS, ``$XDG_CACHE_HOME/fastnet/kernels`` or ``~/.cache/fastnet/kernels`` elsewhere.
    """
    from numba.core import config as numba_config
    if numba_config.CACHE_DIR:
        return os.path.join(os.path.abspath(os.path.expanduser(numba_config.CACHE_DIR)),
                            "fastnet", "kernels")
    if os.environ.get(KERNEL_CACHE_ENV):
        return os.path.abspath(os.path.expanduser(os.environ[KERNEL_CACHE_ENV]))
    home = os.path.expanduser("~")
    if platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
    elif platform == "darwin":
        base = os.path.join(home, "Library", "Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    return os.path.join(os.path.abspath(os.path.expanduser(base)), "fastnet", "kernels")


def cache_key(fastnet_version: str, numba_version: str, digest: bytes) -> str:
    """The subdirectory name of one install's builds: ``<fastnet>-numba<numba>-<digest>``.

    Numba keeps one index per function and Python version in a directory and drops the entries
    of another Numba version or source stamp when it rewrites it, so installs that differ in
    any of these would otherwise overwrite each other's builds on every run."""
    def clean(text):
        return "".join(c if c.isalnum() or c in ".+_" else "_" for c in text)
    return f"{clean(fastnet_version)}-numba{clean(numba_version)}-{digest.hex()[:16]}"


def _fastnet_version() -> str:
    # fastnet/__init__ has run by the time a kernel module is imported (a kernel module is a
    # submodule of fastnet); the installed metadata covers a partly initialised package.
    version = getattr(sys.modules.get("fastnet"), "__version__", None)
    if version is None:
        from importlib import metadata
        try:
            version = metadata.version("fastnet")
        except metadata.PackageNotFoundError:
            version = "unknown"
    return version


def kernel_cache_dir() -> str:
    """The directory this install's kernel builds are cached in (not created here):
    ``kernel_cache_root()`` joined with ``cache_key(...)`` for this fastnet, Numba and kernel
    sources."""
    import numba
    return os.path.join(kernel_cache_root(),
                        cache_key(_fastnet_version(), numba.__version__, _PackageStamp.digest()))


def _is_kernel_file(py_file: str) -> bool:
    return os.path.dirname(os.path.abspath(py_file)) == _KERNELS_DIR


class _PackageStamp:
    """Cache-locator mixin for this package's files: their stamp is the digest of all of them
    (computed once per process, when the first kernel is defined)."""

    _digest = None

    @staticmethod
    def digest() -> bytes:
        if _PackageStamp._digest is None:
            _PackageStamp._digest = sources_digest()
        return _PackageStamp._digest

    def get_source_stamp(self):
        return _PackageStamp.digest()


_warned_unwritable = False
_scratch_dir = None


def _scratch_cache_dir() -> str:
    """A directory of this process's own, removed at exit: where builds go when the kernel
    cache directory cannot be written, so that kernels still compile (once per process)."""
    global _scratch_dir
    if _scratch_dir is None:
        import atexit
        import shutil
        import tempfile
        _scratch_dir = tempfile.mkdtemp(prefix="fastnet-kernels-")
        atexit.register(shutil.rmtree, _scratch_dir, ignore_errors=True)
    return _scratch_dir


def _install_locators():
    try:
        from numba.core import caching
        classes = caching.CacheImpl._locator_classes
        base = caching.InTreeCacheLocator
    except (ImportError, AttributeError):
        return
    if any(issubclass(c, _PackageStamp) for c in classes):
        return

    class FastnetKernelCacheLocator(_PackageStamp, base):
        """Numba's source-file locator with its directory moved out of the package, to
        ``kernel_cache_dir()``. It serves the kernels of this package only (others go on to
        Numba's locators). When that directory cannot be written, builds go to a temporary
        directory of the process's own rather than on to Numba's next locator, the package's
        ``__pycache__`` (only when no temporary directory can be made either)."""

        def __init__(self, py_func, py_file, directory):
            super().__init__(py_func, py_file)
            self._cache_path = directory

        @classmethod
        def _usable(cls, py_func, py_file, directory):
            locator = cls(py_func, py_file, directory)
            try:
                locator.ensure_cache_path()     # creates it, checks it is writable
            except OSError:
                return None
            return locator

        @classmethod
        def from_function(cls, py_func, py_file):
            global _warned_unwritable
            if not _is_kernel_file(py_file) or not os.path.exists(py_file):
                return None
            directory = kernel_cache_dir()
            locator = cls._usable(py_func, py_file, directory)
            if locator is None:
                if not _warned_unwritable:
                    _warned_unwritable = True
                    import warnings
                    warnings.warn(
                        f"fastnet: cannot write the kernel cache directory {directory}; "
                        f"kernels compile again in every process (set {KERNEL_CACHE_ENV} or "
                        f"NUMBA_CACHE_DIR to a writable directory)", RuntimeWarning,
                        stacklevel=2)
                try:
                    locator = cls._usable(py_func, py_file, _scratch_cache_dir())
                except OSError:
                    return None
            return locator

    classes.insert(0, FastnetKernelCacheLocator)


_install_locators()
# fastmath lets LLVM vectorise reductions; it is used only in kernels whose tests pass with
# margin under it, and never where NaN/inf must be detected (validation happens in Python).
FASTMATH = {"contract", "reassoc", "nsz", "arcp"}
# The options of every CPU kernel. error_model="numpy": a float division by zero gives inf/NaN
# (IEEE) instead of a Python ZeroDivisionError; the check that raises it is a branch in every
# division, and it keeps LLVM from vectorising any loop holding one (the sigmoid's, for one).
# Kernels never divide by zero on valid input: the Python layer validates first.
# _nrt=True (Numba's reference counting, its default) is explicit: a function compiled without
# it (CPU_LITE) would otherwise have every function it calls compiled without it too,
# and a later counting caller would reuse that build.
CPU_JIT = dict(cache=CACHE, fastmath=FASTMATH, nogil=True, error_model="numpy", _nrt=True)
# CPU_LITE: kernels that allocate nothing and return no array (nor a tuple holding one) are
# compiled without Numba's reference counting: each array view a function makes or passes
# otherwise costs two atomic updates of a reference count, and a fused step makes dozens of
# views per sample. A lite function may call CPU_JIT ones (they count their own references
# whoever calls them; the views passed in are borrowed). Numba refuses a call that returns a
# new array inside a lite function: the helpers that return a view are an intrinsic
# (``simd.rows_of``) or inlined. tests/test_sparse.py checks that none returns an array.
CPU_LITE = dict(CPU_JIT, _nrt=False)
# CPU_PARALLEL: kernels that split their work under ``prange`` (Numba's other parallel
# transformations off: the loops are written out).
CPU_PARALLEL = dict(CPU_JIT, parallel={"comprehension": False, "reduction": False,
                                       "inplace_binop": False, "setitem": False,
                                       "numpy": False, "stencil": False, "fusion": False,
                                       "prange": True})

# CUDA launch configuration.
THREADS_PER_BLOCK = int(os.environ.get("FASTNET_CUDA_TPB", "256"))
