"""The harness of the hostile-input tests: each case runs a reader on one file in a forked
child under a memory limit, so a crash (a signal), a large allocation (MemoryError) or an
undocumented exception fails that test without taking pytest down.

A test module using it defines ``CHECKS`` (name → function of a path, run in the child; it
returns normally when the reader accepted the file) and ``DOCUMENTED`` (the exceptions a reader
may refuse a file with; they must name the file), and takes the ``worker`` fixture made by
``worker_fixture(__name__)``. ``run_limited(worker, check, path)`` then runs
``CHECKS[check](path)`` under ``RLIMIT_AS`` = the child's address space + ``MARGIN`` +
``PER_BYTE`` × the file's size, and returns ``"accepted"`` or the refusal's text.

The children are forked from a lean worker process (the test module imported in a fresh
interpreter), not from pytest: forking a large, threaded process costs more per example and is
less safe. Linux only (``fork``, ``/proc``); ``SKIP_REASON`` says why elsewhere.

Examples per fuzz test: ``FASTNET_FUZZ_EXAMPLES`` (default 200); with ``CI=true`` they are
derandomized, so CI runs the same ones every time (``FUZZ``).
"""

from __future__ import annotations

import faulthandler
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None

SKIP_REASON = None if (resource is not None and hasattr(os, "fork") and
                       os.path.exists("/proc/self/status")) else "needs os.fork and /proc (Linux)"
# What a child may use beyond its address space at the fork, whatever the file: Python's and
# NumPy's working memory. A refused file may cost at most ~100x its size on top.
MARGIN = 32 << 20
PER_BYTE = 100


def fuzz_settings():
    """Hypothesis settings for the fuzz tests (see the module docstring)."""
    from hypothesis import HealthCheck, settings
    return settings(max_examples=int(os.environ.get("FASTNET_FUZZ_EXAMPLES", "200")),
                    deadline=None, database=None,
                    derandomize=os.environ.get("CI", "").lower() in ("1", "true", "yes"),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def budget(path: Path) -> int:
    return PER_BYTE * Path(path).stat().st_size


def _address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _run_in_child(fn, documented, path: Path, limit_extra: int) -> tuple[int, int, str]:
    """Fork; in the child, run ``fn(path)`` under RLIMIT_AS = its address space + MARGIN +
    ``limit_extra``. Returns ``(signal or 0, exit code, text)``: code 0 with "accepted" or the
    documented error's text; 3 MemoryError; 4 an error not naming ``path``; 5 an undocumented
    exception."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code, text = 70, "child failed before running"
        try:
            os.close(r)
            faulthandler.disable()  # a crash is reported by the parent, without a dump
            limit = _address_space() + MARGIN + limit_extra
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(
                resource.RLIMIT_AS)[1]))
            try:
                fn(path)
                code, text = 0, "accepted"
            except MemoryError:
                code, text = 3, "MemoryError (allocation beyond the limit):\n" + \
                    traceback.format_exc()
            except documented as e:
                named = str(path) in str(e)
                code = 0 if named else 4
                text = f"{type(e).__name__}: {e}" + ("" if named else "\n(does not name file)")
            except BaseException:
                code, text = 5, "undocumented exception:\n" + traceback.format_exc()
            os.write(w, text.encode("utf-8", "replace")[:20000])
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return os.WTERMSIG(status), 0, text
    return 0, os.WEXITSTATUS(status), text


def serve(module) -> None:
    """The worker's loop over ``module.CHECKS``: a request per stdin line
    ``check<TAB>path<TAB>limit``, a JSON ``[signal, code, text]`` line back. ``module.warm()``,
    if defined, runs first (the readers' lazy imports, done once here)."""
    if hasattr(module, "warm"):
        module.warm()
    for line in sys.stdin:
        name, path, extra = line.rstrip("\n").split("\t")
        reply = _run_in_child(module.CHECKS[name], module.DOCUMENTED, Path(path), int(extra))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


class Worker:
    """The lean process that forks the children (see the module docstring)."""

    def __init__(self, module_name: str) -> None:
        boot = (f"import sys; sys.path.insert(0, sys.argv[1]); import hostile, {module_name}; "
                f"hostile.serve({module_name})")
        self.proc = subprocess.Popen([sys.executable, "-c", boot, str(Path(__file__).parent)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, check: str, path: Path, limit_extra: int) -> tuple[int, int, str]:
        assert "\t" not in str(path) and "\n" not in str(path)
        self.proc.stdin.write(f"{check}\t{path}\t{limit_extra}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            pytest.fail(f"the fuzzing worker died (exit {self.proc.wait()})")
        return tuple(json.loads(line))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def worker_fixture(module_name: str):
    """A module-scoped fixture ``worker`` for the test module ``module_name``."""
    @pytest.fixture(scope="module")
    def worker():
        w = Worker(module_name)
        yield w
        w.close()
    return worker


def run_limited(worker: Worker, check: str, path: Path, limit_extra: int | None = None) -> str:
    """``CHECKS[check](path)`` in a child under the memory limit (``limit_extra`` defaults to
    ``budget(path)``). Returns "accepted" or the documented error's text; fails the test on a
    crash, a MemoryError, an undocumented exception or an error that does not name ``path``."""
    extra = budget(path) if limit_extra is None else limit_extra
    signal, code, text = worker.run(check, path, extra)
    if signal:
        pytest.fail(f"{check}({path.name}) killed the process by signal {signal} (file of "
                    f"{path.stat().st_size} bytes)")
    if code != 0:
        pytest.fail(f"{check}({path.name}): {text}")
    return text
