"""One OpenAI-compatible request, timed: completions or chat, streamed or not.

A request never raises: whatever goes wrong ends up as the `error` kind of its result, so one
bad response never stops a run. Streams are read as server-sent events, one event at a time,
and timed when each event is complete.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from inferwatch.load import report
from inferwatch.load.report import RequestResult
from inferwatch.load.spec import LoadSpec

# Bounds what one response can make us hold: a larger whole body is an error. A stream is read
# an event at a time, and aiohttp refuses a line over its own limit (512 KiB).
MAX_BODY_BYTES = 8 * 1024 * 1024


class ProtocolError(Exception):
    """The response is not what the OpenAI protocol promises."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


def payload(spec: LoadSpec, model: str, prompt: str) -> dict[str, Any]:
    """The JSON body of one request."""
    body: dict[str, Any] = {"model": model, "max_tokens": spec.max_tokens, "stream": spec.stream}
    if spec.chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if spec.stream:
        # Without this, a stream has no token counts at all.
        body["stream_options"] = {"include_usage": True}
    if spec.ignore_eos:
        body["ignore_eos"] = True
        body["min_tokens"] = spec.max_tokens
    return body


async def send(
    session: aiohttp.ClientSession, spec: LoadSpec, model: str, prompt: str
) -> RequestResult:
    """Send one request and time it; failures come back as the result's `error`."""
    result = RequestResult(start=time.perf_counter(), end=0.0)
    try:
        async with asyncio.timeout(spec.timeout):
            async with session.post(spec.url, json=payload(spec, model, prompt)) as resp:
                if resp.status != 200:
                    await resp.content.read(MAX_BODY_BYTES)  # let the connection be reused
                    result.error = report.http_error(resp.status)
                elif spec.stream:
                    await _read_stream(resp, spec.chat, result)
                else:
                    _read_body(await _bounded_body(resp), result)
    except ProtocolError as exc:
        result.error = exc.kind
    except TimeoutError:
        result.error = report.TIMEOUT
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
        result.error = report.CONNECTION
    except (aiohttp.ClientError, HttpProcessingError, ValueError):
        # ClientResponseError: a malformed HTTP response; HttpProcessingError: an SSE line
        # longer than the reader's limit; ValueError: bad JSON or UTF-8.
        result.error = report.INVALID_RESPONSE
    result.end = time.perf_counter()
    return result


async def _bounded_body(resp: aiohttp.ClientResponse) -> bytes:
    body = await resp.content.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise ProtocolError(report.INVALID_RESPONSE)
    return body


def _read_body(body: bytes, result: RequestResult) -> None:
    doc = json.loads(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
        raise ProtocolError(report.INVALID_RESPONSE)
    _take_usage(doc, result)


def _take_usage(doc: dict[str, Any], result: RequestResult) -> None:
    usage = doc.get("usage")
    if not isinstance(usage, dict):
        return
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        result.prompt_tokens, result.completion_tokens = prompt, completion


def _carries_output(chunk: dict[str, Any], chat: bool) -> bool:
    """Whether a stream chunk is a step of generation (one or more tokens).

    Its text may be empty: a token that ends inside a UTF-8 character, or a special token, is
    still a token. Chat streams open with a chunk that only names the assistant's role,
    before anything is generated: it is not output unless it also carries text.
    """
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False
    choice = choices[0]
    if not chat:
        return isinstance(choice.get("text"), str)
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return False
    content = delta.get("content")
    if "role" in delta:
        return bool(content)
    return isinstance(content, str) or "reasoning_content" in delta or "tool_calls" in delta


async def _read_stream(resp: aiohttp.ClientResponse, chat: bool, result: RequestResult) -> None:
    """Read server-sent events until `data: [DONE]`, timing each chunk with output."""
    data: list[bytes] = []
    last: float | None = None

    def dispatch() -> bool:
        """Handle one complete event; True at the end of the stream."""
        nonlocal last
        if not data:
            return False
        text = b"\n".join(data)
        data.clear()
        if text == b"[DONE]":
            return True
        now = time.perf_counter()
        chunk = json.loads(text)
        if not isinstance(chunk, dict):
            raise ProtocolError(report.INVALID_RESPONSE)
        if "error" in chunk:
            raise ProtocolError(report.STREAM_ERROR)
        _take_usage(chunk, result)
        if _carries_output(chunk, chat):
            if last is None:
                result.first_token = now
            else:
                result.itls.append(now - last)
            last = now
            result.chunks += 1
        return False

    async for raw in resp.content:
        line = raw.rstrip(b"\r\n")
        if not line:
            if dispatch():
                return
            continue
        if line.startswith(b":"):  # an SSE comment (keep-alive)
            continue
        name, _, value = line.partition(b":")
        if name == b"data":
            data.append(value.removeprefix(b" "))
    if dispatch():  # a last event without the blank line after it
        return
    raise ProtocolError(report.INCOMPLETE_STREAM)
