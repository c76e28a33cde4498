"""Pure-NumPy reference implementation of every fastnet kernel family."""
