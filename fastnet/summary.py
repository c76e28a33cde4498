"""What a ``Model`` is made of: ``describe(model)`` (its ``repr``: the layers with their output
shapes and parameter counts) and ``table(model)`` (``Model.summary()``: one row per layer with
its output shape, parameters and forward FLOPs per sample). Nothing is allocated or computed on
the parameters; the counts come from the layers' shapes."""

from __future__ import annotations

import math

from fastnet.layers import BatchNorm, Conv2D, Dense, Dropout, MaxPool2D


def layer_rows(model) -> list[tuple[object, tuple, tuple, int, int]]:
    """``[(layer, input shape, output shape, parameters, forward FLOPs per sample), ...]``.
    FLOPs: a multiply-add counts 2 (Dense 2·n_in·n_out, Conv2D 2·c_in·kh·kw per output value),
    plus one per bias, activation, dropout scaling or pooling comparison (batch norm at
    inference: a multiply-add and the activation per value); training costs about three times
    the forward pass. Parameters are the trained ones (batch norm's running averages are
    state, not counted)."""
    rows, shape = [], tuple(model.input_shape)
    for layer in model.layers:
        out = tuple(layer.output_shape(shape))
        params = sum(math.prod(s) for _, s in layer.param_shapes())
        n_out = math.prod(out)
        if isinstance(layer, Dense):
            flops = 2 * layer.n_in * layer.n_out + 2 * n_out
        elif isinstance(layer, Conv2D):
            kh, kw = layer.kernel_size
            flops = (2 * layer.in_channels * kh * kw + 2) * n_out
        elif isinstance(layer, MaxPool2D):
            flops = n_out * (math.prod(layer.size) - 1)
        elif isinstance(layer, Dropout):
            flops = n_out
        elif isinstance(layer, BatchNorm):
            flops = 3 * n_out
        else:
            flops = 0
        rows.append((layer, shape, out, params, flops))
        shape = out
    return rows


def _shape(s: tuple) -> str:
    return "(" + ", ".join(map(str, s)) + ("," if len(s) == 1 else "") + ")"


def describe(model) -> str:
    """``Model([...layers, each with its output shape and parameters...], ..., params=N)``."""
    rows = layer_rows(model)
    width = max(len(repr(r[0])) for r in rows) + 1
    lines = [f"  {repr(layer) + ',':<{width}}  # -> {_shape(out)}, {params:,} params"
             for layer, _, out, params, _ in rows]
    total = sum(r[3] for r in rows)
    return ("Model([\n" + "\n".join(lines) + f"\n], input_shape={_shape(model.input_shape)}, "
            f"loss={model.loss!r}, dtype={model.dtype.name!r}, device={model.device!r}, "
            f"params={total})")


def table(model) -> str:
    """The layers as a text table: index, layer, output shape, parameters, forward FLOPs per
    sample; then the totals."""
    rows = layer_rows(model)
    head = ("#", "layer", "output shape", "params", "FLOPs/sample")
    body = [(str(i), repr(layer), _shape(out), f"{params:,}", f"{flops:,}")
            for i, (layer, _, out, params, flops) in enumerate(rows)]
    total = ("", "total", "", f"{sum(r[3] for r in rows):,}", f"{sum(r[4] for r in rows):,}")
    widths = [max(len(r[k]) for r in [head, *body, total]) for k in range(5)]

    def line(r):
        return "  ".join(c.ljust(w) if k < 3 else c.rjust(w)
                         for k, (c, w) in enumerate(zip(r, widths))).rstrip()
    rule = "-" * len(line(head))
    return "\n".join([f"input {_shape(model.input_shape)}, loss {model.loss}, "
                      f"{model.dtype.name}, device {model.device}", line(head), rule,
                      *map(line, body), rule, line(total),
                      "FLOPs: forward pass, a multiply-add counts 2; training ≈ 3× forward"])
