"""A sweep's results in one SQLite file (the standard library's ``sqlite3``), and its report.

Table ``runs``: one row per run of the sweeps added to the file — ``id`` (``fastnet.sweep``'s
stable id), ``params`` (the swept values, JSON), ``seed``, ``config`` (the run's complete
settings, JSON), ``status`` (``pending``, ``running``, ``done``, ``failed``, or ``pruned``:
stopped early by an Optuna search),
``test_accuracy``, ``test_loss``, ``val_accuracy``, ``seconds`` (wall time of the run),
``error``, ``history`` (``Model.fit``'s per-epoch ``History``, JSON), ``machine``,
``fastnet_version``, ``threads``, ``attempts`` (times started), ``started``/``finished``
(UTC). Table ``specs``: each spec added, as JSON. Only the coordinating process writes; each
change is its own transaction, so a killed sweep leaves every finished run in the file.

``report(db)`` is the table of ``fastnet sweep --report``: per combination of swept values
the best of its seeds, the mean and the spread, as the book reports its runs.
"""

from __future__ import annotations

import json
import math
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, position INTEGER NOT NULL, params TEXT NOT NULL,
    seed INTEGER NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'done', 'failed', 'pruned')),
    test_accuracy REAL, test_loss REAL, val_accuracy REAL, seconds REAL, error TEXT,
    history TEXT, machine TEXT, fastnet_version TEXT, threads INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0, started TEXT, finished TEXT);
CREATE TABLE IF NOT EXISTS specs (id INTEGER PRIMARY KEY, added TEXT NOT NULL,
    spec TEXT NOT NULL);
"""
_COLUMNS = ("id", "position", "params", "seed", "config", "status", "test_accuracy",
            "test_loss", "val_accuracy", "seconds", "error", "history", "machine",
            "fastnet_version", "threads", "attempts", "started", "finished")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json(value) -> str:
    """JSON without NaN/inf (written as null): readable by any JSON parser."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(value), sort_keys=True)


class SweepDB:
    """One sweep database; ``with SweepDB(path) as db: ...``. ``path`` need not exist (a new
    file); an existing file that is not a sweep database is refused with ValueError."""

    def __init__(self, path, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise ValueError(f"{path}: no such sweep database")
        if self.path.is_dir():
            raise ValueError(f"{path}: is a directory; give a file name like sweep.db")
        try:
            self.con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            if create:
                self.con.executescript(_SCHEMA)
            cols = [r[1] for r in self.con.execute("PRAGMA table_info(runs)")]
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{path}: not a sweep database ({exc})") from None
        if not set(_COLUMNS) <= set(cols):
            self.con.close()
            raise ValueError(f"{path}: not a fastnet sweep database (no runs table with "
                             f"its columns)")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.con.close()
        return False

    def add(self, spec: dict, runs) -> None:
        """Record a spec and its runs; runs already in the file keep their rows."""
        with self.con:
            self.con.execute("BEGIN")
            self.con.execute("INSERT INTO specs (added, spec) VALUES (?, ?)",
                             (_now(), _json(spec)))
            self._insert(runs)

    def add_runs(self, runs) -> None:
        """Record more runs of the last spec (an Optuna search's, as it asks for them)."""
        with self.con:
            self.con.execute("BEGIN")
            self._insert(runs)

    def _insert(self, runs) -> None:
        base = self.con.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM runs"
                                ).fetchone()[0]
        self.con.executemany(
            "INSERT OR IGNORE INTO runs (id, position, params, seed, config) "
            "VALUES (?, ?, ?, ?, ?)",
            [(r.id, base + i, _json(r.params), r.seed, _json(r.config))
             for i, r in enumerate(runs)])

    def pending(self, ids, *, retry_failed: bool = False) -> set:
        """Those of ``ids`` still to run: not done (nor failed, unless ``retry_failed``)."""
        skip = ("done",) if retry_failed else ("done", "failed")
        rows = self.con.execute(f"SELECT id, status FROM runs WHERE id IN "
                                f"({','.join('?' * len(ids))})", list(ids)).fetchall()
        return {rid for rid, status in rows if status not in skip}

    def start(self, rid: str) -> None:
        self.con.execute("UPDATE runs SET status = 'running', attempts = attempts + 1, "
                         "started = ?, error = NULL WHERE id = ?", (_now(), rid))

    def finish(self, rid: str, result: dict) -> None:
        history = result.get("history")
        self.con.execute(
            "UPDATE runs SET status = ?, test_accuracy = ?, test_loss = ?, val_accuracy = ?, "
            "seconds = ?, error = ?, history = ?, machine = ?, fastnet_version = ?, "
            "threads = ?, finished = ? WHERE id = ?",
            (result["status"], result.get("test_accuracy"), result.get("test_loss"),
             result.get("val_accuracy"), result.get("seconds"), result.get("error"),
             None if history is None else _json(history), result.get("machine"),
             result.get("fastnet_version"), result.get("threads"), _now(), rid))

    def row(self, rid: str) -> dict:
        return self.rows([rid])[0]

    def rows(self, ids=None) -> list[dict]:
        """Rows as dicts (``params``, ``config``, ``history`` decoded), in sweep order."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM runs"
        args: list = []
        if ids is not None:
            ids = list(ids)
            sql += f" WHERE id IN ({','.join('?' * len(ids))})"
            args = ids
        out = []
        for values in self.con.execute(sql + " ORDER BY position", args):
            row = dict(zip(_COLUMNS, values))
            for key in ("params", "config", "history"):
                if row[key] is not None:
                    row[key] = json.loads(row[key])
            out.append(row)
        return out


def groups(rows: list[dict]) -> list[dict]:
    """Rows grouped by their swept values, in sweep order: ``params``, ``done`` (test
    accuracies of the done runs), ``failed``, ``pruned``, ``other`` (pending or running),
    ``seconds``."""
    out: dict = {}
    for row in rows:
        key = json.dumps(row["params"], sort_keys=True)
        g = out.setdefault(key, {"params": row["params"], "done": [], "failed": 0,
                                 "pruned": 0, "other": 0, "seconds": []})
        if row["status"] == "done" and row["test_accuracy"] is not None:
            g["done"].append(row["test_accuracy"])
            g["seconds"].append(row["seconds"])
        elif row["status"] in ("failed", "pruned"):
            g[row["status"]] += 1
        else:
            g["other"] += 1
    return list(out.values())


def _cell(v) -> str:
    return f"{v:g}" if isinstance(v, float) else json.dumps(v) if isinstance(v, list) \
        else str(v)


def report(db) -> str:
    """The table of ``fastnet sweep --report``: one line per combination of swept values —
    the values, runs done of all, the best and mean test accuracy of its seeds, the spread
    (best − worst), the mean seconds per run — then the failed runs' errors, one each."""
    with SweepDB(db, create=False) as store:
        rows = store.rows()
    if not rows:
        return f"{db}: no runs"
    gs = groups(rows)
    names = list(dict.fromkeys(k for g in gs for k in g["params"]))
    head = names + ["runs", "best", "mean", "spread", "s/run"]
    lines = []
    for g in gs:
        acc, n = g["done"], len(g["done"]) + g["failed"] + g["pruned"] + g["other"]
        cells = [_cell(g["params"].get(k, "")) for k in names]
        cells.append(f"{len(acc)}/{n}" + "".join(f" ({g[k]} {k})" for k in ("failed", "pruned")
                                                 if g[k]))
        if acc:
            cells += [f"{max(acc):.2%}", f"{sum(acc) / len(acc):.2%}",
                      f"{max(acc) - min(acc):.2%}",
                      f"{sum(g['seconds']) / len(g['seconds']):.1f}"]
        else:
            cells += ["-"] * 4
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    text = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    text += ["  ".join(c.rjust(w) for c, w in zip(cells, widths)) for cells in lines]
    failed = [r for r in rows if r["status"] == "failed"]
    for r in failed[:10]:
        text.append(f"failed: {_json(r['params'])} seed {r['seed']}: {r['error']}")
    if len(failed) > 10:
        text.append(f"... and {len(failed) - 10} more failed runs")
    return "\n".join(text)


def plot(db, directory) -> list[Path]:
    """In ``directory``, for each swept value: ``accuracy_<name>.png``, every done run's test
    accuracy against it (``fastnet.plot.sweep``), and ``curves_<name>.png``, per value the
    mean over its done runs of the training cost per epoch (when ``[fit]
    training_metrics = true`` recorded it; else the validation accuracy), when the runs with
    that value differ in nothing else (``fastnet.plot.sweep_curves``)."""
    from fastnet import plot as plot_
    with SweepDB(db, create=False) as store:
        rows = [r for r in store.rows() if r["status"] == "done"
                and r["test_accuracy"] is not None]
    names = list(dict.fromkeys(k for r in rows for k in r["params"]))
    directory = Path(directory)
    written = []
    for name in names:
        points = [(r["params"][name], r["test_accuracy"]) for r in rows if name in r["params"]]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        written.append(plot_.sweep(points, directory / f"accuracy_{safe}.png", name=name))
        if len(names) == 1:
            curves = _curves(rows, name)
            if curves:
                written.append(plot_.sweep_curves(curves[1], directory / f"curves_{safe}.png",
                                                  name=name, ylabel=curves[0]))
    return written


def _curves(rows, name):
    """``(label, {value: mean per-epoch series})``: the training cost if every run recorded
    it, else the validation accuracy; None when neither, or the epochs differ."""
    for key, label in (("loss", "training cost"), ("val_accuracy", "validation accuracy")):
        series: dict = {}
        for r in rows:
            values = (r["history"] or {}).get(key) or []
            series.setdefault(_cell(r["params"][name]), []).append(values)
        lengths = {len(v) for runs in series.values() for v in runs}
        if len(lengths) == 1 and 0 not in lengths:
            return label, {k: [sum(col) / len(col) for col in zip(*runs)]
                           for k, runs in series.items()}
    return None
