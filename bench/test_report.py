"""The report renderer on a tiny synthetic pytest-benchmark JSON (no timing, runs in CI)."""

from __future__ import annotations

import builtins
import json

import pytest

from bench import report


def _bench(group, backend, median, minimum, *, rounds=5, **info):
    return {"group": group, "name": f"test[{backend}]", "params": {"backend": backend},
            "stats": {"median": median, "min": minimum, "rounds": rounds},
            "extra_info": {"backend": backend, **info}}


@pytest.fixture
def data():
    g = "dense_forward B=10 784->30 float32"
    return {
        "datetime": "2026-11-22T00:00:00", "commit_info": {"id": "abc", "dirty": True},
        "machine_info": {"python_version": "3.11", "cpu": {"brand_raw": "Test CPU"},
                         "fastnet": {"cpu_count": 2, "loadavg_start": [1.0, 1.0, 1.0],
                                     "loadavg_end": [2.0, 1.0, 1.0],
                                     "peak_gflops": {"cpu-float32": 999.0},
                                     "peak_source": "quick"}},
        "benchmarks": [
            # group rows listed out of order: the report orders them numpy, cpu, torch_cpu
            _bench(g, "torch_cpu", 4e-3, 3e-3, flops=4e7, device="cpu", dtype="float32",
                   peak_comparable=True, threads=2),
            _bench(g, "numpy", 2e-3, 1e-3, flops=4e7, device="cpu", dtype="float32",
                   peak_comparable=True, threads=2),
            _bench(g, "cpu", 1e-4, 5e-5, flops=4e7, device="cpu", dtype="float32",
                   peak_comparable=True, threads=1),
            _bench("softmax B=10 n=10 float32", "numpy", 2e-5, 1e-5, flops=None,
                   bytes=1600.0, dtype="float32"),
            _bench("softmax B=10 n=10 float32", "cpu", 4e-6, 3e-6, flops=None, bytes=1600.0,
                   dtype="float32"),
            _bench("epoch MNIST B=10 float32", "numpy", 2.0, 2.0, rounds=1, scale=50.0,
                   timed_images=1000, flops=1e10, device="cpu", dtype="float32",
                   peak_comparable=True),
            _bench("epoch MNIST B=10 float32", "cpu", 0.5, 0.4, rounds=3, row="cpu (Model.fit)",
                   via="Model.fit", flops=1e10, device="cpu", dtype="float32",
                   peak_comparable=True),
            _bench("peak", "numpy", 1.0, 0.5, flops=2e11, peak_of="cpu-float32",
                   case="cpu 4096x4096x4096 matmul (numpy)", dtype="float32"),
        ]}


def test_markdown(data):
    md = report.render_markdown(data)
    # the peak rows win over machine_info's quick measurement: 2e11 / 0.5 s = 400 GFLOP/s
    assert "cpu-float32 400" in md and "999" not in md
    assert "Test CPU" in md and "(dirty)" in md and "[1.0, 1.0, 1.0]" in md
    lines = md.splitlines()
    summary = next(ln for ln in lines if ln.startswith("| dense_forward"))
    # columns numpy, cpu, torch_cpu (a qualified row such as "cpu (Model.fit)" only in its
    # group's table); numpy 2 ms divides; cpu 100 µs = 20×, bold as the fastest; torch 0.5×
    assert "| 2 ms (1×) | **100 µs (20×)** | 4 ms (0.5×) |" in summary
    table = lines[lines.index("## dense_forward B=10 784->30 float32"):]
    cpu_row = next(ln for ln in table if ln.startswith("| cpu |"))
    # 4e7 FLOP / 100 µs = 400 GFLOP/s = 100 % of the 400 GFLOP/s peak
    assert "| 400 | 100.0 % |" in cpu_row
    assert "| 50 µs – 50 µs | 5 |" in cpu_row   # min – max (the fixture's max is its min)
    assert [ln.split("|")[1].strip() for ln in table[4:7]] == ["numpy", "cpu", "torch_cpu"]
    soft = lines[lines.index("## softmax B=10 n=10 float32"):]
    assert "GB/s" in soft[2] and "GFLOP/s" not in soft[2]
    assert next(ln for ln in soft if ln.startswith("| cpu |")).count("| 0.4 |") == 1
    # the subset-timed numpy epoch is scaled ×50 (2 s → 100 s) and marked
    epoch = next(ln for ln in lines if ln.startswith("| epoch MNIST"))
    assert "100 s (1×)*" in epoch
    fit_row = next(ln for ln in lines if ln.startswith("| cpu (Model.fit)"))
    assert "| 500 ms | 400 ms – 400 ms | 3 | 200× |" in fit_row
    assert "timed on 1000 images, ×50" in md and "cpu (Model.fit)" in md


def test_min_statistic(data):
    md = report.render_markdown(data, stat="min")
    summary = next(ln for ln in md.splitlines() if ln.startswith("| dense_forward"))
    assert "| 1 ms (1×) | **50 µs (20×)** | 3 ms (0.333×) |" in summary


def test_a_backend_with_only_a_qualified_row_shows_it_in_the_summary(data):
    """The drop-in group's one row is "cpu (network.SGD)": the summary shows it in the cpu
    column, marked †, instead of "–" in every column."""
    data["benchmarks"].append(_bench("dropin ch1 B=10 float64", "cpu", 6.0, 5.8,
                                     row="cpu (network.SGD)", dtype="float64"))
    md = report.render_markdown(data)
    line = next(ln for ln in md.splitlines() if ln.startswith("| dropin ch1"))
    assert "6 s†" in line and "the backend's only row in that group" in md
    epoch = next(ln for ln in md.splitlines() if ln.startswith("| epoch MNIST B=10"))
    assert "500 ms (200×)†" in epoch    # cpu (Model.fit): that group's only cpu row


def test_no_reference_and_no_peak(data):
    data["benchmarks"] = [b for b in data["benchmarks"]
                          if b["extra_info"]["backend"] != "numpy"]
    del data["machine_info"]["fastnet"]["peak_gflops"]
    md = report.render_markdown(data)
    assert "Measured peak: none" in md
    # no speed-ups without a numpy or reference row
    assert "| dense_forward B=10 784->30 float32 | **100 µs** | 4 ms |" in md


def test_reference_divides_when_there_is_no_numpy_row(data):
    for b in data["benchmarks"]:
        if b["extra_info"]["backend"] == "numpy" and b["group"].startswith("dense"):
            b["extra_info"]["backend"] = b["params"]["backend"] = "reference"
    lines = report.render_markdown(data).splitlines()
    table = lines[lines.index("## dense_forward B=10 784->30 float32"):]
    assert "× reference (median)" in table[2]
    assert next(ln for ln in table if ln.startswith("| cpu |")).count("| 20× |") == 1


def test_doc_and_readme(data, tmp_path):
    for backend, t in (("jax", 1.0), ("cpu", 0.5)):
        data["benchmarks"].append(_bench("epoch MNIST B=10 float32", backend, t, t, flops=1e10,
                                         device="cpu", dtype="float32"))
    for b in data["benchmarks"]:
        if b["group"].startswith("epoch"):
            b["extra_info"]["family"] = "epoch"
    src, doc, readme = tmp_path / "r.json", tmp_path / "perf.md", tmp_path / "README.md"
    src.write_text(json.dumps(data))
    readme.write_text(f"intro\n{report.BEGIN}\nold figures\n{report.END}\noutro\n")
    assert report.main([str(src), "--doc", str(doc), "--readme", str(readme)]) == 0
    text = doc.read_text()
    assert text.startswith("# fastnet performance") and "## Training" in text
    assert "### epoch MNIST B=10 float32" in text          # a training group in full
    assert "### dense_forward" not in text and "| dense_forward" in text   # kernels: summary
    assert "No GPU in this run" in text                     # bench/doc_gpu.md
    new = readme.read_text()
    assert new.startswith("intro\n") and new.endswith("outro\n") and "old figures" not in new
    row = next(ln for ln in new.splitlines() if ln.startswith("| epoch MNIST"))
    # fastnet's cpu row (the Model.fit one is qualified) against the numpy (100 s) and jax rows
    assert "| **500 ms** | 100 s (200×) | – | – | 1 s (2×) |" in row
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="bench:begin"):
        report.main([str(src), "--readme", str(readme)])


def test_cli_and_png(data, tmp_path, monkeypatch, capsys):
    src, out, png = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "s.png"
    src.write_text(json.dumps(data))
    assert report.main([str(src), "--out", str(out)]) == 0
    assert out.read_text().startswith("# fastnet benchmarks")
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert report.main([str(src), "--out", str(out), "--png", str(png)]) == 0
    assert not png.exists() and "matplotlib is not installed" in capsys.readouterr().err
    monkeypatch.setattr(builtins, "__import__", real_import)
    pytest.importorskip("matplotlib")
    assert report.render_png(data, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rounds_from_env(monkeypatch):
    from bench.harness import rounds_from_env
    monkeypatch.delenv("FASTNET_BENCH_ROUNDS", raising=False)
    assert rounds_from_env(3) == 3
    monkeypatch.setenv("FASTNET_BENCH_ROUNDS", "9")
    assert rounds_from_env(3) == 9
    for bad in ("0", "-2", "many", "2.5"):
        monkeypatch.setenv("FASTNET_BENCH_ROUNDS", bad)
        with pytest.raises(ValueError, match="FASTNET_BENCH_ROUNDS"):
            rounds_from_env(3)
