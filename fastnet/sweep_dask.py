"""``fastnet.sweep`` on a Dask cluster (the ``dask`` extra: ``dask.distributed``): the same runs
as the local executor, sent to the cluster's workers — on many machines, or on an HPC cluster
through dask-jobqueue — with the results coming back to the SQLite file on this machine.

The data set is scattered to every worker once (``client.scatter(..., broadcast=True)``), and
every run's task takes that future, so it travels once per worker, not once per run. A worker
process trains one run at a time (Numba's thread pool is not to be entered from two threads at
once); start workers with one thread each and as many processes per machine as runs should
train side by side (``dask worker tcp://... --nworkers 8 --nthreads 1``). Each run gets its
machine's cores over the worker processes there, unless ``threads`` is given.
"""

from __future__ import annotations

import os
import threading

_LOCK = threading.Lock()
_CACHE: dict = {}


def connect(address: str, timeout: float = 10.0):
    """A ``dask.distributed.Client`` of the scheduler at ``address`` (``tcp://HOST:PORT``)."""
    from distributed import Client
    if not isinstance(address, str) or "://" not in address:
        raise ValueError(f"expected an address like tcp://HOST:PORT, got {address!r}")
    return Client(address, timeout=timeout)


def _task(config: dict, data, threads_by_host: dict, threads: int | None) -> dict:
    """One run on a Dask worker: its data set (``_Data``) made once per worker process from the
    scattered arrays, its thread count from its host's share."""
    from distributed import get_worker

    from fastnet.sweep import _Data, run_one
    worker = get_worker()
    with _LOCK:
        key = id(data)
        if _CACHE.get("key") != key:
            _CACHE.update(key=key, data=_Data(None, data) if isinstance(data, str) or
                          data is None else _Data(data))
        host = worker.address.rsplit(":", 1)[0]
        n = threads or threads_by_host.get(host) or max(1, (os.cpu_count() or 1)
                                                       // max(1, worker.state.nthreads))
        return run_one(config, _CACHE["data"], n)


def _threads_by_host(client) -> dict:
    """Each worker host's cores over its worker processes × their threads (at least 1)."""
    nthreads = client.nthreads()                     # {worker address: threads}
    counts = client.run(os.cpu_count)                 # {worker address: its machine's cores}
    slots: dict = {}
    cores: dict = {}
    for addr, n in nthreads.items():
        host = addr.rsplit(":", 1)[0]
        slots[host] = slots.get(host, 0) + n
        cores[host] = counts.get(addr) or 1
    return {h: max(1, cores[h] // slots[h]) for h in slots}


class DaskExecutor:
    """Runs on ``client``'s cluster; ``data`` ``(train, val, test)`` arrays, or None (each
    worker loads the spec's data set itself, from its own disk)."""

    def __init__(self, client, threads: int | None = None, data=None):
        self.client, self.threads, self.data = client, threads, data
        self.scattered = None        # the data's future on the cluster, once run

    def run(self, runs, record) -> None:
        from distributed import as_completed
        client = self.client
        if self.data is not None and not isinstance(self.data, (str, os.PathLike)):
            # one object (scatter would split a tuple into a future per element)
            data = self.scattered = client.scatter([self.data], broadcast=True,
                                                   hash=False)[0]
        else:
            data = None if self.data is None else os.fspath(self.data)
        by_host = _threads_by_host(client)
        futures = {}
        for run in runs:
            fut = client.submit(_task, run.config, data, by_host, self.threads,
                                key=f"fastnet-sweep-{run.id}-{os.urandom(4).hex()}",
                                pure=False)
            futures[fut] = run
            record(run, "start", None)
        try:
            for fut in as_completed(futures):
                run = futures[fut]
                try:
                    result = fut.result()
                except Exception as exc:   # the worker died, or the task could not run
                    result = {"status": "failed", "seconds": None,
                              "error": f"on the Dask cluster: {type(exc).__name__}: {exc}"}
                record(run, "end", result)
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()
