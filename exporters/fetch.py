"""Fetching an upstream: bounded in time and size, shared between concurrent scrapes.

Plain `http.client` on threads: the scrape path needs no event loop, and a sidecar in every
pod should not pay for one (aiohttp alone costs ~20 MB of resident memory). A fetch streams
the body in chunks, checking the deadline and the size cap between them, so a page that is
slow, dripping or huge costs neither the deadline nor the memory.
"""

from __future__ import annotations

import codecs
import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

from inferwatch import __version__

ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
CHUNK = 1 << 16
T = TypeVar("T")


class FetchError(Exception):
    """Why a fetch has no page: said in one line."""


@dataclass(frozen=True)
class Page:
    """What one whole-page fetch got: the text, or why there is none."""

    text: str | None
    error: str | None
    duration: float

    @property
    def ok(self) -> bool:
        return self.text is not None


def stream(url: str, deadline: float, max_bytes: int) -> Iterator[bytes]:
    """The body of GET `url`, chunk by chunk; FetchError once past `deadline` (monotonic
    seconds) or `max_bytes`, on a status other than 200, or when the connection breaks."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"not an http(s) URL: {url}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchError("no time left before the deadline")
    conn_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    conn = conn_class(parts.hostname, parts.port, timeout=remaining)
    try:
        try:
            conn.request(
                "GET",
                path,
                headers={
                    "Accept": ACCEPT,
                    "Accept-Encoding": "identity",
                    "User-Agent": f"inferwatch/{__version__}",
                },
            )
            resp = conn.getresponse()
            if resp.status != 200:
                raise FetchError(f"HTTP {resp.status}")
            declared = resp.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"body of {declared} bytes is over the {max_bytes}-byte cap")
            size = 0
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FetchError("timed out")
                if conn.sock is not None:
                    conn.sock.settimeout(remaining)
                chunk = resp.read1(CHUNK)
                if not chunk:
                    return
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"body over the {max_bytes}-byte cap")
                yield chunk
        except TimeoutError:
            raise FetchError("timed out") from None
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(_describe(exc)) from None
    finally:
        conn.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host: {exc.strerror or exc}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def lines(chunks: Iterator[bytes], keep: list[str] | None = None) -> Iterator[str]:
    """Text lines from byte chunks (UTF-8, bad bytes replaced); a line split between two
    chunks comes out whole. With `keep`, the decoded text is also collected there."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    for chunk in chunks:
        text = decoder.decode(chunk)
        if keep is not None:
            keep.append(text)
        parts = (pending + text).split("\n")
        pending = parts.pop()
        yield from parts
    tail = pending + decoder.decode(b"", final=True)
    if tail:
        yield tail


def fetch_page(url: str, timeout: float, max_bytes: int) -> Page:
    """The whole page as text, or the reason there is none. Never raises."""
    start = time.monotonic()
    keep: list[str] = []
    try:
        for _line in lines(stream(url, start + timeout, max_bytes), keep):
            pass
    except FetchError as exc:
        return Page(None, str(exc), time.monotonic() - start)
    return Page("".join(keep), None, time.monotonic() - start)


def fetch_json(url: str, timeout: float, max_bytes: int = 1 << 20) -> dict | None:
    """A small JSON document (an engine's info endpoint), or None for any failure."""
    page = fetch_page(url, timeout, max_bytes)
    if page.text is None:
        return None
    try:
        doc = json.loads(page.text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


class Shared:
    """Runs at most one call at a time; callers arriving meanwhile share its result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: Future | None = None

    def run(self, call: Callable[[], T]) -> T:
        with self._lock:
            running, mine = self._running, False
            if running is None:
                running = self._running = Future()
                mine = True
        if not mine:
            return running.result()
        try:
            result = call()
        except BaseException as exc:
            running.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._running = None
        running.set_result(result)
        return result
