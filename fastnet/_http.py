"""HTTP for the data-set downloads (``fastnet.datasets``), on the standard library: an opener
whose connections give up after ``CONNECT_TIMEOUT_S`` while connecting and after
``READ_TIMEOUT_S`` of silence while reading, a bounded ``fetch``, and ``unreachable`` to tell a
server that cannot be reached from one that answered with an error. Imported by
``fastnet.datasets``; ``http.client``/``urllib`` are imported on first use only.
"""

from __future__ import annotations

from typing import Any

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
MAX_DOWNLOAD_BYTES = 64 << 20  # the largest MNIST file is ~9.9 MB gzipped: refuse runaways


def opener() -> Any:
    """A urllib opener whose connections time out after ``CONNECT_TIMEOUT_S`` while connecting
    (and in the TLS handshake), then after ``READ_TIMEOUT_S`` of silence while reading."""
    import http.client  # lazy: keeps `import fastnet` free of the network stack
    import urllib.request

    class Timeouts:
        def connect(self) -> None:
            super().connect()  # type: ignore[misc]  # uses self.timeout: the connect timeout
            self.sock.settimeout(READ_TIMEOUT_S)  # type: ignore[attr-defined]

    class HTTPConnection(Timeouts, http.client.HTTPConnection):
        pass

    class HTTPSConnection(Timeouts, http.client.HTTPSConnection):
        pass

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(HTTPConnection, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(HTTPSConnection, req, context=self._context)  # type: ignore

    return urllib.request.build_opener(HTTPHandler, HTTPSHandler)


def fetch(opener: Any, url: str) -> bytes:
    """The body at ``url`` (at most ``MAX_DOWNLOAD_BYTES``). Raises OSError (urllib's
    URLError/HTTPError, timeouts) or http.client.HTTPException on failure."""
    import http.client

    with opener.open(url, timeout=CONNECT_TIMEOUT_S) as resp:
        blob = resp.read(MAX_DOWNLOAD_BYTES + 1)
        if len(blob) > MAX_DOWNLOAD_BYTES:
            raise OSError(f"response larger than {MAX_DOWNLOAD_BYTES} bytes")
        if resp.length:  # read(n) returns short when the server closes early: say so
            raise http.client.IncompleteRead(blob, resp.length)
    return blob


def unreachable(e: BaseException) -> bool:
    """True if ``e`` says the server could not be reached or went silent (not an HTTP error
    status): that mirror is then not asked for the remaining files."""
    import urllib.error

    return isinstance(e, OSError) and not isinstance(e, urllib.error.HTTPError)
