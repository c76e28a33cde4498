"""Many training runs at once: ``fastnet.sweep(spec, db=...)`` and ``fastnet sweep SPEC.toml``.

A spec (``fastnet/sweep_spec.py``: a TOML file, its text or a dict; ``parse_spec``,
``expand``, ``table_spec`` are re-exported here) names a base run and what varies; ``build``
makes a run's model and ``fit`` arguments, ``run_one`` trains it. The runs go to local worker
processes (each loads the data and the kernels once and trains with its share of the cores),
to a Dask cluster (``fastnet/sweep_dask.py``) or to an Optuna search
(``fastnet/sweep_optuna.py``); the results go to SQLite as they finish
(``fastnet/sweep_db.py``). The command line is ``fastnet/cli_sweep.py``.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

from fastnet.sweep_spec import (TABLES, Run, Spec, _key, _schedule, expand,  # noqa: F401
                                parse_spec, table_spec)   # the spec's API, as fastnet.sweep's

# ----------------------------------------------------------------------------- one run


def build(config: dict):
    """``(model, fit_kwargs)`` of a run's config, as ``fastnet train`` builds them."""
    from fastnet.model import Model
    from fastnet.presets import PRESETS
    preset = PRESETS[config["preset"]] if config["preset"] else None
    model_kw, fit_kw, seed = config["model"], dict(config["fit"]), config["seed"]
    kw = preset.fit_kwargs() if preset else {"lmbda": 0.0}
    kw.update({k: v for k, v in fit_kw.items() if k != "schedule"})
    if kw.get("optimizer", "sgd") != "sgd" and "lr" not in fit_kw:
        from fastnet.optimizers import as_optimizer
        kw["lr"] = as_optimizer(kw["optimizer"]).lr     # the preset's rate is SGD's
    if "schedule" in fit_kw:
        kw["lr"] = _schedule(fit_kw["schedule"])(kw["lr"], kw["epochs"])
    dtype = model_kw.get("dtype", "float32")
    dense = preset is None or preset.net.startswith("dense:")
    if preset is not None and not (set(model_kw) - {"dtype"}):
        model = preset.model(dtype=dtype, seed=seed)
    elif not dense:
        raise ValueError(f"model.{sorted(model_kw)[0]} applies to dense networks; preset "
                         f"{preset.name} is the book's own layers")
    else:
        sizes = model_kw.get("sizes") or [int(s) for s in preset.net[6:].split(",")]
        model = Model(sizes, activation=model_kw.get("activation", getattr(
            preset, "activation", "sigmoid")), loss=model_kw.get("loss", getattr(
                preset, "loss", "quadratic")), init=model_kw.get("init", getattr(
                    preset, "init", "large")), dtype=dtype, seed=seed)
    return model, kw


class _Data:
    """A worker's data: ``(train, val, test)`` loaded once per process, cut to the spec's
    limits (and the preset's, e.g. the first 1,000 images) per run."""

    def __init__(self, arrays=None, path=None):
        self.arrays, self.path, self._cut = arrays, path, {}

    def get(self, config: dict):
        data = config["data"]
        key = json.dumps([data, config["preset"]], sort_keys=True)
        if key in self._cut:
            return self._cut[key]
        if self.arrays is None:
            from fastnet import datasets
            load = (datasets.load_fashion_mnist if data.get("dataset") == "fashion-mnist"
                    else datasets.load_mnist)
            self.arrays = load(self.path or data.get("path"), verbose=False)
        (x, y), (xv, yv), (xt, yt) = self.arrays
        from fastnet.presets import PRESETS
        preset = PRESETS[config["preset"]] if config["preset"] else None
        n = data.get("train")
        if preset is not None and preset.train_limit:
            n = min(n, preset.train_limit) if n is not None else preset.train_limit
        x, y = (x[:n], y[:n]) if n is not None else (x, y)
        nv, nt = data.get("validation"), data.get("test")
        xv, yv = (xv[:nv], yv[:nv]) if nv is not None else (xv, yv)
        xt, yt = (xt[:nt], yt[:nt]) if nt is not None else (xt, yt)
        if preset is not None and preset.expand:
            from fastnet.datasets import expand_by_shifts
            x, y = expand_by_shifts(x, y, seed=0)
        self._cut[key] = out = ((x, y), (xv, yv), (xt, yt))
        return out


def _limit(arrays, data: dict):
    """``(train, val, test)`` cut to the first n of each that ``[data]`` asks for."""
    return tuple((x[:n], y[:n]) if n is not None else (x, y) for (x, y), n in
                 zip(arrays, (data.get("train"), data.get("validation"), data.get("test"))))


def run_one(config: dict, data: _Data, threads: int | None, callbacks=()) -> dict:
    """Train one run; its result row (``status`` done or failed, with the error; pruned
    when one of ``callbacks`` stopped it and says so by a true ``pruned``)."""
    import platform

    import fastnet
    start = time.perf_counter()
    out = {"machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores)",
           "fastnet_version": fastnet.__version__, "threads": threads}
    try:
        train, val, test = data.get(config)          # once per worker, not timed
        start = time.perf_counter()
        model, kw = build(config)
        kw.setdefault("training_metrics", False)
        history = model.fit(*train, **kw, validation_data=val if len(val[1]) else None,
                            threads=threads, verbose=False, progress=False,
                            callbacks=list(callbacks))
        score = model.evaluate(*test) if len(test[1]) else {}
        pruned = any(getattr(cb, "pruned", False) for cb in callbacks)
        out.update(status="pruned" if pruned else "done", test_accuracy=score.get("accuracy"),
                   test_loss=score.get("loss"),
                   val_accuracy=history.val_accuracy[-1] if history.val_accuracy else None,
                   history={k: list(v) for k, v in vars(history).items()})
    except Exception as exc:                      # recorded; the sweep goes on
        out.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc(limit=8))
    out["seconds"] = time.perf_counter() - start
    return out


# ----------------------------------------------------------------------- local processes

_WORKER: dict = {}


def _init_worker(arrays, path, threads) -> None:
    _WORKER.update(data=_Data(arrays, path), threads=threads)


def _local_task(config: dict, trial=None) -> dict:
    """One run in a worker; ``trial``: ``(storage URL, study name, trial id)`` of an Optuna
    trial to report each epoch's validation accuracy to (``fastnet/sweep_optuna.py``)."""
    callbacks = ()
    if trial is not None:
        from fastnet.sweep_optuna import Pruning
        callbacks = (Pruning(*trial),)
    return run_one(config, _WORKER["data"], _WORKER["threads"], callbacks)


def split_cores(workers: int | None, threads: int | None, cores: int | None = None):
    """``(workers, threads per run)``: by default one worker per core, one thread each; a
    given count of either shares the cores out (at least one thread per run)."""
    cores = cores or os.cpu_count() or 1
    if workers is not None:
        from fastnet import _checks
        workers = _checks.positive_int(workers, "workers")
    if threads is not None:
        from fastnet import _checks
        threads = _checks.positive_int(threads, "threads")
    if workers is None:
        workers = max(1, cores // (threads or 1))
    return workers, threads or max(1, cores // workers)


class LocalExecutor:
    """Runs on ``workers`` processes of this machine (spawned: Numba's threads are not safe
    to fork). A worker that dies takes its pool down; the runs then in flight are tried again
    one at a time, and one that kills its worker alone is recorded failed."""

    def __init__(self, workers: int, threads: int, arrays=None, path=None, task=None):
        self.workers, self.threads = workers, threads
        self.arrays, self.path, self.task = arrays, path, task or _local_task
        self.pool, self._suspect_ids = None, set()

    def _start(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        self.pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"),
                                        initializer=_init_worker,
                                        initargs=(self.arrays, self.path, self.threads))

    def run(self, runs: list[Run], record) -> None:
        """Train ``runs``; ``record(run, event, result)`` with event "start" or "end"."""
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool
        queue, suspects, flying = list(runs), [], {}
        self._start()
        try:
            while queue or suspects or flying:
                solo = bool(suspects) or any(r.id in self._suspect_ids for r in flying.values())
                while not solo and queue and len(flying) < self.workers:
                    run = queue.pop(0)
                    flying[self.pool.submit(self.task, run.config)] = run
                    record(run, "start", None)
                if solo and not flying and suspects:
                    run = suspects.pop(0)
                    flying[self.pool.submit(self.task, run.config)] = run
                    record(run, "start", None)
                done, _ = wait(list(flying), return_when=FIRST_COMPLETED)
                broken = []
                for fut in done:
                    run = flying.pop(fut)
                    try:
                        record(run, "end", fut.result())
                    except BrokenProcessPool:
                        broken.append(run)
                if broken:
                    broken += list(flying.values())
                    flying.clear()
                    self.pool.shutdown(wait=True, cancel_futures=True)
                    for run in broken:
                        if run.id in self._suspect_ids:
                            record(run, "end", {"status": "failed", "seconds": None,
                                                "error": "the worker process died during "
                                                         "this run (killed, out of memory "
                                                         "or crashed)"})
                        else:
                            self._suspect_ids.add(run.id)
                            suspects.append(run)
                    self._start()
        except BaseException:          # Ctrl-C, SIGTERM, a failing record: stop the runs too
            self._terminate()
            raise
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)

    def _terminate(self) -> None:
        stop = getattr(self.pool, "terminate_workers", None)        # Python 3.14
        if stop is not None:
            stop()
            return
        for proc in list((getattr(self.pool, "_processes", None) or {}).values()):
            if proc.is_alive():
                proc.terminate()


def sweep(spec, *, db, workers: int | None = None, client=None, threads: int | None = None,
          data=None, retry_failed: bool = False, progress=None) -> list[dict]:
    """Run every run of ``spec`` not yet done in the SQLite file ``db``; returns the rows of
    this sweep's runs (``fastnet.sweep_db.SweepDB.rows``).

    spec: a TOML file name or ``Path``, TOML text, a dict, or a ``Spec``.
    workers, threads: local worker processes and CPU threads per run (default: one per core,
    one thread each; ``split_cores``). client: a ``dask.distributed.Client``: the runs go to
    its cluster instead (``fastnet/sweep_dask.py``; threads per run default to the worker
    host's cores over its worker processes). data: ``(train, val, test)`` as ``load_mnist``
    gives them (sent to each worker once), or the directory of the IDX files; None: each
    worker loads the spec's data set (``[data] path``, else ``$FASTNET_DATA`` and fastnet's
    usual places).
    retry_failed: run failed runs again (runs left ``running`` by an interrupted sweep always
    are). progress: ``progress(row, done, total)`` after each run (None: nothing).
    """
    from fastnet.sweep_db import SweepDB
    if not isinstance(spec, Spec):
        spec = parse_spec(spec)
    if client is None:
        workers, threads = split_cores(workers, threads)
    elif workers is not None:
        raise ValueError("workers is for local processes; a Dask cluster has its own")
    elif threads is not None:
        from fastnet import _checks
        threads = _checks.positive_int(threads, "threads")
    if spec.search == "optuna":
        if client is not None:
            raise ValueError("search = 'optuna' runs on local worker processes (its trials "
                             "report to the study in the database file)")
        from fastnet.sweep_optuna import optimize
        if data is not None and not isinstance(data, (str, Path)):
            data = _limit(data, spec.data)
        return optimize(spec, db, workers, threads, data, progress)
    runs = expand(spec)
    with SweepDB(db) as store:
        store.add(spec.text, runs)
        todo = store.pending([r.id for r in runs], retry_failed=retry_failed)
        todo_runs = [r for r in runs if r.id in todo]
        total, finished = len(todo_runs), [0]

        def record(run, event, result):
            if event == "start":
                store.start(run.id)
                return
            store.finish(run.id, result)
            finished[0] += 1
            if progress is not None:
                progress(store.row(run.id), finished[0], total)

        if todo_runs:
            if data is not None and not isinstance(data, (str, Path)):
                data = _limit(data, spec.data)      # less to send to each worker
            if client is not None:
                from fastnet.sweep_dask import DaskExecutor
                DaskExecutor(client, threads, data).run(todo_runs, record)
            else:
                arrays, path = (None, data) if isinstance(data, (str, Path)) else (data, None)
                LocalExecutor(min(workers, len(todo_runs)), threads, arrays,
                              path).run(todo_runs, record)
        return store.rows([r.id for r in runs])
