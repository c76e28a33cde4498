"""``Model.fit(checkpoint=path)``: the run saved after every epoch, and resumed from it.

The file is an ``.npz`` (no pickle): ``params`` (the flat parameters), a JSON ``state`` (format,
version, the run's fingerprint, epochs done, the history, the generators' states, the callbacks'
states, the optimizer's step count), the callbacks' arrays (``callback{i}.{key}``) and, for an
optimizer other than SGD, its state (``optimizer_state``). It is replaced atomically after every
epoch, so an interrupted run leaves its last complete epoch. A fit that finds the file checks
that it is the same run (fingerprint: architecture, dtype, batch size, schedule, lmbda, sample
order, data digests), restores everything, and trains the remaining epochs — ``epochs`` is the
total — ending bit-identical to the uninterrupted run on the same device and thread count.
Tests: ``tests/test_checkpoint.py``.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from fastnet.callbacks import Callback
from fastnet.savefile import NpzReader, save_npz_atomic

FORMAT, VERSION = "fastnet-fit-checkpoint", 1
_STATE_LIMIT = 64 << 20        # characters of JSON: the history of ~10⁵ epochs
_HISTORY = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds", "threads", "lr")


def digest(*arrays) -> str:
    """A digest of arrays' dtypes, shapes and bytes (data sets in a fingerprint)."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.data)
    return h.hexdigest()


def checked_path(path) -> str:
    """``path`` as a str, its directory existing and writable (checked before training)."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"checkpoint must be a file path, got {path!r}") from None
    if not isinstance(path, str):
        raise TypeError(f"checkpoint must be a str or os.PathLike path, got {path!r}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise ValueError(f"checkpoint {path}: its directory {directory} does not exist or is "
                         f"not writable")
    return path


def load(path: str, fingerprint: dict, params_like: np.ndarray, epochs: int, callbacks,
         opt=None):
    """The saved run as a dict (params, epochs_done, history, random_state, callbacks), or
    None when the file does not exist. ValueError when it is not a checkpoint of this run or
    has more epochs done than ``epochs``; nothing is applied by this function."""
    if not os.path.exists(path):
        return None
    what = "a fastnet fit checkpoint"
    with NpzReader(path, what) as f:
        try:
            state = json.loads(f.text("state", _STATE_LIMIT))
        except (ValueError, RecursionError) as exc:
            raise f.error(f"its state is not valid JSON ({exc})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise f.error("no fastnet fit checkpoint state in it")
        version = state.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise ValueError(f"checkpoint {path} has version {version!r}; this fastnet reads "
                             f"up to {VERSION}")
        saved = state.get("fingerprint")
        fingerprint = json.loads(json.dumps(fingerprint))        # as it reads back
        if saved != fingerprint:
            differ = sorted(k for k in set(saved or {}) | set(fingerprint)
                            if (saved or {}).get(k) != fingerprint.get(k))
            raise ValueError(f"checkpoint {path} is from another run (differs in: "
                             f"{', '.join(differ)}); remove it or pass another path")
        done = state.get("epochs_done")
        if not (isinstance(done, int) and not isinstance(done, bool) and done >= 0):
            raise f.error(f"epochs_done is {done!r}")
        if done > epochs:
            raise ValueError(f"checkpoint {path} has {done} epochs done, more than the {epochs} "
                             f"asked for; ask for at least {done} or pass another path")
        history = state.get("history")
        if not (isinstance(history, dict) and set(history) == set(_HISTORY) and
                all(isinstance(v, list) and len(v) <= done for v in history.values()) and
                len(history["seconds"]) == done):
            raise f.error("its history is not one of this run")
        _check_random_state(f, state.get("random_state"))
        cb_states = state.get("callbacks")
        if not (isinstance(cb_states, list) and len(cb_states) == len(callbacks)):
            raise ValueError(f"checkpoint {path} was written with {_count(cb_states)} "
                             f"callbacks; this fit has {len(callbacks)}")
        for i, cb in enumerate(cb_states):
            if not isinstance(cb, dict):
                raise f.error(f"callback {i}'s state is not a dict")
            for key in cb.pop("_arrays", []):
                cb[key] = f.array(f"callback{i}.{key}")
        state["params"] = f.array("params", shape=params_like.shape, dtype=params_like.dtype)
        if opt is not None:
            step = state.get("optimizer_step")
            if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
                raise f.error(f"its optimizer_step is {step!r}")
            state["optimizer_state"] = f.array("optimizer_state", shape=opt.state.shape,
                                               dtype=opt.state.dtype)
    return state


def _count(v) -> str:
    return str(len(v)) if isinstance(v, list) else "no list of"


def _check_random_state(f, state) -> None:
    if not (isinstance(state, dict) and set(state) == {"shuffle", "dropout"}):
        raise f.error("its random_state is not Model.random_state's form")
    for name, s in state.items():
        try:
            np.random.PCG64().state = s
        except (TypeError, ValueError, KeyError) as exc:
            raise f.error(f"random_state[{name!r}] is not a PCG64 state ({exc})") from None


def resume(model, path: str, fingerprint: dict, epochs: int, callbacks, verbose: bool,
           opt=None):
    """Apply ``path``'s saved run to ``model``, ``callbacks`` and ``opt`` (the fit's
    ``OptimizerState``, None for SGD) when there is one. Returns the saved history's lists
    (None for a new run) and the ``Writer`` that saves this fit."""
    saved = load(path, fingerprint, model.params, epochs, callbacks, opt)
    history = None
    if saved is not None:
        model.params[...] = saved["params"]
        if opt is not None:
            opt.state[...] = saved["optimizer_state"]
            opt.step[0] = saved["optimizer_step"]
        model.random_state = saved["random_state"]
        history = saved["history"]
        for cb, state in zip(callbacks, saved["callbacks"]):
            cb.restore_state(state)
        if verbose:
            print(f"Resuming from {path}: {saved['epochs_done']} of {epochs} epochs done",
                  flush=True)
    return history, Writer(path, fingerprint, callbacks)


class Writer(Callback):
    """Writes the checkpoint at the end of every epoch, after the user's callbacks (fit puts it
    last), so their states include the epoch; if one of them raises, the file keeps the epoch
    before, which a resumed fit trains again to the same result."""

    def __init__(self, path: str, fingerprint: dict, callbacks):
        self.path, self.fingerprint, self.callbacks = path, fingerprint, callbacks

    def on_epoch_end(self, end) -> None:
        arrays, states = {}, []
        for i, cb in enumerate(self.callbacks):
            state = dict(cb.checkpoint_state())
            keys = sorted(k for k, v in state.items() if isinstance(v, np.ndarray))
            for k in keys:
                arrays[f"callback{i}.{k}"] = state.pop(k)
            states.append({**state, "_arrays": keys})
        h = end.history
        state = {"format": FORMAT, "version": VERSION, "fingerprint": self.fingerprint,
                 "epochs_done": end.epoch, "random_state": end.random_state,
                 "history": {k: list(getattr(h, k))[:end.epoch] for k in _HISTORY},
                 "callbacks": states}
        if end.optimizer_state is not None:
            arrays["optimizer_state"] = end.optimizer_state.state
            state["optimizer_step"] = int(end.optimizer_state.step[0])
        save_npz_atomic(self.path, params=end.params, state=np.array(json.dumps(state)),
                        **arrays)
