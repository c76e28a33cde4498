"""The peers of fastnet's epoch rows: the same SGD written the way a competent user of each
library would write it, for the MLP (``[784, 30, 10]`` sigmoid, quadratic cost) and the first
CNN (conv 20@5×5 sigmoid, 2×2 max-pool, dense 100 sigmoid, softmax 10, log-likelihood).

- ``numpy``: plain batched NumPy, the speed denominator (the reference in ``fastnet.reference``
  is the oracle, simple on purpose and not a speed baseline): in-place products, the sigmoid as
  ``0.5·tanh(z/2) + 0.5`` (one transcendental, no overflow), σ′ from the activation.
- ``torch_cpu`` / ``torch_cpu_1`` / ``torch_cuda``: PyTorch eager at the default threads, at one
  thread, on the GPU; ``torch_compile``: the same step through ``torch.compile``.
- ``jax``: the whole epoch as one ``jax.jit`` of a ``lax.scan`` over the mini-batches (a short
  last mini-batch is one more jitted step).
- ``jax_adam``: the same epoch by Optax's Adam (the MLP only), for the optimizer rows.

Every maker takes the start parameters as NumPy arrays ``[(w, b), …]`` (w: out × in, for the
conv layer out × 1 × 5 × 5), and returns ``(epoch(order), params())``: ``epoch`` trains one epoch
in that order and waits for the result, ``params`` returns the trained ``[(w, b), …]`` on the
host. The rows check each peer against ``fastnet.reference`` before timing it.
"""

from __future__ import annotations

import contextlib

import numpy as np

PEERS = ("numpy", "torch_cpu", "torch_cpu_1", "torch_compile", "torch_cuda", "jax")


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run PyTorch on ``n`` intra-op threads (None: its default) inside the block."""
    import torch
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------- MLP
def _sigmoid_(z):
    np.multiply(z, 0.5, out=z)
    np.tanh(z, out=z)
    np.multiply(z, 0.5, out=z)
    np.add(z, 0.5, out=z)
    return z


def numpy_mlp(layers, x, y, batch, lr):
    ws = [w.copy() for w, _ in layers]
    bs = [b.copy() for _, b in layers]

    def epoch(order):
        for k in range(0, len(order), batch):
            idx = order[k:k + batch]
            m = len(idx)
            acts = [x[idx]]
            for w, b in zip(ws, bs):
                z = acts[-1] @ w.T
                z += b
                acts.append(_sigmoid_(z))
            a = acts[-1]
            delta = (a - y[idx]) * a * (1 - a)
            for i in range(len(ws) - 1, -1, -1):
                prev = acts[i]
                d_prev = (delta @ ws[i]) * prev * (1 - prev) if i else None
                ws[i] -= (lr / m) * (delta.T @ prev)
                bs[i] -= (lr / m) * delta.sum(axis=0)
                delta = d_prev

    return epoch, lambda: list(zip(ws, bs))


def _torch_mlp_step(torch, lr):
    def step(X, Y, idx, *wb):
        m = idx.shape[0]
        acts = [X.index_select(0, idx)]
        for i in range(0, len(wb), 2):
            acts.append(torch.sigmoid(torch.addmm(wb[i + 1], acts[-1], wb[i].t())))
        a = acts[-1]
        delta = (a - Y.index_select(0, idx)) * a * (1 - a)
        for i in range(len(wb) // 2 - 1, -1, -1):
            w, b = wb[2 * i], wb[2 * i + 1]
            prev = acts[i]
            d_prev = (delta @ w) * prev * (1 - prev) if i else None
            w.addmm_(delta.t(), prev, alpha=-lr / m)
            b.sub_(delta.sum(dim=0), alpha=lr / m)
            delta = d_prev
    return step


def torch_mlp(peer, layers, x, y, batch, lr):
    """PyTorch with no autograd: the backward written out and the update fused into
    ``addmm_``, one Python step per mini-batch (``torch_compile``: that step compiled)."""
    import torch
    dev = "cuda" if peer == "torch_cuda" else "cpu"
    wb = [torch.tensor(a, device=dev) for w, b in layers for a in (w, b)]
    X, Y = torch.tensor(x, device=dev), torch.tensor(y, device=dev)
    step = _torch_mlp_step(torch, lr)
    if peer == "torch_compile":
        step = torch.compile(step)
    threads = 1 if peer == "torch_cpu_1" else None

    def epoch(order):
        O = torch.tensor(order, device=dev)
        with torch_threads(threads), torch.no_grad():
            for k in range(0, len(order), batch):
                step(X, Y, O[k:k + batch], *wb)
            if dev == "cuda":
                torch.cuda.synchronize()

    def params():
        h = [t.cpu().numpy() for t in wb]
        return list(zip(h[0::2], h[1::2]))
    return epoch, params


def _jax_epoch(step, batch):
    """``epoch(params, X, Y, order)``: a jitted scan of ``step`` over the full mini-batches, then
    one jitted step for a short last one."""
    import jax

    @jax.jit
    def full(params, X, Y, idx):
        def body(p, i):
            return step(p, X[i], Y[i]), None
        return jax.lax.scan(body, params, idx)[0]

    tail = jax.jit(lambda p, X, Y, i: step(p, X[i], Y[i]))

    def epoch(params, X, Y, order):
        n_full = len(order) // batch * batch
        if n_full:
            params = full(params, X, Y, order[:n_full].reshape(-1, batch))
        if n_full < len(order):
            params = tail(params, X, Y, order[n_full:])
        return jax.block_until_ready(params)
    return epoch


def jax_mlp(layers, x, y, batch, lr):
    import jax
    import jax.numpy as jnp

    def loss(params, xb, yb):
        a = xb
        for w, b in params:
            a = jax.nn.sigmoid(a @ w.T + b)
        return 0.5 * jnp.sum((a - yb) ** 2)

    def step(params, xb, yb):
        g = jax.grad(loss)(params, xb, yb)
        s = lr / xb.shape[0]
        return [(w - s * gw, b - s * gb) for (w, b), (gw, gb) in zip(params, g)]

    return _jax_run(_jax_epoch(step, batch), layers, x, y)


def jax_mlp_adam(layers, x, y, batch, lr):
    """The MLP's epoch by ``optax.adam(lr)`` (PyTorch's defaults: β 0.9, 0.999, eps 1e-8 added
    to √v̂) on the mean gradient of each mini-batch, as ``fit(optimizer="adam")``; the state
    (moments, step count) carried across epochs."""
    import jax
    import jax.numpy as jnp
    import optax

    tx = optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)

    def loss(params, xb, yb):
        a = xb
        for w, b in params:
            a = jax.nn.sigmoid(a @ w.T + b)
        return 0.5 * jnp.sum((a - yb) ** 2) / xb.shape[0]

    def step(carry, xb, yb):
        params, opt_state = carry
        updates, opt_state = tx.update(jax.grad(loss)(params, xb, yb), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    run = _jax_epoch(step, batch)
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in layers]
    state = {"c": (params, tx.init(params))}
    X, Y = jnp.asarray(x), jnp.asarray(y)

    def epoch(order):
        state["c"] = run(state["c"], X, Y, jnp.asarray(order))

    return epoch, lambda: [(np.asarray(w), np.asarray(b)) for w, b in state["c"][0]]


def _jax_run(run, layers, x, y):
    import jax.numpy as jnp
    state = {"p": [(jnp.asarray(w), jnp.asarray(b)) for w, b in layers]}
    X, Y = jnp.asarray(x), jnp.asarray(y)

    def epoch(order):
        state["p"] = run(state["p"], X, Y, jnp.asarray(order))

    return epoch, lambda: [(np.asarray(w), np.asarray(b)) for w, b in state["p"]]


def mlp(peer, layers, x, y, batch, lr):
    """``(epoch(order), params())`` of ``peer`` for the sigmoid MLP with the quadratic cost."""
    if peer == "numpy":
        return numpy_mlp(layers, x, y, batch, lr)
    if peer == "jax":
        return jax_mlp(layers, x, y, batch, lr)
    return torch_mlp(peer, layers, x, y, batch, lr)


# ---------------------------------------------------------------------------- CNN
def torch_cnn(peer, layers, x, labels, batch, lr):
    """PyTorch with autograd (the way its users write a CNN); ``torch_compile`` compiles the
    loss, so its backward is compiled too, and the update stays eager."""
    import torch
    F = torch.nn.functional
    dev = "cuda" if peer == "torch_cuda" else "cpu"
    params = [torch.tensor(a, device=dev).requires_grad_() for w, b in layers for a in (w, b)]
    X = torch.tensor(x.reshape(-1, 1, 28, 28), device=dev)
    Y = torch.tensor(np.eye(10, dtype=x.dtype)[labels], device=dev)

    def loss(xb, yb, w1, b1, w2, b2, w3, b3):
        h = F.max_pool2d(torch.sigmoid(F.conv2d(xb, w1, b1)), 2)
        h = torch.sigmoid(F.linear(h.flatten(1), w2, b2))
        return -(F.log_softmax(F.linear(h, w3, b3), dim=1) * yb).sum()

    if peer == "torch_compile":
        loss = torch.compile(loss)
    threads = 1 if peer == "torch_cpu_1" else None

    def epoch(order):
        O = torch.tensor(order, device=dev)
        with torch_threads(threads):
            for k in range(0, len(order), batch):
                idx = O[k:k + batch]
                grads = torch.autograd.grad(
                    loss(X.index_select(0, idx), Y.index_select(0, idx), *params), params)
                with torch.no_grad():
                    for p, g in zip(params, grads):
                        p.sub_(g, alpha=lr / idx.shape[0])
            if dev == "cuda":
                torch.cuda.synchronize()

    def host():
        h = [p.detach().cpu().numpy() for p in params]
        return list(zip(h[0::2], h[1::2]))
    return epoch, host


def jax_cnn(layers, x, labels, batch, lr):
    import jax
    import jax.numpy as jnp

    def loss(params, xb, yb):
        (w1, b1), (w2, b2), (w3, b3) = params
        z = jax.lax.conv_general_dilated(xb, w1, (1, 1), "VALID",
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
        a = jax.nn.sigmoid(z + b1[None, :, None, None])
        p = jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = jax.nn.sigmoid(p.reshape(p.shape[0], -1) @ w2.T + b2)
        return -jnp.sum(jax.nn.log_softmax(h @ w3.T + b3) * yb)

    def step(params, xb, yb):
        g = jax.grad(loss)(params, xb, yb)
        s = lr / xb.shape[0]
        return [(w - s * gw, b - s * gb) for (w, b), (gw, gb) in zip(params, g)]

    y = np.eye(10, dtype=x.dtype)[labels]
    return _jax_run(_jax_epoch(step, batch), layers, x.reshape(-1, 1, 28, 28), y)


def cnn(peer, layers, x, labels, batch, lr):
    """``(epoch(order), params())`` of ``peer`` for the first CNN (no NumPy peer: the NumPy
    row of the CNN is the reference's layer-by-layer path)."""
    if peer == "jax":
        return jax_cnn(layers, x, labels, batch, lr)
    return torch_cnn(peer, layers, x, labels, batch, lr)


def unavailable(peer: str) -> str | None:
    """Why ``peer`` cannot run here, or None."""
    import importlib.util
    if peer == "numpy":
        return None
    if peer == "jax":
        return None if importlib.util.find_spec("jax") else \
            "JAX is not installed (pip install 'fastnet[bench]')"
    if peer == "jax_adam":
        return None if importlib.util.find_spec("jax") and importlib.util.find_spec("optax") \
            else "JAX and Optax are not installed (pip install 'fastnet[bench]')"
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed (pip install 'fastnet[bench]')"
    if peer == "torch_cuda":
        import torch
        if not torch.cuda.is_available():
            return "PyTorch sees no CUDA GPU"
    return None
