"""A test-only statement of the book's chapter-6 ``network3.py`` (Nielsen, *Neural Networks and
Deep Learning*) in plain NumPy, float64: the oracle for ``fastnet.network3``.

Written from the book's code as a specification, not copied, and independent of fastnet (it
imports nothing from it, so a bug in fastnet's kernels, layers or runners cannot hide here):

- ``ConvPool``: a true ("valid") 2-D convolution, as Theano's ``conv2d`` computes it, with the
  book's filter orientation: ``out[n, f, y, x] = Σ_c Σ_i Σ_j x[n, c, y + kh−1−i, x + kw−1−j] ·
  w[f, c, i, j]``; then max-pooling over non-overlapping ``poolsize = (ph, pw)`` blocks (rows
  and columns left over ignored, Theano's ``ignore_border=True``); then ``+ b`` per filter;
  then the activation. The gradient of a pool block goes to its maximum (to every tied
  maximum, as Theano's max-pool gradient does).
- ``FullyConnected``: ``act(x @ w + b)`` with ``w: (n_in, n_out)``; at inference
  ``act((1 − p)·x @ w + b)``. ``Softmax``: the same with the softmax.
- the cost of a mini-batch of ``m``: ``−(1/m)·Σ log a[k, y_k] + 0.5·λ·Σ_layers ‖w‖² /
  num_training_batches`` (the book divides the L2 term by the number of mini-batches, not by
  the number of samples); the gradient by backpropagation written out below; the update
  ``param ← param − η·∂cost/∂param`` for every ``w`` and ``b``.
- ``Network.SGD``: the book's loop and printed lines: whole mini-batches in data order (no
  shuffling; a remainder of fewer than ``mini_batch_size`` samples is never used), after the
  last mini-batch of each epoch the validation accuracy, ``>=`` the best so far making it the
  new best at ``iteration`` (the index of that last mini-batch), the test accuracy at the best
  epochs, and three final lines. Returns None, as the book's ``SGD`` does.

Accuracies are ``correct / (batches·mini_batch_size)``: the book's mean of per-batch
accuracies in exact arithmetic (the book's float mean may differ in the last bit, which could
only decide a ``>=`` between two equal counts; the exact count decides it as the book means).

Training-time dropout is not stated here: its random draws cannot match fastnet's, so
test_network3.py checks the masks by decoding them from the weights fastnet trains.
"""

from __future__ import annotations

import numpy as np


# ---------------------------------------------------------------------------- activations
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# name: (function of z, its derivative as a function of z)
ACTIVATIONS = {
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "relu": (lambda z: np.maximum(0.0, z), lambda z: (z > 0).astype(np.float64)),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "linear": (lambda z: z, np.ones_like),
}


def softmax(z):
    """Row-wise softmax of ``z: (m, n)``."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------- convolution
def conv_valid(x, w):
    """True 2-D convolution, 'valid' part. x: (m, c, h, wd); w: (f, c, kh, kw);
    returns (m, f, h − kh + 1, wd − kw + 1)."""
    m, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    oh, ow = h - kh + 1, wd - kw + 1
    out = np.zeros((m, f, oh, ow))
    for i in range(kh):
        for j in range(kw):
            # a true convolution meets filter tap (i, j) with input offset (kh−1−i, kw−1−j)
            patch = x[:, :, kh - 1 - i:kh - 1 - i + oh, kw - 1 - j:kw - 1 - j + ow]
            out += np.einsum("ncyx,fc->nfyx", patch, w[:, :, i, j])
    return out


def conv_valid_backward(x, w, dout):
    """Gradients (dx, dw) of ``conv_valid(x, w)`` given ``dout`` of its output's shape."""
    kh, kw = w.shape[2:]
    oh, ow = dout.shape[2:]
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for i in range(kh):
        for j in range(kw):
            rows = slice(kh - 1 - i, kh - 1 - i + oh)
            cols = slice(kw - 1 - j, kw - 1 - j + ow)
            dw[:, :, i, j] = np.einsum("nfyx,ncyx->fc", dout, x[:, :, rows, cols])
            dx[:, :, rows, cols] += np.einsum("nfyx,fc->ncyx", dout, w[:, :, i, j])
    return dx, dw


def max_pool(z, poolsize):
    """Max over non-overlapping (ph, pw) blocks of z: (m, f, H, W), leftover rows/columns
    ignored; returns (pooled (m, f, H//ph, W//pw), the blocks (m, f, H//ph, ph, W//pw, pw))."""
    ph, pw = poolsize
    m, f, h, w = z.shape
    blocks = z[:, :, :h // ph * ph, :w // pw * pw].reshape(m, f, h // ph, ph, w // pw, pw)
    return blocks.max(axis=(3, 5)), blocks


def max_pool_backward(z_shape, blocks, pooled, dpooled):
    """The gradient w.r.t. the pooled input (shape ``z_shape``): each block's gradient goes
    to the positions that equal its maximum."""
    m, f, ph_n, ph, pw_n, pw = blocks.shape
    at_max = blocks == pooled[:, :, :, None, :, None]
    dz = np.zeros(z_shape)
    dz[:, :, :ph_n * ph, :pw_n * pw] = \
        (at_max * dpooled[:, :, :, None, :, None]).reshape(m, f, ph_n * ph, pw_n * pw)
    return dz


# ---------------------------------------------------------------------------- layers
class ConvPool:
    """image_shape: one sample's (c, h, w); w: (f, c, kh, kw) in the book's orientation;
    b: (f,); poolsize: (ph, pw); act: a name in ACTIVATIONS."""

    def __init__(self, w, b, image_shape, poolsize, act):
        self.w, self.b = np.array(w, dtype=np.float64), np.array(b, dtype=np.float64)
        self.image_shape, self.poolsize, self.act = tuple(image_shape), tuple(poolsize), act

    def forward(self, x, train):
        x = x.reshape((len(x),) + self.image_shape)
        conv = conv_valid(x, self.w)
        pooled, blocks = max_pool(conv, self.poolsize)
        z = pooled + self.b[None, :, None, None]  # the book: pool, then bias, then activation
        return ACTIVATIONS[self.act][0](z), (x, conv.shape, blocks, pooled, z)

    def backward(self, cache, da):
        x, conv_shape, blocks, pooled, z = cache
        dz = da.reshape(z.shape) * ACTIVATIONS[self.act][1](z)
        dconv = max_pool_backward(conv_shape, blocks, pooled, dz)
        dx, dw = conv_valid_backward(x, self.w, dconv)
        return dx, dw, dz.sum(axis=(0, 2, 3))


class FullyConnected:
    """w: (n_in, n_out); b: (n_out,); act: a name in ACTIVATIONS; p_dropout: the inference
    path scales the layer's input by 1 − p_dropout."""

    def __init__(self, w, b, act, p_dropout=0.0):
        self.w, self.b = np.array(w, dtype=np.float64), np.array(b, dtype=np.float64)
        self.act, self.p_dropout = act, p_dropout

    def _z(self, x, train):
        if train and self.p_dropout > 0:
            raise ValueError("training-time dropout is not stated in the reference")
        scale = 1.0 if train else 1.0 - self.p_dropout
        return scale * (x @ self.w) + self.b

    def forward(self, x, train):
        x = x.reshape(len(x), self.w.shape[0])
        z = self._z(x, train)
        return ACTIVATIONS[self.act][0](z), (x, z)

    def backward(self, cache, da):
        x, z = cache
        dz = da * ACTIVATIONS[self.act][1](z)
        return dz @ self.w.T, x.T @ dz, dz.sum(axis=0)


class Softmax(FullyConnected):
    """The output layer: softmax of ``x @ w + b``; its cost is the mean log-likelihood."""

    def __init__(self, w, b, p_dropout=0.0):
        super().__init__(w, b, "linear", p_dropout)

    def forward(self, x, train):
        x = x.reshape(len(x), self.w.shape[0])
        z = self._z(x, train)
        return softmax(z), (x, z)

    def backward(self, cache, dz):
        """``dz``: the cost's gradient w.r.t. the softmax's input z (see Network.gradients)."""
        x, _ = cache
        return dz @ self.w.T, x.T @ dz, dz.sum(axis=0)


# ---------------------------------------------------------------------------- network
class Network:
    """layers: ConvPool / FullyConnected layers ending in a Softmax."""

    def __init__(self, layers, mini_batch_size):
        self.layers, self.mini_batch_size = list(layers), mini_batch_size

    def feedforward(self, x, train=False):
        """The output (m, n_out) for x (m, n_in), through the inference path by default."""
        a = np.asarray(x, dtype=np.float64)
        for layer in self.layers:
            a, _ = layer.forward(a, train)
        return a

    def cost(self, x, y, lmbda, num_training_batches):
        """The book's training cost of the mini-batch ``(x, y)`` (y: int labels)."""
        a = self.feedforward(x, train=True)
        l2 = sum(float((layer.w ** 2).sum()) for layer in self.layers)
        return -np.mean(np.log(a[np.arange(len(y)), y])) + \
            0.5 * lmbda * l2 / num_training_batches

    def gradients(self, x, y, lmbda, num_training_batches):
        """[(∂cost/∂w, ∂cost/∂b) per layer] for the mini-batch ``(x, y)``."""
        a, caches = np.asarray(x, dtype=np.float64), []
        for layer in self.layers:
            a, cache = layer.forward(a, True)
            caches.append(cache)
        m = len(y)
        delta = a.copy()
        delta[np.arange(m), y] -= 1.0
        delta /= m  # ∂(−mean log a_y)/∂z of the softmax
        grads = []
        for layer, cache in zip(reversed(self.layers), reversed(caches)):
            delta, dw, db = layer.backward(cache, delta)
            grads.append((dw + lmbda * layer.w / num_training_batches, db))
        return grads[::-1]

    def accuracy(self, data):
        """Fraction right over the whole mini-batches of ``data = (x, y)``."""
        x, y = data
        n = len(x) // self.mini_batch_size * self.mini_batch_size
        predicted = np.argmax(self.feedforward(x[:n]), axis=1)
        return np.count_nonzero(predicted == y[:n]) / n

    def SGD(self, training_data, epochs, mini_batch_size, eta, validation_data,  # noqa: N802
            test_data, lmbda=0.0):
        """The book's training loop and lines; returns None."""
        x, y = training_data
        num_training_batches = len(x) // mini_batch_size
        best_validation_accuracy = 0.0
        for epoch in range(epochs):
            for minibatch_index in range(num_training_batches):
                iteration = num_training_batches * epoch + minibatch_index
                if iteration % 1000 == 0:
                    print("Training mini-batch number {0}".format(iteration))
                batch = slice(minibatch_index * mini_batch_size,
                              (minibatch_index + 1) * mini_batch_size)
                grads = self.gradients(x[batch], y[batch], lmbda, num_training_batches)
                for layer, (dw, db) in zip(self.layers, grads):
                    layer.w -= eta * dw
                    layer.b -= eta * db
                if (iteration + 1) % num_training_batches == 0:
                    validation_accuracy = self.accuracy(validation_data)
                    print("Epoch {0}: validation accuracy {1:.2%}".format(
                        epoch, validation_accuracy))
                    if validation_accuracy >= best_validation_accuracy:
                        print("This is the best validation accuracy to date.")
                        best_validation_accuracy = validation_accuracy
                        best_iteration = iteration
                        if test_data:
                            test_accuracy = self.accuracy(test_data)
                            print("The corresponding test accuracy is {0:.2%}".format(
                                test_accuracy))
        print("Finished training network.")
        print("Best validation accuracy of {0:.2%} obtained at iteration {1}".format(
            best_validation_accuracy, best_iteration))
        print("Corresponding test accuracy of {0:.2%}".format(test_accuracy))
