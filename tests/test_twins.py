"""Every maths kernel and its NumPy twin: one parametrized test per kernel family (dense,
activations, losses, conv, pool, sgd, norm) over the targets numpy | cpu | cuda-sim, each kernel
called by its own name and signature and checked by ``tests/twin_checks.py`` (one comparison
helper, ``assert_close``, and one tolerance rule, ``rounding_bound``).

numpy is ``fastnet.reference`` (the twins), cpu ``fastnet.kernels.*_cpu``. cuda-sim runs the
same checks on the CUDA kernels behind the kernels' signatures (``tests/cuda_sim/cuda_twins.py``)
under Numba's CUDA simulator, in one subprocess (``tests/cuda_sim/sim_twins.py``): each cuda-sim
test here reports its kernel's outcome there; a kernel with no CUDA counterpart is skipped with
the reason. ``test_twin_signatures`` holds the twin table to the same names and parameters.
"""

import inspect

import pytest

import twin_checks as T
from cuda_helpers import HAVE_NUMBA_CUDA, simulated_outcomes

TARGETS = ["numpy", "cpu", "cuda-sim"]


def run(family, kernel, target):
    if target != "cuda-sim":
        T.check(family, kernel, T.implementation(target, kernel), small=False)
        return
    if kernel in T.NO_CUDA:
        pytest.skip(f"no CUDA kernel: {T.NO_CUDA[kernel]}")
    if not HAVE_NUMBA_CUDA:
        pytest.skip("numba-cuda is not installed")
    outcome, message = simulated_outcomes("sim_twins.py").get(
        f"test_twin[{family}-{kernel}]", ("missing", "not run under the simulator"))
    if outcome == "skipped":
        pytest.skip(message)
    assert outcome == "passed", f"under the CUDA simulator: {message}"


def family_test(family):
    """The family's test: parametrized by its kernels and the targets."""
    @pytest.mark.parametrize("kernel, target", [(k, t) for k in T.FAMILIES[family][2]
                                                for t in TARGETS])
    def test(kernel, target):
        run(family, kernel, target)
    return test


test_dense = family_test("dense")
test_activations = family_test("activations")
test_losses = family_test("losses")
test_conv = family_test("conv")
test_pool = family_test("pool")
test_sgd = family_test("sgd")
test_norm = family_test("norm")


@pytest.mark.parametrize("kernel", sorted(T.TWINS))
def test_twin_signatures(kernel):
    """The kernel and its twin: the same name and the same parameters, in order."""
    def parameters(f):
        return list(inspect.signature(getattr(f, "py_func", f)).parameters)
    assert parameters(T.implementation("numpy", kernel)) == \
        parameters(T.implementation("cpu", kernel))


def test_every_family_kernel_has_a_twin():
    listed = [k for _, _, kernels in T.FAMILIES.values() for k in kernels]
    assert sorted(set(listed)) == sorted(listed), "a kernel in two families"
    assert set(listed) <= set(T.TWINS) and set(T.NO_CUDA) <= set(listed)
