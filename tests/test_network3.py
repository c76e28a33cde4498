"""fastnet.network3: the book's chapter-6 API without Theano, checked against
tests/network3_reference.py (the book's algorithm in NumPy, independent of fastnet)."""

import numpy as np
import pytest

import network3_reference as ref3
from fastnet import network3
from fastnet.network3 import ConvPoolLayer, FullyConnectedLayer, Network, SoftmaxLayer
from helpers import assert_close


def tiny_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 64)).astype(np.float32)
    y = (x[:, :32].sum(1) > x[:, 32:].sum(1)).astype(np.int64)
    return x, y


def tiny_net(mbs=4, p=0.0, act=network3.sigmoid):
    return Network([
        ConvPoolLayer(image_shape=(mbs, 1, 8, 8), filter_shape=(3, 1, 3, 3), poolsize=(2, 2),
                      activation_fn=act),
        FullyConnectedLayer(n_in=3 * 3 * 3, n_out=5, activation_fn=act, p_dropout=p),
        SoftmaxLayer(n_in=5, n_out=2, p_dropout=p)], mbs, dtype="float64")


def test_initialisation_follows_the_book():
    np.random.seed(7)
    net = tiny_net()
    np.random.seed(7)
    w0 = np.random.normal(0, np.sqrt(1.0 / (3 * 9 / 4)), (3, 1, 3, 3))
    b0 = np.random.normal(0, 1.0, (3,))
    w1 = np.random.normal(0, np.sqrt(1.0 / 5), (27, 5))
    conv, fc, sm = net.layers
    assert np.array_equal(conv.w, w0) and np.array_equal(conv.b, b0)
    assert np.array_equal(fc.w, w1)
    assert not sm.w.any() and not sm.b.any()
    # inside, the conv filters are stored flipped (fastnet cross-correlates)
    net._push()
    assert np.array_equal(net.model.params_of(0)["w"], w0[..., ::-1, ::-1])
    assert np.array_equal(net.model.params_of(2 + 1)["w"], w1.T)


# ---------------------------------------------------------------------------- the book's lines
def test_sgd_prints_the_books_lines_and_returns_none(capsys):
    """A run whose figures are known exactly: a softmax layer that learns x = (1, 0) → 0,
    (0, 1) → 1 in its first mini-batch, validation data with one wrong label in its whole
    mini-batches (75%; a fifth sample, beyond them, is not used: counting it gives 60%), test
    data with three wrong labels in eight (62.5%). Every epoch ties the best, and the book's
    ``>=`` makes the last one the best: iteration 3·5 − 1 = 14 (5 mini-batches per epoch)."""
    net = Network([SoftmaxLayer(n_in=2, n_out=2)], 2, dtype="float64")
    e0, e1 = [1.0, 0.0], [0.0, 1.0]
    training = (np.array([e0, e1] * 5), np.array([0, 1] * 5))
    validation = (np.array([e0, e1, e0, e1, e0]), np.array([0, 1, 0, 0, 1]))
    test = (np.array([e0, e1] * 4), np.array([0, 1, 1, 0, 0, 1, 0, 0]))
    assert net.SGD(training, 3, 2, 1.0, validation, test) is None  # as the book's SGD
    epoch = ("Epoch {}: validation accuracy 75.00%\n"
             "This is the best validation accuracy to date.\n"
             "The corresponding test accuracy is 62.50%\n")
    assert capsys.readouterr().out == (
        "Training mini-batch number 0\n" + epoch.format(0) + epoch.format(1) + epoch.format(2) +
        "Finished training network.\n"
        "Best validation accuracy of 75.00% obtained at iteration 14\n"
        "Corresponding test accuracy of 62.50%\n")
    assert (net.best_validation_accuracy, net.best_iteration, net.test_accuracy) == \
        (0.75, 14, 0.625)


_ACT_NAMES = {network3.sigmoid: "sigmoid", network3.ReLU: "relu", network3.tanh: "tanh",
              network3.linear: "linear"}


def reference_of(net: Network) -> ref3.Network:
    """The reference network with copies of ``net``'s layer parameters (book orientation)."""
    layers = []
    for layer in net.layers:
        if isinstance(layer, SoftmaxLayer):
            layers.append(ref3.Softmax(layer.w, layer.b, layer.p_dropout))
        elif isinstance(layer, FullyConnectedLayer):
            layers.append(ref3.FullyConnected(layer.w, layer.b, _ACT_NAMES[layer.activation_fn],
                                              layer.p_dropout))
        else:
            layers.append(ref3.ConvPool(layer.w, layer.b, layer.image_shape[1:], layer.poolsize,
                                        _ACT_NAMES[layer.activation_fn]))
    return ref3.Network(layers, net.mini_batch_size)


# Tiny architectures in float64 with rectangular images, filters and pools (a transposed or
# unflipped filter, or a pool over the wrong axis, changes the numbers): one ConvPool then
# dense layers (on the CPU: kernels/cnn_cpu.py's whole-epoch path), two ConvPools (the
# layer-by-layer path), dense layers only (the fused dense path).
ARCHITECTURES = {
    "convpool-fc": (lambda mbs, act: [
        ConvPoolLayer(image_shape=(mbs, 1, 9, 8), filter_shape=(3, 1, 2, 3), poolsize=(2, 3),
                      activation_fn=act),
        FullyConnectedLayer(n_in=3 * 4 * 2, n_out=5, activation_fn=act),
        SoftmaxLayer(n_in=5, n_out=3)], 72),
    "convpool-convpool": (lambda mbs, act: [
        ConvPoolLayer(image_shape=(mbs, 1, 12, 11), filter_shape=(3, 1, 3, 2), poolsize=(2, 2),
                      activation_fn=act),
        ConvPoolLayer(image_shape=(mbs, 3, 5, 5), filter_shape=(2, 3, 2, 3), poolsize=(2, 1),
                      activation_fn=act),
        SoftmaxLayer(n_in=2 * 2 * 3, n_out=3)], 132),
    "fc": (lambda mbs, act: [
        FullyConnectedLayer(n_in=20, n_out=6, activation_fn=act),
        FullyConnectedLayer(n_in=6, n_out=4, activation_fn=act),
        SoftmaxLayer(n_in=4, n_out=3)], 20),
}


def three_class_data(n, n_in, seed):
    rng = np.random.default_rng(seed)
    x = rng.random((n, n_in))
    third = n_in // 3
    y = np.argmax([x[:, :third].sum(1), x[:, third:2 * third].sum(1),
                   x[:, 2 * third:3 * third].sum(1) + 0.1], axis=0).astype(np.int64)
    return x, y


@pytest.mark.parametrize("act", [network3.sigmoid, network3.ReLU], ids=["sigmoid", "relu"])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_sgd_matches_the_independent_reference(arch, act, capsys):
    """Two epochs of 7 whole mini-batches of 4 (a remainder of 3 never used), λ > 0: the
    parameters match tests/network3_reference.py (the book's algorithm in NumPy, sharing no
    code with fastnet) to 1e-10, and the printed lines match it character for character."""
    make, n_in = ARCHITECTURES[arch]
    np.random.seed(11)
    net = Network(make(4, act), 4, dtype="float64")
    book = reference_of(net)
    initial = [layer.w.copy() for layer in net.layers]
    x, y = three_class_data(31, n_in, seed=2)
    xv, yv = three_class_data(22, n_in, seed=3)
    assert net.SGD((x, y), 2, 4, 0.4, (xv, yv), (x, y), lmbda=0.3) is None
    lines = capsys.readouterr().out
    book.SGD((x, y), 2, 4, 0.4, (xv, yv), (x, y), lmbda=0.3)
    assert lines == capsys.readouterr().out
    for i, (layer, expected) in enumerate(zip(net.layers, book.layers)):
        assert_close(layer.w, expected.w, rtol=1e-10, atol=1e-12, name=f"layers[{i}].w")
        assert_close(layer.b, expected.b, rtol=1e-10, atol=1e-12, name=f"layers[{i}].b")
        assert not np.array_equal(layer.w, initial[i])  # trained


def test_best_iteration_and_lines_over_many_mini_batches(capsys):
    """1,100 mini-batches of 2 per epoch (one sample left over), four epochs: "Training
    mini-batch number" every 1,000 iterations, mid-epoch included; validation accuracy that
    falls after its best, so the best iteration is an earlier epoch's last mini-batch
    (num_training_batches·(epoch + 1) − 1). All against the reference's lines."""
    make, n_in = ARCHITECTURES["fc"]
    np.random.seed(3)
    net = Network(make(2, network3.sigmoid), 2, dtype="float64")
    book = reference_of(net)
    x, y = three_class_data(2201, n_in, seed=4)
    xv, yv = three_class_data(40, n_in, seed=8)
    # η small enough that the run is not chaotic (at η = 1 a 1e-15 change of one weight moves
    # the reference's own weights by O(1) within two epochs)
    net.SGD((x, y), 4, 2, 0.2, (xv, yv), (x, y))
    lines = capsys.readouterr().out
    book.SGD((x, y), 4, 2, 0.2, (xv, yv), (x, y))
    assert lines == capsys.readouterr().out
    out = lines.splitlines()
    assert [l for l in out if l.startswith("Training")] == \
        [f"Training mini-batch number {k}" for k in (0, 1000, 2000, 3000, 4000)]
    accuracies = [float(l.split()[-1][:-1]) for l in out if l.startswith("Epoch ")]
    best_epoch = max(e for e, a in enumerate(accuracies) if a == max(accuracies))
    assert best_epoch < 3, accuracies  # the scenario: the best is not the last epoch
    assert net.best_iteration == 1100 * (best_epoch + 1) - 1
    assert out[-2] == (f"Best validation accuracy of {accuracies[best_epoch]:.2f}% obtained "
                       f"at iteration {net.best_iteration}")
    assert_close(net.layers[0].w, book.layers[0].w, rtol=1e-9, atol=1e-11)


def test_reference_gradients_match_finite_differences():
    """The reference's backpropagation is right: its gradients of the book's cost (log-
    likelihood + 0.5·λ·Σ‖w‖²/num_training_batches) agree with central differences."""
    rng = np.random.default_rng(0)
    for arch, act in (("convpool-fc", "tanh"), ("convpool-convpool", "sigmoid"),
                      ("fc", "sigmoid")):
        make, n_in = ARCHITECTURES[arch]
        np.random.seed(1)
        book = reference_of(Network(make(3, network3.sigmoid), 3, dtype="float64"))
        for layer in book.layers:
            layer.w = rng.normal(0, 0.7, layer.w.shape)
            layer.b = rng.normal(0, 0.7, layer.b.shape)
            layer.act = act if not isinstance(layer, ref3.Softmax) else layer.act
        x, y = three_class_data(3, n_in, seed=1)
        grads = book.gradients(x, y, 0.8, 7)
        h = 1e-6
        for layer, (dw, db) in zip(book.layers, grads):
            for param, grad in ((layer.w, dw), (layer.b, db)):
                numeric = np.zeros_like(param)
                for idx in np.ndindex(param.shape):
                    old = param[idx]
                    param[idx] = old + h
                    up = book.cost(x, y, 0.8, 7)
                    param[idx] = old - h
                    down = book.cost(x, y, 0.8, 7)
                    param[idx] = old
                    numeric[idx] = (up - down) / (2 * h)
                assert_close(grad, numeric, rtol=1e-6, atol=1e-8, name=f"{arch} gradient")


def test_reference_convolution_is_the_books_orientation():
    """A single-tap filter: a true convolution shifts the image by the tap's offset from the
    filter's far corner (a cross-correlation would shift it by the offset from the near one)."""
    x = np.arange(20.0).reshape(1, 1, 4, 5)
    w = np.zeros((1, 1, 2, 3))
    w[0, 0, 0, 0] = 1.0  # tap (0, 0) meets input (y + 1, x + 2)
    assert np.array_equal(ref3.conv_valid(x, w)[0, 0], x[0, 0, 1:, 2:])
    pooled, _ = ref3.max_pool(np.arange(30.0).reshape(1, 1, 5, 6), (2, 3))
    assert np.array_equal(pooled[0, 0], [[8.0, 11.0], [20.0, 23.0]])  # leftover row ignored


# ---------------------------------------------------------------------------- dropout
def _decode_masks(dw, g, eta, m):
    """The 0/1 masks (k, n_in) of k samples from a first layer's weight change ``dw: (n_in,
    n_out)`` = −(eta/m)·Σ_k mask_k ⊙ g_k, where ``g: (k, n_out)`` holds each sample's output
    error times its (constant) input. Asserts that every entry decodes to 0 or 1 exactly."""
    masks = np.linalg.lstsq(g.T, -dw.T * (m / eta), rcond=None)[0]
    assert np.abs(masks - np.round(masks)).max() < 1e-9
    masks = np.round(masks)
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert_close(-(eta / m) * masks.T @ g, dw, rtol=1e-9, atol=1e-12, name="decoded dw")
    return masks


P_DROP, N_IN = 0.3, 10_000


def _check_masks(masks):
    # binomial(10,000, 0.7): standard deviation 0.0046, so ±0.03 is 6.5σ; ignoring p keeps
    # everything (1.0), and taking p for the keep rate gives 0.3
    for mask in masks:
        assert abs(mask.mean() - (1 - P_DROP)) < 0.03, mask.mean()
    # independent masks differ in 2·0.7·0.3 = 42% of the inputs; one mask reused gives 0%
    assert np.mean(masks[0] != masks[1]) > 0.3


@pytest.mark.parametrize("where", ["softmax", "fully_connected"])
def test_dropout_in_training_keeps_each_input_with_probability_1_minus_p(where):
    """One mini-batch of two samples, every parameter 0 (so each sample's output error is
    a − e_y with a uniform, whatever the mask): the first layer's weight change gives each
    sample's mask. Each keeps ~70% for p = 0.3, and the two samples' masks differ."""
    if where == "softmax":
        layers = [SoftmaxLayer(n_in=N_IN, n_out=3, p_dropout=P_DROP)]
    else:
        first = FullyConnectedLayer(n_in=N_IN, n_out=3, activation_fn=network3.linear,
                                    p_dropout=P_DROP)
        first.w, first.b = np.zeros((N_IN, 3)), np.zeros(3)
        out = SoftmaxLayer(n_in=3, n_out=3)
        out.w = np.eye(3)  # passes the softmax's error back unchanged
        layers = [first, out]
    net = Network(layers, 2, dtype="float64")
    x, y = np.ones((2, N_IN)), np.array([0, 1])
    x[1] = 2.0  # tells the two samples' contributions apart
    net.SGD((x, y), 1, 2, 0.5, (x, y), None)
    g = np.full((2, 3), 1 / 3) - np.eye(3)[y]
    _check_masks(_decode_masks(net.layers[0].w, g * x[:, :1], 0.5, 2))


def test_dropout_masks_differ_between_mini_batches():
    """Two mini-batches of one sample: the first step's error is a − e_0 (a uniform), the
    second's follows from the bias change; the weight change then gives both masks."""
    net = Network([SoftmaxLayer(n_in=N_IN, n_out=3, p_dropout=P_DROP)], 1, dtype="float64")
    x, y = np.ones((2, N_IN)), np.array([0, 1])
    eta = 0.5
    net.SGD((x, y), 1, 1, eta, (x, y), None)
    g1 = np.full(3, 1 / 3) - np.eye(3)[0]
    g2 = -net.layers[0].b / eta - g1  # biases are never dropped: Δb = −eta·(g1 + g2)
    _check_masks(_decode_masks(net.layers[0].w, np.stack([g1, g2]), eta, 1))


def test_inference_scales_each_dropout_layers_input_by_1_minus_p():
    """After training with dropout, the network's outputs are the reference's inference path:
    each layer's input times 1 − p_dropout (p differs per layer, and from 1 − p)."""
    np.random.seed(4)
    net = Network([FullyConnectedLayer(n_in=20, n_out=6, p_dropout=0.2),
                   FullyConnectedLayer(n_in=6, n_out=4, activation_fn=network3.ReLU,
                                       p_dropout=0.6),
                   SoftmaxLayer(n_in=4, n_out=3, p_dropout=0.3)], 4, dtype="float64")
    x, y = three_class_data(40, 20, seed=0)
    net.SGD((x, y), 2, 4, 0.5, (x, y), None)
    out = net.model.predict(x)
    assert np.array_equal(out, net.model.predict(x))  # no randomness at inference
    book = reference_of(net)
    assert_close(out, book.feedforward(x), rtol=1e-12, atol=1e-15, name="outputs")
    for layer in book.layers:  # the check can fail: unscaled inputs give other outputs
        layer.p_dropout = 0.0
    assert np.abs(out - book.feedforward(x)).max() > 1e-3


@pytest.mark.parametrize("layers,mbs,pattern", [
    (lambda: [ConvPoolLayer(image_shape=(5, 1, 8, 8), filter_shape=(3, 1, 3, 3)),
              SoftmaxLayer(27, 2)], 4, "mini-batches of 5"),
    (lambda: [ConvPoolLayer(image_shape=(4, 1, 8, 8), filter_shape=(3, 1, 3, 3)),
              FullyConnectedLayer(n_in=20, n_out=5), SoftmaxLayer(5, 2)], 4,
     r"layer 1 \(FullyConnectedLayer\): n_in=20 does not chain.*\(3, 3, 3\) = 27"),
    (lambda: [ConvPoolLayer(image_shape=(4, 2, 8, 8), filter_shape=(3, 1, 3, 3)),
              SoftmaxLayer(27, 2)], 4, "takes 1 input maps but image_shape"),
    (lambda: [ConvPoolLayer(image_shape=(4, 1, 8, 8), filter_shape=(3, 1, 3, 3)),
              ConvPoolLayer(image_shape=(4, 3, 4, 4), filter_shape=(2, 3, 2, 2)),
              SoftmaxLayer(2, 2)], 4, r"layer 1 \(ConvPoolLayer\).*outputs \(3, 3, 3\)"),
    (lambda: [FullyConnectedLayer(4, 3)], 4, "last layer must be a SoftmaxLayer"),
])
def test_layers_that_do_not_chain(layers, mbs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Network(layers(), mbs)


_IMAGE, _FILTER = (4, 1, 8, 8), (3, 1, 3, 3)


@pytest.mark.parametrize("make,error,pattern", [
    (lambda: ConvPoolLayer(_FILTER, (4, 1, 8.5, 8)), TypeError,
     r"image_shape must be a tuple of 4 ints >= 1 \(mini-batch size, input maps, height, "
     r"width\); its height is float 8.5"),
    (lambda: ConvPoolLayer(_FILTER, (4, 1, 8, 8.0)), TypeError, r"image_shape.*width is float"),
    (lambda: ConvPoolLayer(_FILTER, (4, True, 8, 8)), TypeError,
     r"image_shape.*input maps is bool"),
    (lambda: ConvPoolLayer(_FILTER, (4, 1, -8, 8)), ValueError, r"image_shape.*height is -8"),
    (lambda: ConvPoolLayer(_FILTER, (0, 1, 8, 8)), ValueError,
     r"image_shape.*mini-batch size is 0"),
    (lambda: ConvPoolLayer(_FILTER, "4188"), TypeError, r"image_shape must be a tuple"),
    (lambda: ConvPoolLayer(_FILTER, (4, 1, 8)), ValueError, r"image_shape.*got 3 entries"),
    (lambda: ConvPoolLayer((3, 1, 2.5, 3), _IMAGE), TypeError,
     r"filter_shape must be a tuple of 4 ints >= 1 \(filters, input maps, height, width\); "
     r"its height is float 2.5"),
    (lambda: ConvPoolLayer((3.0, 1, 3, 3), _IMAGE), TypeError, r"filter_shape.*filters is"),
    (lambda: ConvPoolLayer((3, 1, 3, 0), _IMAGE), ValueError, r"filter_shape.*width is 0"),
    (lambda: ConvPoolLayer((3, 1, 3, False), _IMAGE), TypeError, r"filter_shape.*width is bool"),
    (lambda: ConvPoolLayer(_FILTER, _IMAGE, poolsize=(2, 1.5)), TypeError,
     r"poolsize must be a tuple of 2 ints >= 1 \(height, width\); its width is float 1.5"),
    (lambda: ConvPoolLayer(_FILTER, _IMAGE, poolsize=(-2, 2)), ValueError,
     r"poolsize.*height is -2"),
    (lambda: ConvPoolLayer(_FILTER, _IMAGE, poolsize=2), TypeError, r"poolsize must be a tuple"),
    (lambda: ConvPoolLayer(_FILTER, _IMAGE, poolsize=(2, 2, 2)), ValueError,
     r"poolsize.*3 entries"),
    (lambda: ConvPoolLayer(_FILTER, _IMAGE, activation_fn=np.tanh), ValueError,
     r"ConvPoolLayer: activation_fn must be one of"),
    (lambda: ConvPoolLayer(_FILTER, _IMAGE, activation_fn=[]), ValueError,
     r"ConvPoolLayer: activation_fn must be one of"),
    (lambda: FullyConnectedLayer(4.5, 3), TypeError, r"FullyConnectedLayer n_in must be an int"),
    (lambda: FullyConnectedLayer(4, True), TypeError, r"FullyConnectedLayer n_out must be an int"),
    (lambda: FullyConnectedLayer(4, 0), ValueError, r"FullyConnectedLayer n_out must be an int"),
    (lambda: FullyConnectedLayer(4, 3, activation_fn={}), ValueError,
     r"FullyConnectedLayer: activation_fn must be one of"),
    (lambda: FullyConnectedLayer(4, 3, p_dropout=1.0), ValueError, r"p_dropout must be in"),
    (lambda: FullyConnectedLayer(4, 3, p_dropout=-0.1), ValueError, r"p_dropout must be a"),
    (lambda: FullyConnectedLayer(4, 3, p_dropout=True), TypeError, r"p_dropout must be a"),
    (lambda: FullyConnectedLayer(4, 3, p_dropout=float("nan")), ValueError, r"p_dropout"),
    (lambda: SoftmaxLayer("4", 3), TypeError, r"SoftmaxLayer n_in must be an int"),
    (lambda: SoftmaxLayer(4, 3.0), TypeError, r"SoftmaxLayer n_out must be an int"),
    (lambda: SoftmaxLayer(4, 3, p_dropout="0.5"), TypeError, r"SoftmaxLayer p_dropout"),
    (lambda: Network([SoftmaxLayer(4, 3)], 2.0), TypeError, r"mini_batch_size must be an int"),
    (lambda: Network([SoftmaxLayer(4, 3)], True), TypeError, r"mini_batch_size must be an int"),
    (lambda: Network([SoftmaxLayer(4, 3)], 0), ValueError, r"mini_batch_size must be an int"),
    (lambda: Network(SoftmaxLayer(4, 3), 2), TypeError, r"layers must be a list of"),
    (lambda: Network(["softmax", SoftmaxLayer(4, 3)], 2), TypeError,
     r"layer 0 \(str\): expected ConvPoolLayer"),
], ids=[
    "image-8.5", "image-8.0", "image-bool", "image-negative", "image-zero-batch", "image-str",
    "image-3-entries", "filter-2.5", "filter-3.0", "filter-zero", "filter-bool", "pool-1.5",
    "pool-negative", "pool-int", "pool-3-entries", "conv-act-np.tanh", "conv-act-unhashable",
    "fc-n_in-float", "fc-n_out-bool", "fc-n_out-zero", "fc-act-unhashable", "fc-p-1",
    "fc-p-negative", "fc-p-bool", "fc-p-nan", "softmax-n_in-str", "softmax-n_out-float",
    "softmax-p-str", "network-mbs-float", "network-mbs-bool", "network-mbs-zero",
    "network-layers-not-a-list", "network-layer-str"])
def test_layer_and_network_arguments_are_checked_before_any_draw(make, error, pattern):
    """Bad arguments raise TypeError/ValueError naming the argument (a non-integer image size
    such as 8.5 used to be truncated to 8), before any weights are drawn from np.random."""
    np.random.seed(0)
    with pytest.raises(error, match=pattern):
        make()
    assert np.random.random() == np.random.RandomState(0).random_sample()


def test_shapes_accept_numpy_ints():
    layer = ConvPoolLayer(np.array(_FILTER), np.array(_IMAGE), poolsize=(np.int64(2), 2))
    assert (layer.filter_shape, layer.image_shape, layer.poolsize) == (_FILTER, _IMAGE, (2, 2))
    assert all(type(v) is int for v in layer.image_shape + layer.filter_shape + layer.poolsize)


def test_bad_sgd_arguments():
    net = tiny_net()
    x, y = tiny_data()
    # the message states this network's input, not the book's MNIST (n, 784)
    with pytest.raises(TypeError, match=r"training_data must be a pair \(x, y\) with x of "
                                        r"shape \(n, 64\) or \(n, 1, 8, 8\)"):
        net.SGD(x, 1, 4, 0.1, (x, y), None)
    fc = Network([FullyConnectedLayer(n_in=64, n_out=7), SoftmaxLayer(n_in=7, n_out=2)], 4)
    with pytest.raises(TypeError, match=r"validation_data must be a pair \(x, y\) with x of "
                                        r"shape \(n, 64\) and y"):
        fc.SGD((x, y), 1, 4, 0.1, [x], None)
    with pytest.raises(ValueError, match="mini_batch_size 5 differs"):
        net.SGD((x, y), 1, 5, 0.1, (x, y), None)
    with pytest.raises(ValueError, match=r"training_data\[0\] must have shape \(n, 64\)"):
        net.SGD((x[:, :10], y), 1, 4, 0.1, (x, y), None)
    with pytest.raises(ValueError, match="fewer than one mini-batch"):
        net.SGD((x[:3], y[:3]), 1, 4, 0.1, (x, y), None)
    with pytest.raises(ValueError, match=r"validation_data\[1\] must be integer labels"):
        net.SGD((x, y), 1, 4, 0.1, (x, y[:5]), None)


@pytest.mark.slow
def test_books_first_cnn_after_one_epoch(mnist_dir, capsys):
    """The book's first CNN (sigmoid, η = 0.1, mini-batch 10), one epoch.

    The issue asks for ≥ 97% here; measured on the CPU with seeds 0, 1, 2: 93.48%, 93.71%,
    93.36% test (94.1–94.3% validation). The same update written out with the NumPy reference
    agrees with fastnet (test_sgd_matches_plain_numpy_statement, and the reference's gradients
    pass finite differences), and an independent PyTorch statement of the same network and
    training (examples/torch_first_cnn_check.py) gives 94.18%, 93.10%, 93.55% test for seeds
    0-2. So the threshold below is what one sigmoid epoch at η = 0.1 reaches, not a loosened
    tolerance: ≥ 97% after one epoch was not reproduced, by fastnet or by PyTorch."""
    np.random.seed(0)
    training_data, validation_data, test_data = network3.load_data_shared(str(mnist_dir))
    mini_batch_size = 10
    net = Network([
        ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                      poolsize=(2, 2)),
        FullyConnectedLayer(n_in=20 * 12 * 12, n_out=100),
        SoftmaxLayer(n_in=100, n_out=10)], mini_batch_size)
    net.SGD(training_data, 1, mini_batch_size, 0.1, validation_data, test_data)
    out = capsys.readouterr().out
    assert "Training mini-batch number 4000" in out
    assert net.test_accuracy >= 0.93, out


def fc_net(p=0.0):
    """Fully connected only (p is ignored: no dropout), so it trains through the model's
    fused runner."""
    return Network([FullyConnectedLayer(n_in=64, n_out=7), SoftmaxLayer(n_in=7, n_out=2)], 4,
                   dtype="float64")


@pytest.mark.parametrize("make", [tiny_net, fc_net], ids=["convpool", "fc"])
def test_checkpoint_resumes_exactly(tmp_path, capsys, make):
    """Two epochs, then a resumed third, end where three uninterrupted epochs do: same
    parameters bit for bit (dropout's generator included), same final lines."""
    data = tiny_data()
    np.random.seed(3)
    whole = make(p=0.3)
    whole.SGD(data, 3, 4, 0.5, data, data, lmbda=0.1)
    lines = capsys.readouterr().out.splitlines()

    path = tmp_path / "run.npz"
    np.random.seed(3)
    first = make(p=0.3)
    first.SGD(data, 2, 4, 0.5, data, data, lmbda=0.1, checkpoint=path)
    assert path.exists()
    capsys.readouterr()
    np.random.seed(99)                    # another initialisation: the checkpoint wins
    second = make(p=0.3)
    second.SGD(data, 3, 4, 0.5, data, data, lmbda=0.1, checkpoint=path)
    resumed = capsys.readouterr().out.splitlines()
    assert resumed[0] == f"Resuming from {path}: 2 epochs done"
    assert resumed[1:] == lines[-len(resumed) + 1:]
    assert np.array_equal(second.model.params, whole.model.params)
    for a, b in zip(second.layers, whole.layers):
        assert np.array_equal(a.w, b.w) and np.array_equal(a.b, b.b)
    assert second.test_accuracy == whole.test_accuracy

    # a finished run's file only reprints the result
    third = make(p=0.3)
    third.SGD(data, 3, 4, 0.5, data, data, lmbda=0.1, checkpoint=path)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Resuming from {path}: 3 epochs done" and out[1:] == lines[-3:]
    assert np.array_equal(third.model.params, whole.model.params)


@pytest.mark.parametrize("change,field", [
    (dict(eta=0.4), "eta"), (dict(lmbda=0.0), "lmbda"), (dict(data=tiny_data(seed=1)),
                                                         "training_data"),
    (dict(net=lambda: tiny_net(p=0.0, act=network3.ReLU)), "architecture")])
def test_checkpoint_of_another_run_is_refused(tmp_path, capsys, change, field):
    data = tiny_data()
    path = tmp_path / "run.npz"
    np.random.seed(0)
    tiny_net(p=0.3).SGD(data, 1, 4, 0.5, data, data, lmbda=0.1, checkpoint=path)
    net = change.get("net", lambda: tiny_net(p=0.3))()
    before = net.model.params.copy()
    d = change.get("data", data)
    with pytest.raises(ValueError, match=f"another run.*{field}"):
        net.SGD(d, 2, 4, change.get("eta", 0.5), data, data, lmbda=change.get("lmbda", 0.1),
                checkpoint=path)
    assert np.array_equal(net.model.params, before)


def _rewrite(path, **changes):
    """The checkpoint at path with some of its JSON state's fields replaced (None: removed) or
    its params replaced (``params=``)."""
    import json
    with np.load(path) as f:
        state, params = json.loads(str(f["state"])), f["params"]
    params = changes.pop("params", params)
    for k, v in changes.items():
        if v is None:
            state.pop(k)
        else:
            state[k] = v
    np.savez(path, params=params, state=np.array(json.dumps(state)))


@pytest.mark.parametrize("damage,pattern", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a network3"),
    (lambda p: p.write_bytes(p.read_bytes()[:-10]), "not a network3"),
    (lambda p: _rewrite(p, epochs_done=None), "epochs_done"),
    (lambda p: _rewrite(p, epochs_done="1"), "epochs_done"),
    (lambda p: _rewrite(p, epochs_done=-5), "epochs_done"),
    (lambda p: _rewrite(p, best=[0.5, 3]), "best"),
    (lambda p: _rewrite(p, best=None), "best"),
    (lambda p: _rewrite(p, dropout_rng={"bit_generator": "MT19937"}), "dropout_rng"),
    (lambda p: _rewrite(p, dropout_rng={"bit_generator": "PCG64", "state": 3}), "dropout_rng"),
    (lambda p: _rewrite(p, fingerprint=[1, 2]), "fingerprint"),
    (lambda p: _rewrite(p, version="1"), "version"),
    (lambda p: _rewrite(p, params=np.zeros(1)), "'params' array has shape"),
    (lambda p: _rewrite(p, params=np.zeros(182, np.float16)), "'params' array has dtype float16"),
    (lambda p: _rewrite(p, params=np.zeros(1000, np.float32)), "'params' array has shape"),
])
def test_damaged_checkpoint_is_a_clear_error(tmp_path, damage, pattern):
    data = tiny_data()
    path = tmp_path / "run.npz"
    np.random.seed(0)
    tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint=path)
    damage(path)
    net = tiny_net()
    before = net.model.params.copy()
    rng_state = net.model._dropout_rng.bit_generator.state
    with pytest.raises(ValueError, match=pattern):
        net.SGD(data, 2, 4, 0.5, data, data, checkpoint=path)
    assert np.array_equal(net.model.params, before)
    assert net.model._dropout_rng.bit_generator.state == rng_state


def test_checkpoint_needs_enough_epochs_and_a_directory(tmp_path):
    data = tiny_data()
    path = tmp_path / "run.npz"
    np.random.seed(0)
    tiny_net().SGD(data, 2, 4, 0.5, data, data, checkpoint=path)
    with pytest.raises(ValueError, match="2 epochs done, more than the 1 asked for"):
        tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint=path)
    with pytest.raises(ValueError, match="does not exist or is not writable"):
        tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint=tmp_path / "no" / "run.npz")
    with pytest.raises(TypeError, match="str or os.PathLike"):
        tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint=bytes(path))


def test_checkpoint_that_is_not_one(tmp_path):
    data = tiny_data()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a network3 checkpoint"):
        tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint=bad)
    other = tmp_path / "other.npz"
    np.savez(other, params=np.zeros(3), state=np.array('{"format": "something"}'))
    with pytest.raises(ValueError, match="not a network3 checkpoint"):
        tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint=other)
    with pytest.raises(TypeError, match="checkpoint must be a file path"):
        tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint=3.5)
