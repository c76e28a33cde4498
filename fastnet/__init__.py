"""fastnet: compiled training of the classic neural networks."""

__version__ = "0.1.0"
