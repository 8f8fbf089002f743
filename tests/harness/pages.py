"""An upstream `/metrics` page whose behaviour a test switches while the server runs.

    page = PageServer(capture("vllm-0.32.0-cpu-tiny-real.prom")).start()
    page.mode = Mode.HANG        # the next fetch gets no answer until the mode changes
    page.mode = Mode.NORMAL
    assert page.count("/metrics") == 2

The server runs in a thread of the test process, on 127.0.0.1, and answers one request per
connection (`Connection: close`), so each fetch meets the mode that is set when it arrives.
Paths other than `/metrics` get a 404 (and are counted too).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.harness import procs

HUGE_BYTES = 50 * 1024 * 1024
# However long a test leaves a page hanging, its handler threads end after this.
MAX_HANG_SECONDS = 120.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Mode(enum.StrEnum):
    NORMAL = "normal"  # 200 with the text (after `delay` seconds, if set)
    DOWN = "down"  # nothing listens on the port: the connection is refused by the kernel
    REFUSE = "refuse"  # the connection is accepted, then reset before any response
    ERROR = "error"  # HTTP 503
    HANG = "hang"  # the request is read, then no answer until the mode changes
    GARBAGE = "garbage"  # 200 with random bytes
    HUGE = "huge"  # 200 with a 50 MB body of metric lines, no Content-Length (streamed)
    HUGE_DECLARED = "huge_declared"  # the same, with its Content-Length announced
    RESET = "reset"  # Content-Length announced, half the body sent, then a TCP reset
    DRIP = "drip"  # the body a few bytes at a time, `drip_interval` apart


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


class PageServer:
    """Serves `text` at /metrics in the current `mode`; counts requests by path."""

    def __init__(self, text: str = "", *, port: int | None = None):
        self.text = text
        self._set_port(port or procs.free_port())
        self.delay = 0.0  # NORMAL: seconds to wait before answering
        self.drip_interval = 0.5  # DRIP: seconds between chunks
        self.drip_chunk = 64  # DRIP: bytes per chunk
        self.huge_bytes = HUGE_BYTES
        self.requests: Counter[str] = Counter()
        self.last_headers: dict[str, str] = {}
        self._mode = Mode.NORMAL
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _set_port(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.metrics_url = f"{self.url}/metrics"

    # -- control --------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode | str) -> None:
        mode = Mode(mode)
        with self._lock:
            previous, self._mode = self._mode, mode
            # Requests hanging in the old mode end now (their connection is closed unanswered).
            self._release.set()
            self._release = threading.Event()
        if mode is Mode.DOWN and previous is not Mode.DOWN:
            self._close()
        elif mode is not Mode.DOWN and self._server is None:
            self._open()

    def count(self, path: str = "/metrics") -> int:
        with self._lock:
            return self.requests[path]

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()

    def start(self) -> PageServer:
        """Start serving; `port` and the URLs are final once this returns."""
        if self._mode is Mode.DOWN:
            return self
        for _attempt in range(3):
            try:
                self._open()
                return self
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                # Taken since free_port() chose it: take another.
                self._set_port(procs.free_port())
        raise OSError(errno.EADDRINUSE, f"no free port for the page server (last {self.port})")

    def stop(self) -> None:
        with self._lock:
            self._release.set()
        self._close()

    def __enter__(self) -> PageServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- server ---------------------------------------------------------------------------

    def _open(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        # Expected disconnects (the exporter giving up on a huge body) are not errors.
        server.handle_error = lambda _request, _address: None  # type: ignore[method-assign]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"page-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        page = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle(self) -> None:
                if page.mode is Mode.REFUSE:
                    with page._lock:
                        page.requests["<refused>"] += 1
                    _reset(self.connection)
                    return
                with contextlib.suppress(OSError):
                    super().handle()

            def finish(self) -> None:
                with contextlib.suppress(OSError, ValueError):
                    super().finish()

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with page._lock:
                    page.requests[path] += 1
                    release = page._release
                    if path == "/metrics":
                        page.last_headers = dict(self.headers.items())
                if path != "/metrics":
                    self._send(404, b"not found\n")
                    return
                page._serve(self, page.mode, release)

            def _send(self, status: int, body: bytes, length: int | None = -1) -> None:
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                if length is not None:
                    self.send_header("Content-Length", str(len(body) if length < 0 else length))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        return Handler

    def _serve(self, h: BaseHTTPRequestHandler, mode: Mode, release: threading.Event) -> None:
        body = self.text.encode()
        send = h._send  # type: ignore[attr-defined]
        h.close_connection = True
        if mode is Mode.NORMAL:
            if self.delay:
                release.wait(self.delay)
            send(200, body)
        elif mode is Mode.ERROR:
            send(503, b"engine is warming up\n")
        elif mode is Mode.HANG:
            release.wait(MAX_HANG_SECONDS)
        elif mode is Mode.GARBAGE:
            send(200, os.urandom(64 * 1024) + b"\x00\xff\xfe garbage {{{ \n" * 100)
        elif mode in (Mode.HUGE, Mode.HUGE_DECLARED):
            send(200, b"", length=self.huge_bytes if mode is Mode.HUGE_DECLARED else None)
            self._stream_huge(h)
        elif mode is Mode.RESET:
            send(200, body[: len(body) // 2], length=len(body))
            h.wfile.flush()
            time.sleep(0.05)
            _reset(h.connection)
        elif mode is Mode.DRIP:
            send(200, b"", length=len(body))
            for start in range(0, len(body), self.drip_chunk):
                if release.wait(self.drip_interval):
                    return
                h.wfile.write(body[start : start + self.drip_chunk])
                h.wfile.flush()

    def _stream_huge(self, h: BaseHTTPRequestHandler) -> None:
        # Valid metric lines, so only the size is wrong; written in 1 MB pieces to keep this
        # process' own memory flat.
        line = b'vllm:num_requests_running{engine="0",model_name="tiny"} 1.0\n'
        piece = line * (1024 * 1024 // len(line))
        sent = 0
        while sent < self.huge_bytes:
            chunk = piece[: self.huge_bytes - sent]
            h.wfile.write(chunk)
            sent += len(chunk)
