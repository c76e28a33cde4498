"""``fastnet sweep``: many training runs from a spec (``fastnet/sweep.py``) on local worker
processes or a Dask cluster (``--scheduler``), results in SQLite; ``--report DB`` prints the
table of a sweep database (and ``--plot DIR`` draws accuracy against each swept value).
Everything is checked before the first run starts; usage errors are exit status 2."""

from __future__ import annotations

import sys
from pathlib import Path

from fastnet._cli import UsageError, check_writable, needs
from fastnet.sweep_spec import TABLES

EXAMPLE = """spec example (TOML):
  preset = "ch1"            # a fastnet train preset; or [model] sizes = [784, 30, 10], ...
  seeds = [0, 1, 2]
  [fit]                     # Model.fit arguments for every run
  epochs = 10
  [grid]                    # every combination; model.<name> for Model arguments
  lr = [0.025, 0.25, 2.5]
  [random]                  # trials draws (log_uniform, uniform, choice)
  # trials = 20
  # lmbda = {log_uniform = [0.01, 10.0]}
  [data]                    # optional: first n images of each set
  # train = 10000
"""


def add_parser(sub, data_arguments, formatter) -> None:
    sw = sub.add_parser("sweep", formatter_class=formatter,
                        help="many training runs at once (grids, seeds, random search) on "
                             "local processes or a Dask cluster, results in SQLite",
                        description="Run every run of SPEC not yet done in --db, on local "
                                    "worker processes (default) or a Dask cluster; one line "
                                    "per finished run. Run the same command again to resume "
                                    "an interrupted sweep. --report DB prints the table.",
                        epilog=EXAMPLE)
    sw.add_argument("spec", nargs="?", default=None, help="the sweep spec, a .toml file")
    sw.add_argument("--preset", default=None, choices=list(TABLES), metavar="TABLE",
                    help="instead of SPEC, one of the book's tables (docs/book_results.md), "
                         "row by row: " + ", ".join(f"{k} ({', '.join(v)})"
                                                    for k, v in TABLES.items()))
    sw.add_argument("--seeds", type=_positive, default=3,
                    help="with --preset: runs per row (the book reports the best of three)")
    sw.add_argument("--db", default="sweep.db", help="the SQLite file of the results")
    sw.add_argument("--workers", type=_positive, default=None,
                    help="local worker processes (default: one per core over --threads)")
    sw.add_argument("--threads", type=_positive, default=None,
                    help="CPU threads per run (default: the cores shared out between the "
                         "workers)")
    sw.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                    help="run on this Dask cluster instead (fastnet[dask])")
    sw.add_argument("--retry-failed", action="store_true",
                    help="run again the runs recorded as failed")
    sw.add_argument("--report", default=None, metavar="DB",
                    help="print the table of this sweep database and exit")
    sw.add_argument("--plot", default=None, metavar="DIR",
                    help="with --report or after the sweep: accuracy against each swept "
                         "value as PNG files in DIR (fastnet[plot])")
    sw.add_argument("--quiet", action="store_true", help="no line per run")
    data_arguments(sw)


def _positive(text: str) -> int:
    import argparse
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _runs(mod, spec) -> list:
    """The spec's runs (an Optuna search's, still to be chosen, as placeholders)."""
    return [None] * spec.trials if spec.search == "optuna" else mod.expand(spec)


def _finished(db, runs, retry_failed: bool) -> int:
    """How many of ``runs`` the file already holds finished (a resumed sweep)."""
    from fastnet import sweep_db
    ids = [r.id for r in runs if r is not None]
    if not ids or not Path(db).expanduser().exists():
        return 0
    with sweep_db.SweepDB(db, create=False) as store:
        return len(ids) - len(store.pending(ids, retry_failed=retry_failed))


def _plot_dir(where: str) -> Path:
    needs("matplotlib", "plot", "--plot")
    path = Path(where).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"--plot {where}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--plot {where}: cannot create it ({exc.strerror})") from None
    return path


def _plot(db, where: Path) -> None:
    from fastnet import sweep_db
    written = sweep_db.plot(db, where)
    print("plots: " + (", ".join(str(p) for p in written) or "none (no run done)"))


def _line(row, done: int, total: int) -> str:
    params = " ".join(f"{k}={v}" for k, v in row["params"].items())
    epochs = len((row["history"] or {}).get("seconds", []))
    what = (f"{row['test_accuracy']:.2%} test" if row["status"] == "done" and
            row["test_accuracy"] is not None else
            "done" if row["status"] == "done" else
            f"pruned after epoch {epochs}" if row["status"] == "pruned" else
            f"FAILED: {row['error']}")
    secs = f" ({row['seconds']:.1f} s)" if row["seconds"] is not None else ""
    return f"[{done}/{total}] {params} seed {row['seed']}: {what}{secs}"


def run(args) -> int:
    import importlib

    from fastnet import sweep_db
    mod = importlib.import_module("fastnet.sweep")   # fastnet.sweep is the function
    if args.report is not None:
        if args.spec is not None or args.preset is not None:
            raise UsageError("give either SPEC or --preset (run a sweep) or --report DB, "
                             "not both")
        where = _plot_dir(args.plot) if args.plot else None
        try:
            print(sweep_db.report(args.report))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if where is not None:
            _plot(args.report, where)
        return 0
    if (args.spec is None) == (args.preset is None):
        raise UsageError("give a sweep spec (SPEC.toml) or --preset TABLE to run, or "
                         "--report DB" if args.spec is None else
                         "give a sweep spec (SPEC.toml) or --preset TABLE, not both")
    try:
        spec = mod.parse_spec(Path(args.spec) if args.spec is not None else
                              mod.table_spec(args.preset, args.seeds))
        runs = _runs(mod, spec)
        if args.scheduler is None:
            workers, threads = mod.split_cores(args.workers, args.threads)
        elif args.workers is not None:
            raise ValueError("--workers is for local processes; a Dask cluster has its own")
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    check_writable(args.db, "--db")
    try:
        if Path(args.db).expanduser().exists():   # a new file only once the runs start
            with sweep_db.SweepDB(args.db, create=False):
                pass
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    where = _plot_dir(args.plot) if args.plot else None
    if spec.search == "optuna":
        needs("optuna", "optuna", "search = 'optuna'")
    client = None
    if args.scheduler is not None:
        needs("distributed", "dask", "--scheduler")
        from fastnet.sweep_dask import connect
        try:
            client = connect(args.scheduler)
        except (OSError, ValueError, TimeoutError) as exc:
            raise UsageError(f"--scheduler {args.scheduler}: {exc}") from None
    from fastnet._cli import load_data
    dataset = spec.data.get("dataset", "mnist")
    path = args.data or spec.data.get("path")
    if args.dataset != "mnist" and "dataset" not in spec.data:
        dataset = args.dataset
        spec.data["dataset"] = dataset
        runs = _runs(mod, spec)
    arrays = load_data(dataset, path)     # missing data: a usage error now, not N failures
    data = arrays if client is not None else path
    if not args.quiet:
        how = (f"on the Dask cluster at {args.scheduler}" if client is not None else
               f"on {min(workers, len(runs))} worker processes, {threads} thread"
               f"{'s' if threads > 1 else ''} each")
        kept = _finished(args.db, runs, args.retry_failed)
        print(f"sweep: {len(runs)} runs{f' ({kept} finished before, kept)' if kept else ''} "
              f"{how}; results in {args.db}", flush=True)
    progress = None if args.quiet else (lambda row, done, total: print(
        _line(row, done, total), flush=True))
    import signal

    def stop(signum, frame):          # a batch system's time limit: as Ctrl-C
        raise KeyboardInterrupt
    before = signal.signal(signal.SIGTERM, stop)
    try:
        rows = mod.sweep(spec, db=args.db, workers=None if client else workers,
                         threads=args.threads if client else threads, client=client,
                         data=data, retry_failed=args.retry_failed, progress=progress)
    except KeyboardInterrupt:
        print(f"fastnet: interrupted; run the same command again to resume (finished runs "
              f"are kept in {args.db})", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, before)
        if client is not None:
            client.close()
    done = sum(r["status"] == "done" for r in rows)
    failed = sum(r["status"] == "failed" for r in rows)
    pruned = sum(r["status"] == "pruned" for r in rows)
    print(f"sweep: {done} of {len(rows)} runs done" + (f", {pruned} pruned" if pruned else "")
          + (f", {failed} failed" if failed else "")
          + f"; fastnet sweep --report {args.db} prints the table")
    if where is not None:
        _plot(args.db, where)
    return 1 if failed else 0
