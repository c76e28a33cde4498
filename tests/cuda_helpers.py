"""Shared by the CUDA test files: running a simulator suite in a subprocess (so the simulated
and the real CUDA target never mix in one process), and the real-GPU skip logic."""

import functools
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
HAVE_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None or \
    importlib.util.find_spec("numba.cuda") is not None


def _simulate(script: str, *args: str) -> subprocess.CompletedProcess:
    """``tests/cuda_sim/<script>`` under pytest with NUMBA_ENABLE_CUDASIM=1 and 32 threads per
    block, in a subprocess."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", FASTNET_CUDA_TPB="32",
               PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS / "cuda_sim"),
                                           os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
           "no:randomly", str(TESTS / "cuda_sim" / script), *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@functools.lru_cache(maxsize=None)
def simulated_outcomes(script: str) -> dict:
    """Run ``tests/cuda_sim/<script>`` once under the simulator (``_simulate``) and return each
    of its tests' ``(outcome, message)`` by name: outcome "passed", "failed" or "skipped"."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        r = _simulate(script, f"--junitxml={report}")
        assert report.exists(), f"simulator run failed:\n{(r.stdout + r.stderr)[-6000:]}"
        cases = list(ET.parse(report).iter("testcase"))
    outcomes = {}
    for case in cases:
        outcomes[case.get("name")] = ("passed", "")
        for tag, outcome in (("failure", "failed"), ("error", "failed"), ("skipped", "skipped")):
            found = case.find(tag)
            if found is not None:
                outcomes[case.get("name")] = (outcome, f"{found.get('message')}\n{found.text}")
                break
    return outcomes


def run_simulated(script: str) -> None:
    """Run ``tests/cuda_sim/<script>`` under the simulator (``_simulate``); fail with the
    output's tail unless everything in it passed."""
    r = _simulate(script)
    tail = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0, f"simulator run failed:\n{tail}"
    assert " passed" in r.stdout and "skipped" not in r.stdout.splitlines()[-1], tail


def gpu_checks_or_skip(module: str):
    """Import ``tests/cuda_sim/<module>`` for a real-GPU test, or skip with the reason."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        pytest.skip("NUMBA_ENABLE_CUDASIM is set: the real-GPU tests need the real target")
    if not HAVE_NUMBA_CUDA:
        pytest.skip("numba-cuda is not installed")
    from fastnet.kernels import cuda_target as _cuda
    if not _cuda.is_available():
        pytest.skip("no CUDA GPU: numba.cuda.is_available() is False")
    if str(TESTS / "cuda_sim") not in sys.path:
        sys.path.insert(0, str(TESTS / "cuda_sim"))
    return importlib.import_module(module)
