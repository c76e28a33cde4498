"""``gradcheck``: a model's backpropagated gradient against central finite differences.

The gradient is the one training applies: one full-batch SGD step with lr 1 and no weight decay
on the model's own device (so the compiled kernels are what is checked), g = p_before − p_after
= ∇C with C the mean cost over (x, y) that ``Model.evaluate`` reports. Each checked parameter
p gets n from central differences (C(p + h) − C(p − h)) / 2h at h and h/2, Richardson-
extrapolated, and each parameter array the worst relative error
|g − n| / max(|g| + |n|, 1e-8). With batch normalization C is the training-mode cost (the
batch's own statistics), the one the step descends; state such as the running averages is not
checked. The model is left as it was. Tests: ``tests/test_gradients.py``.
"""

from __future__ import annotations

import numpy as np

from fastnet import _checks


def gradcheck(model, x, y, *, eps: float = 1e-3, samples: int | None = None,
              seed: int = 0) -> dict[str, float]:
    """The worst relative error of each parameter array, keyed ``"layer{i}.{name}"`` (e.g.
    ``"layer0.w"``). ``samples``: check at most this many entries of each array (chosen at
    random with ``seed``; None: all of them). ``eps``: the larger difference step h. Needs a
    float64 model without dropout; x and y as ``Model.fit`` takes them (keep them small: 4
    evaluations per checked entry). For float64
    networks of a few units, a correct gradient gives errors around 1e-9 or below."""
    if model.dtype != np.float64:
        raise ValueError(f"gradcheck needs a float64 model (finite differences in "
                         f"{model.dtype.name} are too coarse); build it with dtype='float64'")
    if any(getattr(layer, "p", 0) for layer in model.layers):
        raise ValueError("gradcheck needs a model without dropout (its cost is random)")
    eps = _checks.finite_float(eps, "eps", positive=True)
    if samples is not None:
        samples = _checks.positive_int(samples, "samples")
    saved, state = model.params.copy(), model.random_state
    try:
        n = len(model.predict(x))
        model.fit(x, y, epochs=1, batch_size=n, lr=1.0, shuffle=False, verbose=False,
                  training_metrics=False, overlap=False)
        grad = saved - model.params
        model.params[...] = saved
        rng = np.random.default_rng(seed)
        out = {}
        train = any(layer.state_shapes() for layer in model.layers)
        for i, layer in enumerate(model.layers):
            grads, views = model.params_of(i, grad), model.params_of(i)
            for name, _ in layer.param_shapes():
                g, view = grads[name], views[name]
                picks = np.arange(view.size)
                if samples is not None and samples < view.size:
                    picks = np.sort(rng.choice(view.size, samples, replace=False))
                worst = 0.0
                for j in picks:
                    num, back = _derivative(model, x, y, view, j, eps, train), g.flat[j]
                    worst = max(worst, abs(back - num) / max(abs(back) + abs(num), 1e-8))
                out[f"layer{i}.{name}"] = worst
        return out
    finally:
        model.params[...] = saved
        model.random_state = state


def _cost(model, x, y, train: bool) -> float:
    """The mean cost ``Model.evaluate`` reports, or with ``train`` the training-mode one (batch
    norm by the batch's statistics; the running averages it moves are restored by the
    caller)."""
    if not train:
        return model.evaluate(x, y)["loss"]
    from fastnet.data import Source
    src = Source(model, x, y, "x", "y", need_y=True)
    runner = model._runner(None)
    try:
        total, _ = runner.evaluate(src.prepared(model, runner), train=True)
    finally:
        runner.close(changed=False)
    return total / src.n


def _derivative(model, x, y, view, j, h, train=False) -> float:
    """∂C/∂view[j] by central differences at steps h and h/2, combined by Richardson
    extrapolation: (4·D(h/2) − D(h))/3 cancels the h² term of the error, so a larger h (less
    rounding noise in C's differences) keeps the truncation error small."""
    keep = view.flat[j]

    def central(step):
        view.flat[j] = keep + step
        up = _cost(model, x, y, train)
        view.flat[j] = keep - step
        down = _cost(model, x, y, train)
        view.flat[j] = keep
        return (up - down) / (2 * step)
    return (4 * central(h / 2) - central(h)) / 3

