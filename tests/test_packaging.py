"""pyproject.toml's package list names every package of the source tree: ``pip install .``
(not editable) installs only the packages listed, so one left out imports from a checkout and
fails after a real install (``fastnet.devices`` did)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else \
    pytest.importorskip("tomli")


def test_every_package_is_listed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    dirs = config.get("package-dir", {})
    found = set()
    for package, where in {"fastnet": dirs.get("fastnet", "fastnet"),
                           "fastnet.kernels": dirs.get("fastnet.kernels", "kernels")}.items():
        base = ROOT / where
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            found.add(".".join((package,) + rel))
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"
