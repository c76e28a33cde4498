"""fastnet: compiled training of the classic neural networks.

``Model`` and its layers (``Dense``, ``Conv2D``, …) build and train networks on the CPU
(Numba), a CUDA GPU (numba.cuda) or the pure-NumPy reference; ``Dataset`` holds data checked
and prepared once; ``fastnet.callbacks`` (``EarlyStopping``, ``HistoryLogger``) and
``fastnet.schedules`` (learning-rate schedules) plug into ``Model.fit``; ``sweep`` trains many
runs at once (grids, seeds, random search; local processes or Dask; SQLite); ``gradcheck``
compares backprop with finite differences; ``fastnet.metrics`` backs ``Model.evaluate``;
``fastnet.datasets.load_mnist`` loads MNIST; ``fastnet.network``,
``network2``, ``network3`` and ``mnist_loader`` are drop-ins for the book's code.

Importing fastnet compiles nothing and never touches a GPU.
"""

from fastnet import augment, callbacks, metrics, optimizers, schedules
from fastnet.data import Dataset
from fastnet.gradients import gradcheck
from fastnet.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D
from fastnet.model import History, Model, load
from fastnet.sweep import sweep  # the function; the module stays in sys.modules

__version__ = "0.1.0"
__all__ = ["Model", "Dataset", "Dense", "Conv2D", "MaxPool2D", "Flatten", "Dropout",
           "BatchNorm", "Layer",
           "History", "load", "sweep", "gradcheck", "augment", "callbacks", "metrics", "optimizers",
           "schedules",
           "__version__"]
