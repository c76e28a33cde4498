"""Numba kernels of fastnet (installed as ``fastnet.kernels``).

One module per kernel family and target; ``config`` holds the shared settings and codes.
Importing this package compiles nothing and never touches a GPU.
"""
