"""fastnet's benchmark suite (pytest-benchmark) and its report renderer.

Run: ``python -m pytest bench/ --benchmark-only --benchmark-json results.json`` then
``python -m bench.report results.json``. See docs/performance.md. A bare ``pytest`` at the
repository root does not collect this folder (pyproject ``testpaths = ["tests"]``).
"""
