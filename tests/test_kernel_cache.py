"""The kernels' disk cache (``fastnet.kernels.config``).

Keyed on all of the package's kernel sources: a kernel compiles in functions from the other
kernel modules, so an edit there must invalidate it too. Kept outside the package, in a per-user
cache directory keyed by fastnet's and Numba's versions: builds left in an installed package's
``__pycache__`` outlive ``pip uninstall`` and make the leftover directory a namespace package
that shadows the next install (``.ci/readme_install.sh`` checks that end to end)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest
from numba import njit
from numba.core import config as numba_config

import fastnet
from fastnet.kernels import cnn_cpu, config, conv_cpu, conv_plan, conv_simd, pool_cpu, shuffle_cpu

KERNELS_DIR = Path(config.__file__).resolve().parent
KEY = config.cache_key(fastnet.__version__, numba.__version__, config.sources_digest())


def test_kernels_use_the_package_stamp():
    for dispatcher in (conv_cpu.convpool_forward_into, conv_simd.corr_rows, conv_plan.backward_plan,
                       pool_cpu.maxpool_forward_into, cnn_cpu.epoch_worker):
        locator = dispatcher._cache._impl.locator
        assert isinstance(locator, config._PackageStamp), type(locator)
        assert locator.get_source_stamp() == config.sources_digest()
        assert locator.get_cache_path() == config.kernel_cache_dir()


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


# --------------------------------------------------------------------- where the cache lives


def _locate():
    """The locator Numba would pick now for a package kernel (creates its directory)."""
    locator_class = type(shuffle_cpu.mt_shuffle._cache._impl.locator)
    return locator_class.from_function(shuffle_cpu.mt_shuffle.py_func, shuffle_cpu.__file__)


@pytest.fixture
def cache_env(monkeypatch, tmp_path):
    """No cache setting from the environment; HOME is an empty directory."""
    monkeypatch.setattr(numba_config, "CACHE_DIR", "")
    for name in ("FASTNET_KERNEL_CACHE", "XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_numba_cache_dir_comes_first(cache_env, monkeypatch):
    monkeypatch.setattr(numba_config, "CACHE_DIR", str(cache_env / "numba"))
    monkeypatch.setenv("FASTNET_KERNEL_CACHE", str(cache_env / "fastnet"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_env / "xdg"))
    expected = cache_env / "numba" / "fastnet" / "kernels" / KEY
    assert _locate().get_cache_path() == str(expected)
    assert expected.is_dir()


def test_fastnet_variable_names_the_cache_dir(cache_env, monkeypatch):
    monkeypatch.setenv("FASTNET_KERNEL_CACHE", str(cache_env / "fastnet"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_env / "xdg"))
    expected = cache_env / "fastnet" / KEY
    assert _locate().get_cache_path() == str(expected)
    assert expected.is_dir()


def test_platform_cache_dir_by_default(cache_env, monkeypatch):
    home = cache_env / "home"
    assert _locate().get_cache_path() == str(home / ".cache" / "fastnet" / "kernels" / KEY)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_env / "xdg"))
    assert _locate().get_cache_path() == str(cache_env / "xdg" / "fastnet" / "kernels" / KEY)
    assert config.kernel_cache_root("darwin") == str(home / "Library" / "Caches" / "fastnet"
                                                     / "kernels")
    assert config.kernel_cache_root("win32") == os.path.join(home, "AppData", "Local",
                                                             "fastnet", "kernels")
    monkeypatch.setenv("LOCALAPPDATA", str(cache_env / "local"))
    assert config.kernel_cache_root("win32") == str(cache_env / "local" / "fastnet" / "kernels")


def test_unwritable_cache_dir_warns_and_still_compiles(cache_env, monkeypatch):
    blocker = cache_env / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FASTNET_KERNEL_CACHE", str(blocker))
    monkeypatch.setattr(config, "_warned_unwritable", False)
    with pytest.warns(RuntimeWarning, match="cannot write the kernel cache directory"):
        locator = _locate()
    path = Path(locator.get_cache_path())
    assert path.is_dir() and KERNELS_DIR not in path.parents and path != KERNELS_DIR


def test_key_separates_versions():
    digest = config.sources_digest()
    keys = {config.cache_key("0.1.0", "0.61.0", digest),
            config.cache_key("0.2.0", "0.61.0", digest),
            config.cache_key("0.1.0", "0.62.0", digest),
            config.cache_key("0.1.0", "0.61.0", bytes(32))}
    assert len(keys) == 4
    assert all(os.sep not in k and "/" not in k for k in keys)
    assert config.kernel_cache_dir().endswith(os.sep + KEY)


# ------------------------------------------------------- a compile writes nothing in the package


def _builds_in(directory: Path) -> dict:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in directory.rglob("*") if p.suffix in (".nbi", ".nbc")}


_COMPILE = textwrap.dedent("""
    import numpy as np
    from fastnet.kernels import shuffle_cpu
    x = np.arange(10)
    pos = shuffle_cpu.mt_shuffle(x, np.arange(624, dtype=np.uint32), 0)
    assert sorted(x) == list(range(10)) and pos == 9, (x, pos)
    print(shuffle_cpu.mt_shuffle._cache.cache_path)
""")


def _compile_in_subprocess(tmp_path: Path, **env_vars: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "FASTNET_KERNEL_CACHE", "FASTNET_NO_CACHE")}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"), **env_vars)
    before = _builds_in(KERNELS_DIR)
    # cwd outside the checkout: from its root, "python -c" would import the source tree's
    # fastnet/ (which has no kernels/) rather than the installed package.
    run = subprocess.run([sys.executable, "-c", _COMPILE], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert _builds_in(KERNELS_DIR) == before, "a kernel build was written in the package"
    return run


def test_compile_writes_builds_in_the_user_cache_only(tmp_path):
    run = _compile_in_subprocess(tmp_path)
    cache = tmp_path / "xdg" / "fastnet" / "kernels" / KEY
    assert run.stdout.strip() == str(cache)
    assert sorted(p.name for p in cache.glob("shuffle_cpu.mt_shuffle-*.nbi"))


def test_compile_with_unwritable_cache_dir_writes_nothing(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    run = _compile_in_subprocess(tmp_path, FASTNET_KERNEL_CACHE=str(blocker))
    assert "cannot write the kernel cache directory" in run.stderr
    scratch = Path(run.stdout.strip())
    assert not scratch.exists(), "the per-process directory outlived the process"
    assert not (tmp_path / "xdg").exists()
