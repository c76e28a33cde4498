"""fastnet: compiled training of the classic neural networks.

``Model`` and ``Dense`` build and train networks on the CPU (Numba), a CUDA GPU (numba.cuda) or
the pure-NumPy reference; ``fastnet.datasets.load_mnist`` loads MNIST; ``fastnet.network``,
``network2``, ``network3`` and ``mnist_loader`` are drop-ins for the book's code.

Importing fastnet compiles nothing and never touches a GPU.
"""

from fastnet.layers import Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D
from fastnet.model import History, Model, load

__version__ = "0.1.0"
__all__ = ["Model", "Dense", "Conv2D", "MaxPool2D", "Flatten", "Dropout", "Layer", "History",
           "load", "__version__"]
