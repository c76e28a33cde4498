"""``fastnet.sweep`` and ``fastnet sweep``: specs expanded into runs with stable ids (and bad
specs refused), a small grid on a few hundred MNIST images through the local worker processes
and through a Dask ``LocalCluster`` on loopback, results in SQLite, resume after a sweep is
stopped or killed midway, failing runs and dying workers recorded while the sweep goes on,
and the report's table."""

from __future__ import annotations

import importlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastnet
from helpers import run_cli as cli

sw = importlib.import_module("fastnet.sweep")      # fastnet.sweep is the function
from fastnet import sweep_db  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMALL = {"train": 300, "validation": 100, "test": 200}
SPEC = """
preset = "ch1"
seeds = [0, 1]
[fit]
epochs = 1
batch_size = 10
[grid]
lr = [0.5, 3.0]
[data]
train = 300
validation = 100
test = 200
"""


# ------------------------------------------------------------------ spec and expansion


def test_grid_times_seeds_with_stable_ids():
    runs = sw.expand(SPEC)
    assert [(r.params, r.seed) for r in runs] == [
        ({"lr": 0.5}, 0), ({"lr": 0.5}, 1), ({"lr": 3.0}, 0), ({"lr": 3.0}, 1)]
    assert len({r.id for r in runs}) == 4
    assert [r.id for r in sw.expand(SPEC)] == [r.id for r in runs]
    # the id follows every setting of the run, not only the swept ones
    other = sw.expand(SPEC.replace("epochs = 1", "epochs = 2"))
    assert not {r.id for r in other} & {r.id for r in runs}
    assert runs[2].config["fit"] == {"epochs": 1, "batch_size": 10, "lr": 3.0}
    assert runs[2].config["preset"] == "ch1" and runs[2].config["data"] == SMALL


def test_model_keys_and_random_draws():
    spec = {"model": {"sizes": [784, 20, 10], "loss": "cross_entropy"},
            "fit": {"epochs": 1, "batch_size": 10},
            "grid": {"model.sizes": [[784, 20, 10], [784, 40, 10]]},
            "random": {"trials": 5, "lr": {"log_uniform": [0.01, 3.0]},
                       "lmbda": {"uniform": [0.0, 2.0]},
                       "model.activation": {"choice": ["sigmoid", "tanh"]}},
            "seeds": [7]}
    runs = sw.expand(spec)
    assert len(runs) == 2 * 5
    for r in runs:
        assert 0.01 <= r.params["lr"] <= 3.0 and 0.0 <= r.params["lmbda"] <= 2.0
        assert r.config["model"]["activation"] in ("sigmoid", "tanh")
        assert r.config["model"]["loss"] == "cross_entropy"
        assert r.config["model"]["sizes"] == r.params["model.sizes"]
    lrs = [r.params["lr"] for r in runs[:5]]
    assert len(set(lrs)) == 5
    # the same draws for each grid point and on every expansion (so a re-run resumes)
    assert lrs == [r.params["lr"] for r in runs[5:]]
    assert [r.id for r in sw.expand(spec)] == [r.id for r in runs]
    # log-uniform: as many draws below the geometric mean as above, over many draws
    many = sw.expand({**spec, "grid": {}, "random": {"trials": 400,
                                                     "lr": {"log_uniform": [0.01, 1.0]}}})
    below = sum(r.params["lr"] < 0.1 for r in many)
    assert 150 < below < 250


def test_dotted_model_keys_in_toml():
    runs = sw.expand("preset = 'ch1'\n[grid]\nmodel.sizes = [[784, 20, 10], [784, 40, 10]]\n"
                     "[random]\ntrials = 2\nmodel.activation = {choice = ['tanh']}\n")
    # the two draws are the same run: kept once
    assert [r.params for r in runs] == [
        {"model.sizes": s, "model.activation": "tanh"} for s in ([784, 20, 10], [784, 40, 10])]
    model, kw = sw.build(runs[1].config)
    assert [layer.n_out for layer in model.layers] == [40, 10]
    assert model.loss == "quadratic" and kw["lr"] == 3.0 and kw["lmbda"] == 0.0


def test_book_tables_and_presets_in_the_grid():
    runs = sw.expand(sw.table_spec("ch3-table", seeds=2))
    assert [(r.params, r.seed) for r in runs] == [
        ({"preset": p}, s) for p in ("ch3", "ch3-100-large", "ch3-overfit-1000") for s in (0, 1)]
    model, kw = sw.build(runs[4].config)
    assert kw == {"epochs": 400, "batch_size": 10, "lr": 0.5, "lmbda": 0.1, "shuffle": True}
    # the preset's own data: its first 1,000 training images, whatever [data] allows
    rng = np.random.default_rng(0)
    arrays = tuple((rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n))
                   for n in (1500, 50, 60))
    (x, _), (xv, _), (xt, _) = sw._Data(arrays).get(runs[4].config)
    assert (len(x), len(xv), len(xt)) == (1000, 50, 60)
    (x, _), _, _ = sw._Data(arrays).get({**runs[4].config, "data": {"train": 300}})
    assert len(x) == 300 and len(sw._Data(arrays).get(runs[0].config)[0][0]) == 1500
    assert len(sw.expand(sw.table_spec("ch6-table"))) == 18
    with pytest.raises(ValueError, match="unknown table"):
        sw.table_spec("ch2-table")
    with pytest.raises(ValueError, match="both fixed and in"):
        sw.parse_spec("preset = 'ch1'\n[grid]\npreset = ['ch3']")
    with pytest.raises(ValueError, match="unknown preset 'ch4'"):
        sw.parse_spec("[grid]\npreset = ['ch3', 'ch4']")


@pytest.mark.parametrize("text, message", [
    ("preset = 'ch9'", "unknown preset 'ch9'"),
    ("preset = 'ch1'\nlearning_rate = 1", "unknown key 'learning_rate'"),
    ("preset = 'ch1'\n[grid]\neta = [1.0]", "unknown fit argument 'eta'"),
    ("preset = 'ch1'\n[grid]\nmodel.width = [1]", "unknown Model argument 'model.width'"),
    ("preset = 'ch1'\n[grid]\n\"model.width\" = [1]", "unknown Model argument"),
    ("preset = 'ch1'\n[grid]\nlr = []", "lr must be a non-empty list"),
    ("preset = 'ch1'\n[grid]\nlr = [0.5, -1.0]", "lr = -1.0 is not a valid value"),
    ("preset = 'ch1'\n[fit]\nepochs = 0", "epochs = 0 is not a valid value"),
    ("preset = 'ch1'\n[fit]\noptimizer = 'adamm'", "optimizer must be one of"),
    ("preset = 'ch1'\n[fit]\nschedule = 'step:x'", "schedule"),
    ("preset = 'ch1'\n[random]\nlr = {log_uniform = [0.1, 1.0]}", "give trials = N"),
    ("preset = 'ch1'\n[random]\ntrials = 3\nlr = {log_uniform = [0.0, 1.0]}", "lo > 0"),
    ("preset = 'ch1'\n[random]\ntrials = 3\nlr = {normal = [0.0, 1.0]}", "must be one of"),
    ("preset = 'ch1'\n[random]\ntrials = 3\nepochs = {uniform = [1, 5]}", "use choice"),
    ("preset = 'ch1'\n[grid]\nlr = [1.0]\n[random]\ntrials = 2\nlr = {uniform = [1, 2]}",
     "in both [grid] and [random]"),
    ("preset = 'ch1'\nseeds = [1, 1]", "distinct"),
    ("[fit]\nepochs = 1", "give preset = NAME"),
    ("[model]\nsizes = [784, 10]\n[fit]\nepochs = 1\nlr = 1.0", "give batch_size"),
    ("preset = 'ch1'\n[data]\ntrain = -1", "train must be an image count"),
    ("preset = 'ch1' ]", "not valid TOML"),
])
def test_bad_specs_refused_clearly(text, message):
    with pytest.raises(ValueError, match=None) as info:
        sw.parse_spec(text)
    assert message in str(info.value), str(info.value)


def test_spec_type_and_missing_file(tmp_path):
    with pytest.raises(TypeError, match="TOML file name"):
        sw.parse_spec(42)
    with pytest.raises(ValueError, match="cannot read it"):
        sw.parse_spec(tmp_path / "missing.toml")


def test_cores_shared_between_workers():
    assert sw.split_cores(None, None, cores=16) == (16, 1)
    assert sw.split_cores(4, None, cores=16) == (4, 4)
    assert sw.split_cores(None, 2, cores=16) == (8, 2)
    assert sw.split_cores(3, None, cores=2) == (3, 1)
    with pytest.raises(ValueError):
        sw.split_cores(0, None)


# ----------------------------------------------------------------- local worker processes


@pytest.fixture(scope="module")
def local_db(tmp_path_factory, mnist):
    db = tmp_path_factory.mktemp("sweep") / "sweep.db"
    seen = []
    rows = fastnet.sweep(SPEC, db=db, workers=2, data=mnist,
                         progress=lambda row, done, total: seen.append((done, total)))
    return db, rows, seen


def test_local_grid_records_every_run(local_db, mnist):
    db, rows, seen = local_db
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [r["status"] for r in rows] == ["done"] * 4, [r["error"] for r in rows]
    assert [r["id"] for r in rows] == [r.id for r in sw.expand(SPEC)]
    for r in rows:
        assert r["threads"] == max(1, (os.cpu_count() or 1) // 2)
        assert r["attempts"] == 1 and r["error"] is None and r["seconds"] > 0
        assert r["fastnet_version"] == fastnet.__version__ and "cores" in r["machine"]
        assert len(r["history"]["val_accuracy"]) == 1 and len(r["history"]["seconds"]) == 1
        assert 0 < r["test_accuracy"] <= 1
    # what a worker recorded is what the same run gives in this process
    run = sw.expand(SPEC)[3]
    model, kw = sw.build(run.config)
    (x, y), (xv, yv), (xt, yt) = mnist
    model.fit(x[:300], y[:300], **kw, validation_data=(xv[:100], yv[:100]),
              training_metrics=False, threads=rows[3]["threads"], verbose=False)
    assert model.evaluate(xt[:200], yt[:200])["accuracy"] == rows[3]["test_accuracy"]
    # and the table in the file is the contract's
    with sqlite3.connect(db) as con:
        got = con.execute("SELECT params, seed, status, test_accuracy, seconds, error FROM runs "
                          "ORDER BY position").fetchall()
    assert [(json.loads(p), s) for p, s, *_ in got] == [({"lr": 0.5}, 0), ({"lr": 0.5}, 1),
                                                       ({"lr": 3.0}, 0), ({"lr": 3.0}, 1)]


def test_report_table(local_db, capsys, tmp_path):
    db, rows, _ = local_db
    rc, out, err = cli(["sweep", "--report", str(db)], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["lr", "runs", "best", "mean", "spread", "s/run"]
    for line, lr in zip(lines[1:], (0.5, 3.0)):
        acc = [r["test_accuracy"] for r in rows if r["params"]["lr"] == lr]
        cells = line.split()
        assert float(cells[0]) == lr and cells[1] == "2/2"
        assert cells[2] == f"{max(acc):.2%}" and cells[3] == f"{np.mean(acc):.2%}"
        assert cells[4] == f"{max(acc) - min(acc):.2%}"
    assert len(lines) == 3
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    rc, out, err = cli(["sweep", "--report", str(db), "--plot", str(tmp_path / "p")], capsys)
    assert rc == 0, err
    for name in ("accuracy_lr.png", "curves_lr.png"):
        assert (tmp_path / "p" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{tmp_path / 'p' / 'curves_lr.png'}" in out
    # the curves: per lr, the mean over its seeds of the validation accuracy per epoch
    label, series = sweep_db._curves(rows, "lr")
    assert label == "validation accuracy" and set(series) == {"0.5", "3"}
    assert series["3"] == [np.mean([r["val_accuracy"] for r in rows[2:]])]


def test_stopped_sweep_resumes_without_repeating(tmp_path, mnist):
    """Stop the coordinator after two runs (an exception from its progress callback, as a
    Ctrl-C would): the runs then in flight stay 'running'; the re-run trains those and the
    ones never started, and none of the finished ones again."""
    db = tmp_path / "sweep.db"
    spec = SPEC.replace("seeds = [0, 1]", "seeds = [0, 1, 2]")

    def stop(row, done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fastnet.sweep(spec, db=db, workers=2, data=mnist, progress=stop)
    with sweep_db.SweepDB(db) as store:
        before = {r["id"]: r for r in store.rows()}
    done_before = {i for i, r in before.items() if r["status"] == "done"}
    assert len(before) == 6 and len(done_before) == 2
    assert {r["status"] for r in before.values()} <= {"done", "running", "pending"}
    again = []
    rows = fastnet.sweep(spec, db=db, workers=2, data=mnist,
                         progress=lambda row, done, total: again.append(row["id"]))
    assert sorted(again) == sorted(set(before) - done_before)      # each once, none lost
    assert [r["status"] for r in rows] == ["done"] * 6
    for r in rows:
        if r["id"] in done_before:
            assert r["attempts"] == 1 and r["finished"] == before[r["id"]]["finished"]
    assert fastnet.sweep(spec, db=db, workers=2, data=mnist) == rows   # nothing left to run


def test_killed_sweep_resumes(tmp_path, mnist_dir):
    """``fastnet sweep`` killed (SIGKILL, workers and all) after its first finished run;
    the same command again completes the sweep, repeating none of the finished runs."""
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace("seeds = [0, 1]", "seeds = [0, 1, 2]")
                    .replace("epochs = 1", "epochs = 3").replace("train = 300", "train = 3000"))
    db = tmp_path / "sweep.db"
    cmd = [sys.executable, "-m", "fastnet", "sweep", str(spec), "--db", str(db),
           "--workers", "1", "--data", str(mnist_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(db) as con:
                        done = con.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'"
                                           ).fetchone()[0]
                except sqlite3.OperationalError:
                    done = 0                               # the schema is being written
                if done:
                    break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()[0].decode()
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with sweep_db.SweepDB(db) as store:
        before = {r["id"]: r for r in store.rows()}
    done_before = {i for i, r in before.items() if r["status"] == "done"}
    assert 1 <= len(done_before) < 6
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("test (") == 6 - len(done_before)
    assert f"sweep: 6 runs ({len(done_before)} finished before, kept)" in out.stdout
    with sweep_db.SweepDB(db) as store:
        rows = store.rows()
    assert len(rows) == 6 and all(r["status"] == "done" for r in rows)
    for r in rows:
        if r["id"] in done_before:
            assert r["attempts"] == 1 and r["finished"] == before[r["id"]]["finished"]
        else:
            assert r["attempts"] == (2 if before[r["id"]]["status"] == "running" else 1)


def test_failing_run_recorded_and_sweep_completes(tmp_path, mnist, capsys):
    """λ = 10⁶ on 300 images makes fit's decay factor 1 − η·λ/n negative: refused by fit in
    the worker, recorded with the error; the other run completes; failed runs are kept on a
    re-run unless retried."""
    db = tmp_path / "sweep.db"
    spec = SPEC.replace("lr = [0.5, 3.0]", "lmbda = [0.0, 1e6]").replace("[0, 1]", "[0]")
    rows = fastnet.sweep(spec, db=db, workers=2, data=mnist)
    assert [r["status"] for r in rows] == ["done", "failed"]
    assert rows[1]["error"].startswith("ValueError") and "lmbda" in rows[1]["error"]
    assert rows[1]["test_accuracy"] is None and rows[0]["test_accuracy"] > 0
    assert fastnet.sweep(spec, db=db, workers=2, data=mnist)[1]["attempts"] == 1
    assert fastnet.sweep(spec, db=db, data=mnist, retry_failed=True)[1]["attempts"] == 2
    rc, out, err = cli(["sweep", "--report", str(db)], capsys)
    assert rc == 0 and "0/1 (1 failed)" in out and "failed: {\"lmbda\": 1000000.0}" in out


def crash_at_half(config):
    """A worker task that kills its process for lr 0.5 (as an out-of-memory kill would)."""
    if config["fit"]["lr"] == 0.5:
        os._exit(3)
    return {"status": "done", "test_accuracy": config["fit"]["lr"] / 10, "seconds": 0.0}


def test_dying_worker_fails_its_run_only():
    runs = sw.expand(SPEC.replace("lr = [0.5, 3.0]", "lr = [3.0, 0.5, 2.0, 1.0]")
                     .replace("[0, 1]", "[0]"))
    ends = {}

    def record(run, event, result):
        if event == "end":
            assert run.id not in ends
            ends[run.id] = result

    sw.LocalExecutor(2, 1, task=crash_at_half).run(runs, record)
    assert len(ends) == 4
    for run in runs:
        status = ends[run.id]["status"]
        assert status == ("failed" if run.params["lr"] == 0.5 else "done")
    assert "worker process died" in ends[runs[1].id]["error"]


# ------------------------------------------------------------------------ command line


def test_cli_sweep_and_usage_errors(tmp_path, mnist_dir, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace("[0, 1]", "[0]"))
    db = tmp_path / "s.db"
    rc, out, err = cli(["sweep", str(spec), "--db", str(db), "--workers", "2",
                        "--data", str(mnist_dir)], capsys)
    assert rc == 0, err
    assert out.count("test (") == 2 and "2 of 2 runs done" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("preset = 'ch1'\n[grid]\neta = [1.0]\n")
    notdb = tmp_path / "notdb.db"
    notdb.write_bytes(b"hello, this is not SQLite" * 10)
    for argv, message in [
            (["sweep", str(bad)], "unknown fit argument 'eta'"),
            (["sweep"], "give a sweep spec"),
            (["sweep", str(spec), "--preset", "ch1-table"], "not both"),
            (["sweep", "--preset", "ch2-table"], "invalid choice"),
            (["sweep", str(spec), "--report", str(db)], "not both"),
            (["sweep", "--report", str(tmp_path / "none.db")], "no such sweep database"),
            (["sweep", "--report", str(notdb)], "not a sweep database"),
            (["sweep", str(spec), "--db", str(notdb)], "not a sweep database"),
            (["sweep", str(spec), "--db", str(tmp_path / "no" / "s.db")], "does not exist"),
            (["sweep", str(spec), "--workers", "0"], "expected an integer >= 1"),
            (["sweep", str(spec), "--db", str(db), "--data", str(tmp_path)], "not found"),
            (["sweep", str(spec), "--db", str(db), "--workers", "2", "--scheduler",
              "tcp://127.0.0.1:1"], "--workers is for local processes")]:
        rc, out, err = cli(argv, capsys)
        assert rc == 2 and "Traceback" not in err and 1 <= len(err.splitlines()) <= 3, \
            (argv, rc, out, err)
        assert message in err, (argv, err)


# ------------------------------------------------------------------------------- Dask


def test_dask_local_cluster_same_results(local_db, tmp_path, mnist, mnist_dir, capsys):
    pytest.importorskip("distributed", reason="dask.distributed is not installed: "
                        "pip install 'fastnet[dask]'")
    from distributed import Client, LocalCluster
    _, local_rows, _ = local_db
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        rows = fastnet.sweep(SPEC, db=tmp_path / "dask.db", client=client, data=mnist)
        # the command line, on the same cluster by its address
        spec = tmp_path / "spec.toml"
        spec.write_text(SPEC.replace("[0, 1]", "[2]"))
        rc, out, err = cli(["sweep", str(spec), "--db", str(tmp_path / "cli.db"),
                            "--scheduler", cluster.scheduler_address,
                            "--data", str(mnist_dir)], capsys)
        assert rc == 0 and out.count("test (") == 2 and "on the Dask cluster at" in out, err
        # the data set goes to both workers once, and every run's task takes it from there
        from fastnet.sweep_dask import DaskExecutor
        ex, ends = DaskExecutor(client, data=sw._limit(mnist, SMALL)), []
        ex.run(sw.expand(SPEC), lambda run, event, result: ends.append(result))
        assert len(client.who_has(ex.scattered)[ex.scattered.key]) == 2
        assert len([e for e in ends if e is not None and e["status"] == "done"]) == 4
    assert [r["status"] for r in rows] == ["done"] * 4, [r["error"] for r in rows]
    assert [(r["id"], r["test_accuracy"]) for r in rows] == \
        [(r["id"], r["test_accuracy"]) for r in local_rows]
    assert all(r["threads"] == local_rows[0]["threads"] for r in rows)


# ----------------------------------------------------------------------------- Optuna


def test_optuna_spec_refusals():
    base = "preset = 'ch1'\nsearch = 'optuna'\n"
    for text, message in [
            (base, "takes its search space from [random]"),
            (base + "[grid]\nlr = [1.0]\n[random]\ntrials = 2\nlmbda = {uniform = [0, 1]}",
             "without a [grid]"),
            (base + "seeds = [0, 1]\n[random]\ntrials = 2\nlr = {uniform = [1, 2]}",
             "give one seed")]:
        with pytest.raises(ValueError) as info:
            sw.parse_spec(text)
        assert message in str(info.value)
    with pytest.raises(ValueError, match="fastnet.sweep runs it"):
        sw.expand(base + "[random]\ntrials = 2\nlr = {uniform = [1, 2]}")


class _StopAtTwo:
    """A stand-in for an Optuna trial whose pruner stops the run after epoch 2."""

    def __init__(self):
        self.reported = []

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return len(self.reported) == 2


def test_pruning_callback_stops_the_run(mnist):
    from fastnet.sweep_optuna import Pruning
    cb = object.__new__(Pruning)
    cb.trial, cb.pruned = _StopAtTwo(), False
    config = sw.expand(SPEC.replace("epochs = 1", "epochs = 5"))[0].config
    row = sw.run_one(config, sw._Data(sw._limit(mnist, SMALL)), 1, (cb,))
    assert row["status"] == "pruned" and cb.pruned, row.get("error")
    assert [s for s, _ in cb.trial.reported] == [1, 2]
    assert [v for _, v in cb.trial.reported] == row["history"]["val_accuracy"]


def test_optuna_search_and_resume(tmp_path, mnist):
    optuna = pytest.importorskip("optuna", reason="optuna is not installed: "
                                 "pip install 'fastnet[optuna]'")
    spec = ("preset = 'ch1'\nsearch = 'optuna'\n[fit]\nepochs = 2\n[random]\ntrials = 6\n"
            "lr = {log_uniform = [0.001, 10.0]}\n[data]\ntrain = 300\nvalidation = 100\n"
            "test = 200\n")
    db = tmp_path / "opt.db"
    rows = fastnet.sweep(spec, db=db, workers=2, data=mnist)
    assert len(rows) == 6 and {r["status"] for r in rows} <= {"done", "pruned"}
    assert sum(r["status"] == "done" for r in rows) >= 4       # the pruner's startup trials
    storage = f"sqlite:///{db}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    trials = study.get_trials()
    assert len(trials) == 6
    by_id = {r["id"]: r for r in rows}
    for t in trials:
        row = by_id[t.user_attrs["run_id"]]
        assert row["params"]["lr"] == t.params["lr"]
        if row["status"] == "done":
            assert t.state == optuna.trial.TrialState.COMPLETE
            assert t.value == row["val_accuracy"] == row["history"]["val_accuracy"][-1]
        else:
            assert t.state == optuna.trial.TrialState.PRUNED
    again = fastnet.sweep(spec, db=db, workers=2, data=mnist)     # the study is complete
    assert again == rows and len(study.get_trials()) == 6
