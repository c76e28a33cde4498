"""The kernels' disk cache is keyed on all of the package's kernel sources
(``fastnet.kernels.config``): a kernel compiles in functions from the other kernel modules, so
an edit there must invalidate it too."""

import numpy as np
from numba import njit

from fastnet.kernels import cnn_cpu, config, conv_cpu


def test_kernels_use_the_package_stamp():
    for dispatcher in (conv_cpu.convpool_forward_into, cnn_cpu.epoch_worker):
        locator = dispatcher._cache._impl.locator
        assert isinstance(locator, config._PackageStamp), type(locator)
        assert locator.get_source_stamp() == config.sources_digest()


def test_digest_follows_every_source_file(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("ignored")
    first = config.sources_digest(str(tmp_path))
    (tmp_path / "notes.txt").write_text("still ignored")
    assert config.sources_digest(str(tmp_path)) == first
    (tmp_path / "b.py").write_text("y = 3\n")
    changed = config.sources_digest(str(tmp_path))
    assert changed != first
    (tmp_path / "c.py").write_text("")
    assert config.sources_digest(str(tmp_path)) != changed


def test_other_code_keeps_numbas_locator():
    """A cached function outside the package is left to Numba's own locators."""
    @njit(cache=True)
    def outside(a):
        return a.sum()

    assert outside(np.ones(3)) == 3.0
    assert not isinstance(outside._cache._impl.locator, config._PackageStamp)
