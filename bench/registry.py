"""The workload registry of the kernel benchmarks (``bench/test_kernels.py``).

A ``Family`` is one kernel family (dense forward, conv backward, …): its cases (shapes), how
to make inputs, the float64 reference result (from ``fastnet.reference``), its FLOPs, and one
*builder* per backend. A builder takes the inputs and returns a ``Runner``: ``call()`` does the
timed work (on GPU backends the test adds the synchronisation), ``result()`` returns host
arrays of the first call's outputs to compare with the reference. Builders copy any input they
update in place, so ``result()`` after exactly one call is comparable with the reference.

A new family plugs in by creating a ``Family`` and registering builders with
``@family.impl("cpu", ...)``: ``test_kernels.py`` parametrizes over ``FAMILIES`` and the
report groups rows by family × case × dtype. ``family.missing[backend] = reason`` adds a row
that is skipped with the reason (for example a CUDA kernel that does not exist yet), so the
gap shows in the output instead of vanishing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from bench.harness import BACKENDS, HEAVY_FLOPS


@dataclass(frozen=True)
class Case:
    """One shape of a family. ``id``: for test ids (``-k`` friendly); ``name``: for the group
    title; ``batch``: samples; ``dims``: the family's other sizes."""

    id: str
    name: str
    batch: int
    dims: tuple

    def __str__(self):
        return self.id


class Runner(NamedTuple):
    call: Callable[[], object]
    result: Callable[[], dict]


Builder = Callable[[dict, str], Runner]


@dataclass
class Family:
    """A kernel family and its backends.

    inputs(case, dtype, rng) -> dict of arrays (and scalars) in ``dtype``;
    reference(inputs) -> dict of float64 (or integer) arrays, the oracle;
    flops(case) -> FLOPs of one call, or None; nbytes(case, itemsize) -> bytes moved by one
    call, or None (for memory-bound families, reported as GB/s);
    float64_backends: backends that also get a float64 row; rtol: per-dtype tolerance
    overrides for ``harness.check`` (documented where set); notes: per-backend remarks for the
    report (which kernel a row times where that is not obvious).
    """

    name: str
    cases: Callable[[], list]
    inputs: Callable
    reference: Callable[[dict], dict]
    flops: Callable[[Case], float | None] = lambda case: None
    nbytes: Callable[[Case, int], float | None] = lambda case, itemsize: None
    peak_comparable: bool = True
    float64_backends: tuple = ()
    rtol: dict = field(default_factory=dict)
    impls: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)   # backend -> a note shown in the report

    def impl(self, *backends: str):
        """Register the decorated builder for ``backends``."""
        def register(builder: Builder) -> Builder:
            for b in backends:
                assert b in BACKENDS, b
                self.impls[b] = builder
            return builder
        return register

    def heavy(self, case: Case) -> bool:
        f = self.flops(case)
        return bool(f and f > HEAVY_FLOPS)


FAMILIES: dict[str, Family] = {}


def family(**kwargs) -> Family:
    fam = Family(**kwargs)
    assert fam.name not in FAMILIES, fam.name
    FAMILIES[fam.name] = fam
    return fam


def rows() -> list[tuple[Family, Case, str, str]]:
    """Every (family, case, dtype, backend) row, in report order."""
    out = []
    for fam in FAMILIES.values():
        for case in fam.cases():
            for dtype in ("float32", "float64"):
                for backend in BACKENDS:
                    if backend not in fam.impls and backend not in fam.missing:
                        continue
                    if dtype == "float64" and backend not in fam.float64_backends:
                        continue
                    out.append((fam, case, dtype, backend))
    return out


# ---------------------------------------------------------------------------- torch helpers
def torch_env(backend: str):
    """``(torch, device, xfer)`` for a torch backend name. float32 products are true float32
    (TF32 off), like the other backends."""
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if "cuda" in backend else "cpu"
    return torch, device, backend.endswith("_xfer")


def to_torch(torch, a, device):
    """A copy of ``a`` on ``device`` (never a view of the caller's array: runners update
    their tensors in place)."""
    return torch.tensor(np.ascontiguousarray(a), device=device)


def to_host(t) -> np.ndarray:
    return t.detach().cpu().numpy()
