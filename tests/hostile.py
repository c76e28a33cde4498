"""Running a reader on hostile input in a child process, under a memory limit.

``outcome(fn, *args, limit=bytes)`` forks, caps the child's address space at what it already
uses plus ``limit`` (``RLIMIT_AS``), calls ``fn(*args)`` there and reports how it ended: the
name of the exception it raised, ``"ok"``, ``"MemoryError"`` when it tried to allocate past the
cap, or ``"signal N"`` when it crashed. A crash or a runaway allocation so fails one test and
leaves pytest running. Linux only (``/proc/self/statm``, ``fork``); the callers skip elsewhere.

The children call only pure-Python/NumPy readers: no Numba threads are started after a fork.
"""

from __future__ import annotations

import os
import sys

import pytest

try:
    import resource
except ImportError:  # pragma: no cover - not on Linux
    resource = None

AVAILABLE = sys.platform.startswith("linux") and resource is not None and hasattr(os, "fork")
needs_fork = pytest.mark.skipif(not AVAILABLE, reason="needs fork and RLIMIT_AS (Linux)")


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def outcome(fn, *args, limit: int) -> str:
    """How ``fn(*args)`` ends in a child allowed ``limit`` more bytes of address space."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one line, then leave without running pytest's cleanup
        os.close(read)
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            cap = _address_space() + limit
            resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY
                                                    else min(cap, hard), hard))
            try:
                fn(*args)
                result = "ok"
            except MemoryError:
                result = "MemoryError"
            except BaseException as exc:  # reported to the parent, which judges it
                result = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"[:2000]
            os.write(write, result.encode("utf-8", "replace"))
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while True:
        chunk = os.read(read, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return b"".join(chunks).decode("utf-8", "replace") or "no report"


def error_name(result: str) -> str:
    """``"builtins.ValueError"`` from an ``outcome`` line (or the line itself)."""
    return result.split(":", 1)[0]
