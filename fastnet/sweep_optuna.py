"""``search = "optuna"`` in a sweep spec: Optuna's TPE sampler chooses each run's values from
the spec's ``[random]`` distributions, learning from the runs before it, and its median pruner
stops a run whose validation accuracy after an epoch is below the median of the earlier runs'
at that epoch (the ``optuna`` package, an optional dependency).

The study lives in the sweep's SQLite file beside the ``runs`` table (Optuna's own tables,
through its RDB storage), so the worker processes report each epoch to it and a re-run of the
same spec on the same file resumes the study: finished trials count towards ``trials``, trials
left running by a killed sweep are marked failed. The objective is the final validation
accuracy (choosing on the test set would report an optimistic test accuracy).
"""

from __future__ import annotations

import hashlib
import json
import os

from fastnet.callbacks import Callback

_STORAGES: dict = {}


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError("search = 'optuna' needs optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _storage(url: str):
    if url not in _STORAGES:
        _STORAGES[url] = _optuna().storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": 60}})
    return _STORAGES[url]


def _pruner():
    return _optuna().pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)


class Pruning(Callback):
    """In a worker: reports each epoch's validation accuracy to the trial and stops the fit
    when the study's pruner says so (``pruned`` is then True)."""

    def __init__(self, url: str, study: str, trial_id: int):
        optuna = _optuna()
        study_ = optuna.load_study(study_name=study, storage=_storage(url), pruner=_pruner())
        self.trial = optuna.trial.Trial(study_, trial_id)
        self.pruned = False

    def on_epoch_end(self, end) -> None:
        values = end.history.val_accuracy
        if values:
            self.trial.report(values[-1], end.epoch)
            if self.trial.should_prune():
                self.pruned = True
                end.stop()


def _space(spec):
    """Optuna distributions of the spec's [random] table; list choices travel as JSON text."""
    optuna = _optuna()
    space = {}
    for name, (how, args) in spec.random.items():
        if how == "choice":
            space[name] = optuna.distributions.CategoricalDistribution(
                [json.dumps(v) for v in args])
        else:
            space[name] = optuna.distributions.FloatDistribution(
                args[0], args[1], log=how == "log_uniform")
    return space


def optimize(spec, db, workers: int, threads: int, data, progress) -> list[dict]:
    """``fastnet.sweep`` of a ``search = "optuna"`` spec: ``spec.trials`` trials in all (this
    file's earlier ones included), ``workers`` at a time."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from fastnet.sweep import LocalExecutor, _local_task
    from fastnet.sweep_db import SweepDB
    optuna = _optuna()
    states = optuna.trial.TrialState
    url = "sqlite:///" + os.path.abspath(os.fspath(db))
    name = "fastnet-" + hashlib.sha256(json.dumps(spec.text, sort_keys=True).encode()
                                       ).hexdigest()[:16]
    space = _space(spec)
    with SweepDB(db) as store:
        store.add(spec.text, [])
        study = optuna.create_study(study_name=name, storage=_storage(url),
                                    direction="maximize", load_if_exists=True,
                                    sampler=optuna.samplers.TPESampler(seed=spec.random_seed),
                                    pruner=_pruner())
        for t in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
            study.tell(t.number, state=states.FAIL)            # left by a killed sweep
            if "run_id" in t.user_attrs:
                store.finish(t.user_attrs["run_id"], {
                    "status": "failed", "error": "interrupted (the sweep was stopped)"})
        left = spec.trials - len(study.get_trials(deepcopy=False))
        total, finished = max(left, 0), 0
        arrays, path = (None, data) if data is None or isinstance(data, (str, os.PathLike)) \
            else (data, None)
        ex = LocalExecutor(min(workers, max(left, 1)), threads, arrays, path)
        ex._start()
        flying = {}
        try:
            while left > 0 or flying:
                while left > 0 and len(flying) < ex.workers:
                    trial = study.ask(space)
                    params = {k: json.loads(v) if isinstance(space[k], optuna.distributions
                                                            .CategoricalDistribution) else v
                              for k, v in trial.params.items()}
                    run = _run(spec, params, trial.number)
                    trial.set_user_attr("run_id", run.id)
                    store.add_runs([run])
                    store.start(run.id)
                    flying[ex.pool.submit(_local_task, run.config,
                                          (url, name, trial._trial_id))] = (run, trial)
                    left -= 1
                done, _ = wait(list(flying), return_when=FIRST_COMPLETED)
                for fut in done:
                    run, trial = flying.pop(fut)
                    try:
                        result = fut.result()
                    except Exception as exc:     # the worker died: this trial fails
                        result = {"status": "failed", "error": f"the worker process died "
                                  f"({type(exc).__name__})"}
                    if result["status"] == "done" and result.get("val_accuracy") is None:
                        result.update(status="failed", error="no validation accuracy to "
                                      "optimize: [data] validation must not be 0")
                    store.finish(run.id, result)
                    if result["status"] == "done":
                        study.tell(trial, result["val_accuracy"])
                    else:
                        study.tell(trial, state=states.PRUNED if result["status"] == "pruned"
                                   else states.FAIL)
                    finished += 1
                    if progress is not None:
                        progress(store.row(run.id), finished, total)
                if ex.pool._broken:              # a dead worker took the pool down
                    for fut, (run, trial) in list(flying.items()):
                        store.finish(run.id, {"status": "failed",
                                              "error": "the worker process died"})
                        study.tell(trial, state=states.FAIL)
                    flying.clear()
                    ex.pool.shutdown(wait=False)
                    ex._start()
        except BaseException:
            ex._terminate()
            raise
        finally:
            ex.pool.shutdown(wait=False, cancel_futures=True)
        ids = [t.user_attrs["run_id"] for t in study.get_trials(deepcopy=False)
               if "run_id" in t.user_attrs]
        return store.rows(ids)


def _run(spec, params: dict, number: int):
    from fastnet.sweep_spec import Run, _key
    model, fit = dict(spec.model), dict(spec.fit)
    for key, value in params.items():
        kind, sub = _key(key, "random")
        (model if kind == "model" else fit)[sub] = value
    config = {"preset": spec.preset, "model": model, "fit": fit, "data": spec.data,
              "seed": spec.seeds[0], "optuna_trial": number}
    rid = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return Run(rid, params, spec.seeds[0], config)
