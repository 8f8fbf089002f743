"""Fetching an upstream page: bounded in time and size, shared between concurrent scrapes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"


@dataclass(frozen=True)
class Page:
    """What one fetch got: the text, or why there is none."""

    text: str | None
    error: str | None
    duration: float
    status: int | None = None
    content_type: str = ""

    @property
    def ok(self) -> bool:
        return self.text is not None


class TooLarge(Exception):
    pass


async def fetch_page(
    session: aiohttp.ClientSession, url: str, timeout: float, max_bytes: int
) -> Page:
    """GET `url` within `timeout` seconds, refusing bodies over `max_bytes`. Never raises."""
    start = time.perf_counter()

    def done(text: str | None, error: str | None, **kw) -> Page:
        return Page(text, error, time.perf_counter() - start, **kw)

    try:
        async with asyncio.timeout(timeout):
            async with session.get(url, headers={"Accept": ACCEPT}) as resp:
                declared = resp.content_length
                if declared is not None and declared > max_bytes:
                    raise TooLarge(f"body of {declared} bytes is over the {max_bytes}-byte cap")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(f"body over the {max_bytes}-byte cap")
                    chunks.append(chunk)
                body = b"".join(chunks)
                ctype = resp.headers.get("Content-Type", "")
                if resp.status != 200:
                    return done(None, f"HTTP {resp.status}", status=resp.status, content_type=ctype)
                return done(
                    body.decode("utf-8", errors="replace"), None, status=200, content_type=ctype
                )
    except TimeoutError:
        return done(None, f"timed out after {timeout:.2f}s")
    except TooLarge as exc:
        return done(None, str(exc))
    except aiohttp.ClientError as exc:
        return done(None, f"{type(exc).__name__}: {exc}".rstrip(": "))
    except (OSError, ValueError, UnicodeError) as exc:
        return done(None, f"{type(exc).__name__}: {exc}")


async def fetch_json(
    session: aiohttp.ClientSession, url: str, timeout: float, max_bytes: int = 1 << 20
) -> dict | None:
    """A small JSON document (an engine's info endpoint), or None for any failure."""
    import json

    page = await fetch_page(session, url, timeout, max_bytes)
    if page.text is None:
        return None
    try:
        doc = json.loads(page.text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


class Shared:
    """Runs at most one fetch at a time; callers arriving meanwhile share its result."""

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None

    async def run(self, factory) -> object:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(factory())
        # shield: one caller giving up (client gone) must not cancel the others' fetch.
        return await asyncio.shield(self._task)
