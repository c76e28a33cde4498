"""Render a pytest-benchmark JSON file of this suite as Markdown tables (and a PNG chart).

    python -m pytest bench/ --benchmark-only --benchmark-json results.json
    python -m bench.report results.json [--out docs/perf_table.md] [--png speedups.png]

Output: the machine and the measured peak; a summary with one line per workload (a benchmark
group) and one column per backend — time and speed-up over the group's ``numpy`` (reference)
row, the fastest backend in bold — then one table per group: median and min time, rounds,
speed-up, GFLOP/s and % of the measured peak of the row's device and dtype (GB/s for
memory-bound kernels). Speed-ups and GFLOP/s use the median (``--stat min``: the best round,
steadier on a shared machine). Rows timed on a subset carry ``scale`` in ``extra_info``:
their times are multiplied by it and marked. The PNG (matplotlib, the ``plot`` extra) is a bar chart of the
speed-ups; without matplotlib it is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

ROW_ORDER = ("numpy", "cpu", "cuda", "cuda_xfer", "torch_cpu", "torch_cuda", "torch_cuda_xfer")
REFERENCE = "numpy"


@dataclass
class Row:
    group: str
    label: str          # the backend, or e.g. "cpu (Model.fit)"
    backend: str
    time: float         # seconds of the chosen statistic, scaled to the full workload
    median: float       # seconds, scaled
    min: float
    rounds: int
    scale: float
    info: dict

    @property
    def gflops(self) -> float | None:
        f = self.info.get("flops")
        return f / self.time / 1e9 if f and self.time > 0 else None

    @property
    def gbs(self) -> float | None:
        b = self.info.get("bytes")
        return b / self.time / 1e9 if b and self.time > 0 else None


def load_rows(data: dict, stat: str = "median") -> list[Row]:
    """The rows of a pytest-benchmark JSON file; ``stat`` ("median" or "min") is the time the
    summary, speed-ups and GFLOP/s use (min is the more robust on a loaded machine)."""
    rows = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info") or {}
        stats = bench["stats"]
        scale = float(info.get("scale") or 1.0)
        backend = info.get("backend") or (bench.get("params") or {}).get("backend") or "?"
        rows.append(Row(group=bench.get("group") or bench["name"],
                        label=info.get("row") or backend, backend=backend,
                        time=stats[stat] * scale, median=stats["median"] * scale,
                        min=stats["min"] * scale,
                        rounds=int(stats["rounds"]), scale=scale, info=info))
    return rows


def peaks(data: dict, rows: list[Row]) -> tuple[dict, str]:
    """GFLOP/s by "device-dtype": the best round of the ``peak`` rows when the run has them,
    else what conftest measured into machine_info; and where they came from."""
    found = {r.info["peak_of"]: r.info["flops"] / r.min / 1e9
             for r in rows if r.group == "peak" and r.info.get("peak_of") and r.min > 0}
    if found:
        return found, "the peak rows of this run (best round)"
    fastnet = (data.get("machine_info") or {}).get("fastnet") or {}
    return dict(fastnet.get("peak_gflops") or {}), fastnet.get("peak_source", "not measured")


def fmt_time(s: float) -> str:
    for unit, f in (("s", 1.0), ("ms", 1e3), ("µs", 1e6), ("ns", 1e9)):
        if s * f >= 1 or unit == "ns":
            v = s * f
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{s} s"


def fmt_num(v: float | None, digits: int = 3) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.{digits}g}" if v < 10 ** digits else f"{v:.0f}"


def _label_key(label: str):
    """Rows in ROW_ORDER of their backend (a label may add a qualifier: "cpu (Model.fit)")."""
    base = label.split(" ")[0]
    return (ROW_ORDER.index(base) if base in ROW_ORDER else len(ROW_ORDER), label)


def _sort_key(r: Row):
    return _label_key(r.label)


def grouped(rows: list[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(r.group, []).append(r)
    return {g: sorted(rs, key=_sort_key) for g, rs in out.items()}


def reference_of(rs: list[Row]) -> Row | None:
    return next((r for r in rs if r.label == REFERENCE), None)


def speedup(r: Row, ref: Row | None) -> float | None:
    return ref.time / r.time if ref is not None and r.time > 0 else None


def _note(r: Row) -> str:
    notes = []
    if r.scale != 1.0:
        notes.append(f"timed on {r.info.get('timed_images', '?')} images, ×{r.scale:g}")
    if r.info.get("via") and r.info["via"] != "backend.train_epoch" and not r.info.get("row"):
        notes.append(r.info["via"])   # (a "row" label already names it)
    if r.info.get("note"):
        notes.append(r.info["note"])
    return "; ".join(notes)


def render_markdown(data: dict, title: str = "fastnet benchmarks", stat: str = "median") -> str:
    rows = load_rows(data, stat)
    peak, peak_source = peaks(data, rows)
    groups = grouped(rows)
    out = [f"# {title}", ""]
    out += _machine_lines(data, peak, peak_source)
    work = {g: rs for g, rs in groups.items() if g != "peak"}
    if work:
        out += ["", "## Summary", "",
                f"{stat.capitalize()} time per call (speed-up over `{REFERENCE}`); the fastest row "
                "of each "
                "workload in bold. `–`: not run.", ""]
        out += _summary_table(work)
    if "peak" in groups:
        out += ["", "## peak", "", "| measurement | median | best | GFLOP/s (best) |",
                "| --- | --- | --- | --- |"]
        for r in groups["peak"]:
            out.append(f"| {r.info.get('case', r.label)} {r.info.get('dtype', '')} | "
                       f"{fmt_time(r.median)} | {fmt_time(r.min)} | "
                       f"{fmt_num(r.info['flops'] / r.min / 1e9)} |")
    for g, rs in work.items():
        out += ["", f"## {g}", ""] + _group_table(rs, peak, stat)
    return "\n".join(out) + "\n"


def _machine_lines(data: dict, peak: dict, source: str) -> list[str]:
    mi = data.get("machine_info") or {}
    fn = mi.get("fastnet") or {}
    cpu = (mi.get("cpu") or {}).get("brand_raw") or mi.get("processor") or "?"
    lines = [f"- **{mi['note']}**"] if mi.get("note") else []
    lines += [f"- Date: {data.get('datetime', '?')}; commit: "
             f"{(data.get('commit_info') or {}).get('id', '?')}"
             f"{' (dirty)' if (data.get('commit_info') or {}).get('dirty') else ''}",
             f"- Machine: {cpu}, {fn.get('cpu_count', '?')} logical CPUs; "
             f"{mi.get('python_implementation', '')} {mi.get('python_version', '')}"]
    if fn.get("versions"):
        lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in fn["versions"].items()))
    if fn.get("loadavg_start") is not None:
        lines.append(f"- Load average (1, 5, 15 min) at start {fn['loadavg_start']}, at end "
                     f"{fn.get('loadavg_end')}")
    if fn.get("small"):
        lines.append("- **FASTNET_BENCH_SMALL=1: shrunken workloads, not for comparison**")
    if peak:
        lines.append("- Measured peak (GFLOP/s, " + source + "): " +
                     ", ".join(f"{k} {fmt_num(v)}" for k, v in sorted(peak.items())))
    else:
        lines.append("- Measured peak: none in this file (run bench/test_peak.py)")
    return lines


def _summary_table(groups: dict[str, list[Row]]) -> list[str]:
    labels = sorted({r.label for rs in groups.values() for r in rs}, key=_label_key)
    lines = ["| workload | " + " | ".join(labels) + " |",
             "| --- |" + " --- |" * len(labels)]
    for g, rs in groups.items():
        ref = reference_of(rs)
        by = {r.label: r for r in rs}
        best = min(rs, key=lambda r: r.time)
        cells = []
        for lab in labels:
            r = by.get(lab)
            if r is None:
                cells.append("–")
                continue
            s = speedup(r, ref)
            cell = fmt_time(r.time) + (f" ({fmt_num(s)}×)" if s is not None else "")
            if r.scale != 1.0:
                cell += "*"
            cells.append(f"**{cell}**" if r is best and len(rs) > 1 else cell)
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    if any(r.scale != 1.0 for rs in groups.values() for r in rs):
        lines += ["", "\\* timed on a subset of the images and scaled to the full epoch."]
    return lines


def _group_table(rs: list[Row], peak: dict, stat: str) -> list[str]:
    ref = reference_of(rs)
    has_flops = any(r.gflops is not None for r in rs)
    has_bytes = any(r.gbs is not None for r in rs)
    head = ["backend", "median", "min", "rounds", f"speed-up vs {REFERENCE} ({stat})"]
    if has_flops:
        head += [f"GFLOP/s ({stat})", "% of peak"]
    if has_bytes:
        head += ["GB/s"]
    head += ["threads", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rs:
        s = speedup(r, ref)
        cells = [r.label, fmt_time(r.median), fmt_time(r.min), str(r.rounds),
                 f"{fmt_num(s)}×" if s is not None else "–"]
        if has_flops:
            p = peak.get(f"{r.info.get('device', 'cpu')}-{r.info.get('dtype', '')}")
            pct = 100.0 * r.gflops / p if (r.gflops and p and r.info.get("peak_comparable")) \
                else None
            cells += [fmt_num(r.gflops), f"{pct:.1f} %" if pct is not None else "–"]
        if has_bytes:
            cells += [fmt_num(r.gbs)]
        cells += [str(r.info.get("threads", "")), _note(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_png(data: dict, path: str, stat: str = "median") -> bool:
    """Bar chart of the speed-ups over the reference, one bar cluster per workload. Returns
    False (after saying why) when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench.report: matplotlib is not installed (pip install 'fastnet[plot]'): "
              f"no chart written to {path}", file=sys.stderr)
        return False
    groups = {g: rs for g, rs in grouped(load_rows(data, stat)).items()
              if g != "peak" and reference_of(rs) is not None}
    labels = sorted({r.label for rs in groups.values() for r in rs if r.label != REFERENCE},
                    key=_label_key)
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.45 * max(1, len(groups)) * max(1, len(labels))
                                    / 2))
    height = 0.8 / max(1, len(labels))
    names = list(groups)
    for j, lab in enumerate(labels):
        ys, xs = [], []
        for i, g in enumerate(names):
            ref = reference_of(groups[g])
            r = next((r for r in groups[g] if r.label == lab), None)
            if r is not None:
                ys.append(i + (j - (len(labels) - 1) / 2) * height)
                xs.append(speedup(r, ref))
        ax.barh(ys, xs, height=height, label=lab)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel(f"speed-up over {REFERENCE} ({stat} time, log scale)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def merge(files: list[dict]) -> dict:
    """One report from several runs: the benchmarks of all, the machine info of the first."""
    data = dict(files[0])
    data["benchmarks"] = [b for f in files for b in f.get("benchmarks", [])]
    hosts = {(f.get("machine_info") or {}).get("node") for f in files}
    if len(hosts) > 1:
        data.setdefault("machine_info", {})["note"] = (
            f"merged from runs on different machines {sorted(map(str, hosts))}: speed-ups "
            "compare rows timed on different hardware")
    return data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n")[0])
    ap.add_argument("json", nargs="+",
                    help="pytest-benchmark --benchmark-json file(s); several files (runs on the "
                         "same machine) are merged, the first one's machine info is shown")
    ap.add_argument("--out", help="write the Markdown here (default: stdout)")
    ap.add_argument("--png", help="also write a bar chart of the speed-ups (needs matplotlib)")
    ap.add_argument("--title", default="fastnet benchmarks")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="the time that the summary, speed-ups and GFLOP/s use")
    args = ap.parse_args(argv)
    data = merge([json.loads(Path(p).read_text()) for p in args.json])
    md = render_markdown(data, args.title, args.stat)
    if args.out:
        Path(args.out).write_text(md)
    else:
        sys.stdout.write(md)
    if args.png:
        render_png(data, args.png, args.stat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
