"""Render a pytest-benchmark JSON file of this suite as Markdown tables (and a PNG chart).

    python -m pytest bench/ --benchmark-only --benchmark-json results.json
    python -m bench.report results.json                      # the tables, to stdout
    python -m bench.report results.json --doc docs/performance.md --readme README.md

Output: the machine, the command and the measured peak; a summary with one line per workload
(a benchmark group) and one column per backend — the median time and the speed-up over the
group's ``numpy`` row (plain batched NumPy; ``reference`` where a group has no numpy row), the
fastest row in bold — then one table per group: median, min–max, rounds, speed-up, GFLOP/s and
% of the measured peak (GB/s for memory-bound kernels), threads, notes. ``--stat min`` uses the
best round instead of the median. ``--doc`` writes the whole of docs/performance.md (the text of
``bench/doc_intro.md`` and, when the run has no GPU rows, ``bench/doc_gpu.md`` around the
tables; kernel groups only in the summary); ``--readme`` rewrites the figures between the
``<!-- bench:begin -->`` and ``<!-- bench:end -->`` lines of the README. ``--png``: a bar chart
of the speed-ups (matplotlib, the ``plot`` extra).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

ROW_ORDER = ("reference", "numpy", "cpu", "cuda", "cuda_xfer", "torch_cpu", "torch_cpu_1",
             "torch_compile", "jax", "torch_cuda", "torch_cuda_xfer")
DENOMINATORS = ("numpy", "reference")   # the first one a group has divides its times
TRAINING = ("epoch", "cnn_epoch", "cnn_augment", "dropin")   # shown in full in --doc
HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass
class Row:
    group: str
    label: str          # the backend, or e.g. "cpu (Model.fit)"
    backend: str
    time: float         # seconds of the chosen statistic, scaled to the full workload
    median: float       # seconds, scaled
    min: float
    max: float
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
                        min=stats["min"] * scale, max=stats.get("max", stats["min"]) * scale,
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
    """The row that divides the group's times: ``numpy`` if it has one, else ``reference``."""
    for name in DENOMINATORS:
        r = next((r for r in rs if r.label == name), None)
        if r is not None:
            return r
    return None


def denominator(rs: list[Row]) -> str:
    r = reference_of(rs)
    return r.label if r is not None else "–"


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


def render_markdown(data: dict, title: str = "fastnet benchmarks", stat: str = "median",
                    *, doc: bool = False) -> str:
    """The report as Markdown. ``doc``: docs/performance.md — the intro text, the summary
    split into training and kernel workloads, tables in full for the training groups only,
    and the GPU note when the run has no GPU rows."""
    rows = load_rows(data, stat)
    peak, peak_source = peaks(data, rows)
    groups = grouped(rows)
    out = [f"# {title}", ""]
    if doc:
        out += [(HERE / "doc_intro.md").read_text().strip(), "", "## This run", ""]
    out += _machine_lines(data, peak, peak_source)
    work = {g: rs for g, rs in groups.items() if g != "peak"}
    train = {g: rs for g, rs in work.items() if rs[0].info.get("family") in TRAINING}
    kern = {g: rs for g, rs in work.items() if g not in train}
    legend = (f"{stat.capitalize()} of the rounds (speed-up over the group's `numpy` row, plain "
              "batched NumPy, or `reference` where it has none); the fastest row in bold; "
              "`–`: not run.")
    parts = [("Training", train), ("Kernels", kern)] if doc else [("Summary", work)]
    for name, part in parts:
        if part:
            out += ["", f"## {name}", "", legend, ""] + _summary_table(part)
    if "peak" in groups:
        out += ["", "## Peak", "", "| measurement | median | best | GFLOP/s (best) |",
                "| --- | --- | --- | --- |"]
        for r in groups["peak"]:
            out.append(f"| {r.info.get('case', r.label)} {r.info.get('dtype', '')} | "
                       f"{fmt_time(r.median)} | {fmt_time(r.min)} | "
                       f"{fmt_num(r.info['flops'] / r.min / 1e9)} |")
    for g, rs in (train if doc else work).items():
        out += ["", f"### {g}" if doc else f"## {g}", ""] + _group_table(rs, peak, stat)
    if doc and not any(r.info.get("device") == "gpu" for r in rows):
        out += ["", (HERE / "doc_gpu.md").read_text().strip()]
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
    if fn.get("command"):
        took = fn.get("suite_seconds")
        lines.append(f"- Command: `{fn['command']}`" +
                     (f" ({took / 60:.0f} min, checks and compiling included)" if took else ""))
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


def _summary_rows(rs: list[Row]) -> dict[str, Row]:
    """A group's row per backend column: the unqualified rows, and for a backend that has
    none, its only qualified row (such as the drop-in group's "cpu (network.SGD)")."""
    by = {r.label: r for r in rs if "(" not in r.label}
    qualified: dict[str, list[Row]] = {}
    for r in rs:
        if "(" in r.label:
            qualified.setdefault(r.label.split(" (")[0], []).append(r)
    by.update({base: q[0] for base, q in qualified.items() if base not in by and len(q) == 1})
    return by


def _summary_table(groups: dict[str, list[Row]]) -> list[str]:
    """One line per group, one column per backend (rows with a qualifier, such as
    "cpu (1 thread)", only in the group's own table, unless the backend has no other row
    there: then marked †)."""
    rows = {g: _summary_rows(rs) for g, rs in groups.items()}
    labels = sorted({lab for by in rows.values() for lab in by}, key=_label_key)
    lines = ["| workload | " + " | ".join(labels) + " |",
             "| --- |" + " --- |" * len(labels)]
    for g, rs in groups.items():
        ref = reference_of(rs)
        by = rows[g]
        best = min(by.values(), key=lambda r: r.time, default=None)
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
            if r.label != lab:
                cell += "†"
            cells.append(f"**{cell}**" if r is best and len(by) > 1 else cell)
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    if any(r.scale != 1.0 for rs in groups.values() for r in rs):
        lines += ["", "\\* timed on a subset of the images and scaled to the full epoch."]
    if any(r.label != lab for by in rows.values() for lab, r in by.items()):
        lines += ["", "† the backend's only row in that group, a qualified one: its table names "
                  "it."]
    return lines


def _group_table(rs: list[Row], peak: dict, stat: str) -> list[str]:
    ref = reference_of(rs)
    has_flops = any(r.gflops is not None for r in rs)
    has_bytes = any(r.gbs is not None for r in rs)
    head = ["row", "median", "min – max", "rounds", f"× {denominator(rs)} ({stat})"]
    if has_flops:
        head += [f"GFLOP/s ({stat})", "% of peak"]
    if has_bytes:
        head += ["GB/s"]
    head += ["threads", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rs:
        s = speedup(r, ref)
        cells = [r.label, fmt_time(r.median), f"{fmt_time(r.min)} – {fmt_time(r.max)}",
                 str(r.rounds),
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


README_COLUMNS = (("cpu", "fastnet (cpu)"), ("numpy", "plain NumPy"),
                  ("torch_cpu", "PyTorch eager"), ("torch_compile", "torch.compile"),
                  ("jax", "JAX jit"))


def readme_block(data: dict, stat: str = "median") -> str:
    """The README's figures: one line per training workload of the run that has a ``cpu`` row
    and a peer; each peer's time and how many times fastnet's it is; then where they come from."""
    rows = load_rows(data, stat)
    groups = {g: rs for g, rs in grouped(rows).items()
              if rs[0].info.get("family") in TRAINING}
    lines = ["| workload | " + " | ".join(t for _, t in README_COLUMNS) + " |",
             "| --- |" + " --- |" * len(README_COLUMNS)]
    for g, rs in groups.items():
        by = {r.label: r for r in rs}
        ours = by.get("cpu")
        if ours is None or not any(k in by for k, _ in README_COLUMNS[1:]):
            continue
        cells = [f"**{fmt_time(ours.time)}**"]
        for k, _ in README_COLUMNS[1:]:
            r = by.get(k)
            cells.append("–" if r is None else
                         f"{fmt_time(r.time)} ({fmt_num(r.time / ours.time)}×)")
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    mi = data.get("machine_info") or {}
    cpu = (mi.get("cpu") or {}).get("brand_raw") or "?"
    n = (mi.get("fastnet") or {}).get("cpu_count", "?")
    lines += ["", f"{stat.capitalize()} of {_rounds(rows)} rounds each, one run on {cpu} "
              f"({n} logical CPUs), {str(data.get('datetime', '?'))[:10]}; (k×): the peer's time "
              "over fastnet's. Written by `python -m bench.report` from "
              "`python -m pytest bench/ --benchmark-only`; spreads, every row and the commands "
              "in [docs/performance.md](docs/performance.md)."]
    return "\n".join(lines)


def _rounds(rows: list[Row]) -> str:
    counts = sorted({r.rounds for r in rows if r.info.get("family") in TRAINING})
    return "–".join(map(str, (counts[0], counts[-1]) if len(counts) > 1 else counts)) or "?"


def replace_block(text: str, block: str, where: str) -> str:
    """``text`` with the lines between the BEGIN and END markers replaced by ``block``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{where}: needs one {BEGIN!r} line, then one {END!r} line")
    head, rest = text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{rest.split(END, 1)[1]}"


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
    labels = sorted({r.label for rs in groups.values() for r in rs
                     if r.label not in DENOMINATORS and "(" not in r.label},
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
    ax.set_xlabel(f"speed-up over numpy (or reference) ({stat} time, log scale)")
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
    ap.add_argument("--doc", help="write docs/performance.md, the whole page, here")
    ap.add_argument("--readme", help="rewrite the figures between the bench markers of this "
                                     "README")
    ap.add_argument("--png", help="also write a bar chart of the speed-ups (needs matplotlib)")
    ap.add_argument("--title", default="fastnet benchmarks")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="the time that the summary, speed-ups and GFLOP/s use")
    args = ap.parse_args(argv)
    data = merge([json.loads(Path(p).read_text()) for p in args.json])
    if args.doc:
        _write(args.doc, render_markdown(data, "fastnet performance", args.stat, doc=True))
    if args.readme:
        path = Path(args.readme)
        _write(path, replace_block(path.read_text(), readme_block(data, args.stat), str(path)))
    md = render_markdown(data, args.title, args.stat)
    if args.out:
        _write(args.out, md)
    elif not (args.doc or args.readme):
        sys.stdout.write(md)
    if args.png:
        render_png(data, args.png, args.stat)
    return 0


def _write(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
