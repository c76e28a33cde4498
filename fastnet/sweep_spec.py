"""Sweep specs (``fastnet.sweep``): a TOML file, its text or a dict, checked and expanded into
runs. A spec names a base run — ``preset`` (one of ``fastnet train``'s presets) and/or
``[model]`` (``Model`` arguments) and ``[fit]`` (``Model.fit`` arguments) — and what varies:
``[grid]`` (every combination; ``preset`` may be one of its keys), ``[random]`` (``trials``
draws from ``log_uniform``, ``uniform`` or ``choice``), ``seeds``. A bare key is a ``fit``
argument, ``model.<name>`` a ``Model`` one; ``[data]`` limits the images used. Each run's id
is a hash of its complete settings, so the same spec on the same database resumes.
``TABLES``/``table_spec``: the book's tables as specs (``fastnet sweep --preset``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

FIT_KEYS = ("epochs", "batch_size", "lr", "lmbda", "l1", "optimizer", "schedule", "shuffle",
            "training_metrics")
MODEL_KEYS = ("sizes", "activation", "loss", "init", "dtype")
DATA_KEYS = ("dataset", "path", "train", "validation", "test")
TOP_KEYS = ("preset", "seeds", "search", "fit", "model", "grid", "random", "data")
DISTRIBUTIONS = ("log_uniform", "uniform", "choice")


@dataclass(frozen=True)
class Run:
    """One training run: ``id`` (stable), ``params`` (the swept values, keys as in the spec),
    ``seed`` and ``config`` (everything the run needs: preset, model, fit, data; JSON)."""

    id: str
    params: dict
    seed: int
    config: dict


@dataclass
class Spec:
    """A checked sweep spec (``parse_spec``)."""

    preset: str | None
    model: dict
    fit: dict
    grid: dict
    random: dict
    trials: int
    random_seed: int
    seeds: list
    data: dict
    search: str = "grid"
    text: dict = field(default_factory=dict)


def _toml(text: str) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:                                     # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"sweep spec: not valid TOML: {exc}") from None


def load_spec(source) -> dict:
    """A spec as a dict: from a ``Path`` / file name ending in ``.toml``, TOML text, or a dict."""
    if isinstance(source, dict):
        return source
    if isinstance(source, Path) or (isinstance(source, str) and source.endswith(".toml")
                                    and "\n" not in source):
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"sweep spec {source}: cannot read it ({exc.strerror})") from None
        return _toml(text)
    if isinstance(source, str):
        return _toml(source)
    raise TypeError(f"spec must be a TOML file name, TOML text or a dict, got "
                    f"{type(source).__name__}")


TABLES = {"ch1-table": ["ch1", "ch1-100"],
          "ch3-table": ["ch3", "ch3-100-large", "ch3-overfit-1000"],
          "ch6-table": ["ch6-fc", "ch6-conv1", "ch6-conv2", "ch6-relu", "ch6-expanded",
                        "ch6-dropout"]}
"""``fastnet sweep --preset``: the book's tables (docs/book_results.md), row by row."""


def table_spec(name: str, seeds: int = 3) -> dict:
    """The spec of one of the book's tables (``TABLES``): its rows' presets × ``seeds``
    seeds (the book reports the best of three)."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; one of {', '.join(TABLES)}")
    from fastnet import _checks
    seeds = _checks.positive_int(seeds, "seeds")
    return {"grid": {"preset": list(TABLES[name])}, "seeds": list(range(seeds))}


def _key(name: str, where: str) -> tuple[str, str]:
    """A varied key: ``("fit", name)``, ``("model", name)`` or ``("preset", "preset")``;
    refuses unknown ones."""
    if name == "preset" and where == "grid":
        return "preset", "preset"
    if name.startswith("model."):
        sub = name[6:]
        if sub not in MODEL_KEYS:
            raise ValueError(f"sweep spec [{where}]: unknown Model argument {name!r}; "
                             f"model.<name> takes one of {', '.join(MODEL_KEYS)}")
        return "model", sub
    if name not in FIT_KEYS:
        raise ValueError(f"sweep spec [{where}]: unknown fit argument {name!r}; a bare key is "
                         f"one of {', '.join(FIT_KEYS)}, a Model argument is model.<name>")
    return "fit", name


def _check_value(kind: str, name: str, value, where: str) -> None:
    """Type checks of one value, so that a typo fails the spec, not a run hours later."""
    if kind == "preset":
        from fastnet.presets import PRESETS
        if value not in PRESETS:
            raise ValueError(f"sweep spec [{where}]: unknown preset {value!r}; one of "
                             f"{', '.join(PRESETS)}")
        return
    ok = {"epochs": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
          "batch_size": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
          "lr": lambda v: _number(v) and v > 0, "lmbda": lambda v: _number(v) and v >= 0,
          "l1": lambda v: _number(v) and v >= 0, "optimizer": lambda v: isinstance(v, str),
          "schedule": lambda v: isinstance(v, str), "shuffle": lambda v: isinstance(v, bool),
          "training_metrics": lambda v: isinstance(v, bool),
          "sizes": lambda v: isinstance(v, list) and len(v) >= 2 and all(
              isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in v),
          "activation": lambda v: isinstance(v, str), "loss": lambda v: isinstance(v, str),
          "init": lambda v: isinstance(v, str),
          "dtype": lambda v: v in ("float32", "float64")}[name]
    if not ok(value):
        label = f"model.{name}" if kind == "model" else name
        raise ValueError(f"sweep spec [{where}]: {label} = {value!r} is not a valid value")
    if name == "schedule":
        _schedule(value)
    if name == "optimizer":
        from fastnet.optimizers import as_optimizer
        try:
            as_optimizer(value)
        except ValueError as exc:
            raise ValueError(f"sweep spec [{where}]: {exc}") from None


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _schedule(text: str):
    """``fastnet train --schedule``'s form (``step:0.5:10``) as ``lr, epochs -> Schedule``."""
    import argparse

    from fastnet.__main__ import _schedule as parse
    try:
        return parse(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"sweep spec: schedule: {exc}") from None


def parse_spec(source) -> Spec:
    """Check a spec (see the module docstring); ValueError/TypeError naming what is wrong."""
    raw = load_spec(source)
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ValueError(f"sweep spec: unknown key {unknown[0]!r}; keys are "
                         f"{', '.join(TOP_KEYS)}")
    for table in ("fit", "model", "grid", "random", "data"):
        if not isinstance(raw.get(table, {}), dict):
            raise ValueError(f"sweep spec: {table} must be a table ([{table}])")
    preset = raw.get("preset")
    if preset is not None:
        from fastnet.presets import PRESETS
        if preset not in PRESETS:
            raise ValueError(f"sweep spec: unknown preset {preset!r}; one of "
                             f"{', '.join(PRESETS)}")
    model, fit = dict(raw.get("model", {})), dict(raw.get("fit", {}))
    for kind, table in (("model", model), ("fit", fit)):
        for name, value in table.items():
            _key(name if kind == "fit" else f"model.{name}", kind)
            _check_value(kind, name, value, kind)
    grid = {}
    for name, values in _flat(raw.get("grid", {})).items():
        kind, sub = _key(name, "grid")
        if not isinstance(values, list) or not values:
            raise ValueError(f"sweep spec [grid]: {name} must be a non-empty list of values")
        for v in values:
            _check_value(kind, sub, v, "grid")
        grid[name] = list(values)
    rand = _flat(raw.get("random", {}))
    trials = rand.pop("trials", None)
    random_seed = rand.pop("seed", 0)
    dists = {}
    for name, dist in rand.items():
        kind, sub = _key(name, "random")
        dists[name] = _distribution(name, dist, kind, sub)
    if dists and (not isinstance(trials, int) or isinstance(trials, bool) or trials < 1):
        raise ValueError("sweep spec [random]: give trials = N (an integer >= 1), the number "
                         "of draws")
    if trials is not None and not dists:
        raise ValueError("sweep spec [random]: trials given but no distribution "
                         "(e.g. lr = {log_uniform = [0.01, 3.0]})")
    overlap = set(grid) & set(dists)
    if overlap:
        raise ValueError(f"sweep spec: {sorted(overlap)[0]} is in both [grid] and [random]")
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not (isinstance(seeds, list) and seeds and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)) \
            or len(set(seeds)) != len(seeds):
        raise ValueError(f"sweep spec: seeds must be a list of distinct integers >= 0, got "
                         f"{seeds!r}")
    search = raw.get("search", "random" if dists else "grid")
    if search not in ("grid", "random", "optuna"):
        raise ValueError(f"sweep spec: search must be 'grid', 'random' or 'optuna', got "
                         f"{search!r}")
    if search == "optuna":
        if not dists or grid:
            raise ValueError("sweep spec: search = 'optuna' takes its search space from "
                             "[random] (trials and distributions), without a [grid]")
        if len(seeds) != 1:
            raise ValueError("sweep spec: search = 'optuna' trains each trial once: give one "
                             "seed")
    elif search == "random" and not dists:
        raise ValueError("sweep spec: search = 'random' needs [random] distributions")
    data = dict(raw.get("data", {}))
    for name, value in data.items():
        if name not in DATA_KEYS:
            raise ValueError(f"sweep spec [data]: unknown key {name!r}; keys are "
                             f"{', '.join(DATA_KEYS)}")
        if name in ("train", "validation", "test") and not (
                isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise ValueError(f"sweep spec [data]: {name} must be an image count >= 0")
    if data.get("dataset", "mnist") not in ("mnist", "fashion-mnist"):
        raise ValueError("sweep spec [data]: dataset must be 'mnist' or 'fashion-mnist'")
    if preset is not None and "preset" in grid:
        raise ValueError("sweep spec: preset is both fixed and in [grid]")
    if preset is None and "sizes" not in model and "model.sizes" not in grid \
            and "model.sizes" not in dists and "preset" not in grid:
        raise ValueError("sweep spec: give preset = NAME (fastnet train's presets) or the "
                         "network as [model] sizes = [784, 30, 10]")
    spec = Spec(preset, model, fit, grid, dists, trials or 0, random_seed, seeds, data,
                search, raw)
    if preset is None and "preset" not in grid:
        for name in ("epochs", "batch_size", "lr"):
            if name not in fit and name not in grid and name not in dists:
                raise ValueError(f"sweep spec: without a preset, give {name} in [fit], "
                                 f"[grid] or [random]")
    return spec


def _flat(table: dict) -> dict:
    """TOML reads ``model.sizes = [...]`` as ``{"model": {"sizes": [...]}}``: back to
    ``"model.sizes"`` (a quoted ``"model.sizes"`` key arrives as it is)."""
    out = {}
    for name, value in table.items():
        if name == "model" and isinstance(value, dict) and not (
                len(value) == 1 and next(iter(value)) in DISTRIBUTIONS):
            out.update({f"model.{k}": v for k, v in value.items()})
        else:
            out[name] = value
    return out


def _distribution(name, dist, kind, sub) -> tuple:
    if not (isinstance(dist, dict) and len(dist) == 1 and next(iter(dist)) in DISTRIBUTIONS):
        raise ValueError(f"sweep spec [random]: {name} must be one of "
                         f"{{log_uniform = [lo, hi]}}, {{uniform = [lo, hi]}} or "
                         f"{{choice = [values...]}}, got {dist!r}")
    how, args = next(iter(dist.items()))
    if how == "choice":
        if not isinstance(args, list) or not args:
            raise ValueError(f"sweep spec [random]: {name}: choice needs a non-empty list")
        for v in args:
            _check_value(kind, sub, v, "random")
        return how, list(args)
    if not (isinstance(args, list) and len(args) == 2 and all(map(_number, args))
            and args[0] < args[1] and (how == "uniform" or args[0] > 0)):
        raise ValueError(f"sweep spec [random]: {name}: {how} needs [lo, hi] with lo < hi"
                         f"{' and lo > 0' if how == 'log_uniform' else ''}, got {args!r}")
    if sub in ("epochs", "batch_size") or kind == "model":
        raise ValueError(f"sweep spec [random]: {name} takes whole or named values: use "
                         f"choice = [...]")
    return how, [float(a) for a in args]


def _draw(dists: dict, trials: int, seed: int) -> list[dict]:
    import numpy as np
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(trials):
        row = {}
        for name, (how, args) in dists.items():
            if how == "choice":
                row[name] = args[int(rng.integers(len(args)))]
            elif how == "uniform":
                row[name] = float(rng.uniform(*args))
            else:
                row[name] = float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
        out.append(row)
    return out


def expand(spec) -> list[Run]:
    """The runs of a spec (a ``Spec`` or anything ``parse_spec`` takes): every [grid]
    combination × every [random] draw × every seed, in that order."""
    if not isinstance(spec, Spec):
        spec = parse_spec(spec)
    if spec.search == "optuna":
        raise ValueError("search = 'optuna' chooses its runs as it goes: fastnet.sweep runs it")
    names = list(spec.grid)
    combos = [dict(zip(names, values)) for values in
              itertools.product(*(spec.grid[n] for n in names))]
    draws = _draw(spec.random, spec.trials, spec.random_seed) if spec.random else [{}]
    runs, seen = [], set()
    for combo in combos:
        for draw in draws:
            params = {**combo, **draw}
            for seed in spec.seeds:
                model, fit, preset = dict(spec.model), dict(spec.fit), spec.preset
                for name, value in params.items():
                    kind, sub = _key(name, "grid")
                    if kind == "preset":
                        preset = value
                    else:
                        (model if kind == "model" else fit)[sub] = value
                config = {"preset": preset, "model": model, "fit": fit,
                          "data": spec.data, "seed": seed}
                text = json.dumps(config, sort_keys=True)
                rid = hashlib.sha256(text.encode()).hexdigest()[:16]
                if rid in seen:
                    continue
                seen.add(rid)
                runs.append(Run(rid, params, seed, config))
    return runs
