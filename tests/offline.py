"""Tests that touch MNIST's download run offline: ``isolate(monkeypatch, tmp_path)`` gives a
private cache directory, no ``$FASTNET_DATA``/``$FASTNET_DEVICE``, mirrors that refuse at once,
and no connection to any host but 127.0.0.1."""

from __future__ import annotations

import socket

from fastnet import datasets


def closed_port_url() -> str:
    """A URL on 127.0.0.1 whose port nothing listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def isolate(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FASTNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FASTNET_DATA", raising=False)
    monkeypatch.delenv("FASTNET_DEVICE", raising=False)
    monkeypatch.delenv("FASTNET_FASHION_DATA", raising=False)
    monkeypatch.setattr(datasets, "MIRRORS", (closed_port_url(),))
    monkeypatch.setattr(datasets, "FASHION_MIRRORS", (closed_port_url(),))
    real_connect = socket.create_connection

    def local_only(address, *args, **kwargs):
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(f"network disabled in tests ({address[0]})")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", local_only)
