"""The layer-by-layer path: models with convolution, pooling, dropout or flatten layers.

``LayerwiseTrainer`` runs one Python step per mini-batch over an op set
(``fastnet.devices.ops``): a kernel call per stage forward (``fastnet.layers.fuse``: a Conv2D →
MaxPool2D pair is one stage), the output delta, a call per stage backward writing Σ-gradients
into one flat buffer, then one update pass. The stages' contexts (what a backward needs) live in
the step's frame, never on the layers, so inference may run beside training.

``CnnTrainer`` (CPU) trains a ConvPool → Flatten → Dense… model (the book's first CNN) through
``kernels/cnn_cpu.py`` instead, a whole epoch in one compiled call on OS threads; it evaluates
and predicts layer by layer.
"""

from __future__ import annotations

import contextlib
from functools import cached_property

import numpy as np

from fastnet.devices.threads import EpochThreads
from fastnet.devices.trainer import EpochControl, Trainer, numba_threads
from fastnet.kernels.config import ACTIVATIONS, SYNC_PROGRESS
from fastnet.layers import ConvPool, Dense, Flatten

EVAL_CHUNK = 1000  # samples per forward pass when scoring or predicting layer by layer


class LayerwiseTrainer(Trainer):
    """ops: an op set; dropout_rng: the generator dropout masks are drawn from;
    fused_sgd: each dense layer takes its SGD step inside its backward kernel
    (``ops.dense_backward_sgd``, CPU) and the update pass covers the other layers only;
    threads: a Numba thread count for every op call (None: Numba's)."""

    def __init__(self, spec, params, ops, *, dropout_rng, fused_sgd=False, threads=None):
        super().__init__(spec, params, ops)
        self.ops, self.dropout_rng, self.fused_sgd = ops, dropout_rng, fused_sgd
        self.threads = threads
        self.views = [spec.views(self.params, i) for i in range(len(spec.layers))]

    def _scope(self):
        """Numba's thread count of this thread set to ``threads`` for the calls inside."""
        if self.threads is None:
            return contextlib.nullcontext()
        return numba_threads(self.threads)

    # What only training needs is built on first use: ``predict`` and ``evaluate`` make a
    # trainer per call, and zeroing a gradient buffer the size of the parameters, with its
    # views, costs more than a small batch's forward pass.
    @cached_property
    def grads(self):
        return self.ops.upload(np.zeros(self.spec.trainable, dtype=self.spec.dtype))

    @cached_property
    def gviews(self):
        return [self.spec.views(self.grads, i) for i in range(len(self.spec.layers))]

    @cached_property
    def decayed(self):
        return self.ops.upload(self.spec.decayed)

    @cached_property
    def rest(self):
        """[lo, hi) ranges of the flat buffer the update pass covers: every trained parameter,
        or with ``fused_sgd`` those of the stages that are not Dense (adjacent ones merged);
        never the state after them."""
        if not self.fused_sgd:
            return [(0, self.spec.trainable)]
        ranges = []
        for stage, i in self.spec.stages:
            if isinstance(stage, Dense):
                continue
            for off, shape in self.spec.slices[i].values():
                if off >= self.spec.trainable:
                    continue
                lo, hi = off, off + int(np.prod(shape))
                if ranges and ranges[-1][1] == lo:
                    ranges[-1] = (ranges[-1][0], hi)
                else:
                    ranges.append((lo, hi))
        return ranges

    def data(self, x, y=None):
        """x in the model's input shape, and y, where the ops compute."""
        x = self.ops.upload(x.reshape((len(x),) + self.spec.input_shape))
        return x, None if y is None else self.targets(y)

    def _forward(self, x, train):
        """``(output, ctxs)``: the last stage's output and each stage's context for the
        backward pass (the output layer's ``ctxs[-1] = (x, z, a)`` gives the loss its ``z``)."""
        a, ctxs = x, []
        for stage, i in self.spec.stages:
            a, ctx = stage.forward(self.ops, self.views[i], a, train, self.dropout_rng)
            ctxs.append(ctx)
        return a, ctxs

    trains_optimizers = property(lambda self: hasattr(self.ops, "optimizer_step"))

    def train_epoch(self, data, order, batch_size, lr, decay, *, continues=False, opt=None,
                    l2=0.0, l1=0.0, control=None):
        x, y = data
        control = control or EpochControl()
        state = None if opt is None else self.ops.upload(opt.state)   # where the ops compute
        with self._scope(), self.ops.running():
            for k in range(0, len(order), batch_size):
                if control.stopped:
                    break
                self._step(x, y, order[k:k + batch_size], lr, decay, opt, l2, state, l1)
                control.array[SYNC_PROGRESS] += 1
        if state is not None and state is not opt.state:
            opt.state[...] = self.ops.download(state)

    def _step(self, x, y, idx, lr, decay, opt=None, l2=0.0, state=None, l1=0.0):
        """One step on the mini-batch ``x[idx]``: forward through every stage, the output
        delta, backward (the first stage computes no input gradient; with ``fused_sgd`` and
        no ``opt`` each dense layer updates itself there, after computing its input
        gradient), one update pass over the other parameters (with ``opt``: over all of them,
        ``ops.optimizer_step``)."""
        ops, spec = self.ops, self.spec
        scale = lr / len(idx)
        fused = self.fused_sgd and opt is None
        a, ctxs = self._forward(ops.take(x, idx), True)
        delta = ops.output_delta(ctxs[-1][1], a, ops.take(y, idx), spec.loss_code,
                                 spec.output_code)
        last = len(spec.stages) - 1
        for s in range(last, -1, -1):
            stage, i = spec.stages[s]
            extra = {"is_dz": True} if s == last else {}
            if fused and isinstance(stage, Dense):
                extra["sgd"] = (scale, decay)
            delta = stage.backward(ops, self.views[i], self.gviews[i], ctxs[s], delta, s > 0,
                                   **extra)
        if opt is not None:
            o = opt.optimizer
            ops.optimizer_step(self.params[:spec.trainable], self.grads, self.decayed,
                               1.0 / len(idx), l2, lr, o.code, o.hyper(l1), state, opt.step)
            return
        for lo, hi in self.rest:
            ops.sgd_apply(self.params[lo:hi], self.grads[lo:hi], self.decayed[lo:hi], decay,
                          scale)

    def evaluate(self, data, *, train=False):
        """(summed cost, number correct); with ``train``, by the training-mode forward over
        the whole of ``data`` at once (batch norm by its statistics, moving the running
        averages; dropout drawing masks) — for ``fastnet.gradcheck``."""
        x, y = data
        total, correct = 0.0, 0
        chunk = max(len(x), 1) if train else EVAL_CHUNK
        with self._scope(), self.ops.running():
            for k in range(0, len(x), chunk):
                a, ctxs = self._forward(x[k:k + chunk], train)
                t, c = self.ops.loss_and_correct(ctxs[-1][1], a, y[k:k + chunk],
                                                 self.spec.loss_code)
                total += t
                correct += c
        return total, correct

    def predict(self, data):
        x = data[0]
        with self._scope():
            return np.concatenate([self.ops.download(self._forward(x[k:k + EVAL_CHUNK],
                                                                   False)[0])
                                   for k in range(0, len(x), EVAL_CHUNK)])


def cnn_plan(spec):
    """(layout, acts, cg) for ``cnn_cpu.train_epoch`` when the network is one ConvPool, a
    Flatten and dense layers, else None."""
    stages, slices = spec.stages, spec.slices
    if len(stages) < 3 or not isinstance(stages[0][0], ConvPool) or \
            not isinstance(stages[1][0], Flatten) or \
            not all(isinstance(st, Dense) for st, _ in stages[2:]):
        return None
    cp = stages[0][0]
    conv = cp.conv
    c_in, h, w = spec.input_shape
    c_out, oh, ow = cp.pool.output_shape(conv.output_shape(spec.input_shape))
    kh, kw = conv.kernel_size
    ph, pw = cp.pool.size
    rows = [(c_in * h * w, c_out * oh * ow, slices[0]["w"][0], slices[0]["b"][0])]
    rows += [(st.n_in, st.n_out, slices[i]["w"][0], slices[i]["b"][0]) for st, i in stages[2:]]
    acts = [cp.code] + [ACTIVATIONS[st.activation] for st, _ in stages[2:]]
    cg = [c_in, h, w, c_out, kh, kw, ph, pw, slices[0]["w"][0], slices[0]["b"][0]]
    return (np.array(rows, dtype=np.int64), np.array(acts, dtype=np.int64),
            np.array(cg, dtype=np.int64))


class CnnTrainer(LayerwiseTrainer):
    """The book's first CNN on the CPU: epochs through ``kernels/cnn_cpu.py`` (``plan`` from
    ``cnn_plan``), evaluation and prediction layer by layer."""

    def __init__(self, spec, params, ops, plan, **kwargs):
        super().__init__(spec, params, ops, **kwargs)
        self.plan = plan
        self._choice = EpochThreads(("cnn", spec.dtype.str) + tuple(a.tobytes() for a in plan))

    def epoch_threads(self, batch_size: int) -> int:
        import numba

        from fastnet.kernels import cnn_cpu
        layout, _, cg = self.plan
        available = numba.get_num_threads() if self.threads is None else self.threads
        return cnn_cpu.epoch_threads(layout, cg, batch_size, available)

    def train_epoch(self, data, order, batch_size, lr, decay, *, continues=False, opt=None,
                    l2=0.0, l1=0.0, control=None):
        """One epoch; without a fixed ``threads``, on the count ``Chooser`` finds faster by
        training a scratch copy (the count changes the sums' rounding), the whole epoch on
        that count (``threads_used``). With ``opt``: ``cnn_cpu.train_epoch_opt``, on the
        count given or else the most the epoch can use (an optimizer's epoch is not probed)."""
        from fastnet.kernels import cnn_cpu
        x, y = data
        layout, acts, cg = self.plan
        sync = (control or EpochControl()).array
        if opt is not None:
            o, most = opt.optimizer, self.epoch_threads(batch_size)
            cnn_cpu.train_epoch_opt(self.params, layout, acts, self.spec.loss_code, cg, x, y,
                                    order, batch_size, lr, l2, o.code, o.hyper(l1), opt.state,
                                    opt.step, self.decayed, most, sync)
            self.threads_used = most
            return

        def step(part, threads, params=self.params, sync=sync):
            cnn_cpu.train_epoch(params, layout, acts, self.spec.loss_code, cg, x, y, part,
                                batch_size, lr, decay, threads, sync)

        most = self.epoch_threads(batch_size)
        if self.threads is not None:
            step(order, most)
            self.threads_used = most
        else:
            copy = []                            # made only if this epoch probes

            def scratch(part, threads):
                if not copy:
                    copy.append(self.params.copy())
                step(part, threads, copy[0], EpochControl().array)   # not the epoch's count
            self.threads_used = self._choice.run(step, order, batch_size, most,
                                                 scratch=scratch, continues=continues)
