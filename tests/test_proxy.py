"""The proxy mode, end to end: the real `inferwatch exporter --proxy` in front of a real streaming
HTTP server that answers like Ollama (NDJSON) and like an OpenAI-compatible server (SSE).

The upstream is deterministic (fixed timestamps and durations), so a direct answer and a
proxied one must be the same bytes. Its delays are known: the first content chunk comes
`FIRST_DELAY` after the request arrives, then one every `INTERVAL`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from aiohttp import web

from inferwatch.exporters.measure import MAX_MODELS, ProxyMetrics, Watch
from tests.harness import procs
from tests.harness.exporter import ExporterProcess, sample_value

FIRST_DELAY = 0.2
INTERVAL = 0.02
CREATED = "2026-11-25T12:00:00Z"


def _ollama_line(model: str, i: int, chat: bool) -> dict:
    if chat:
        return {
            "model": model,
            "created_at": CREATED,
            "message": {"role": "assistant", "content": f"tok{i} "},
            "done": False,
        }
    return {"model": model, "created_at": CREATED, "response": f"tok{i} ", "done": False}


def _ollama_final(model: str, n: int, reason: str, chat: bool) -> dict:
    doc = {
        "model": model,
        "created_at": CREATED,
        "done": True,
        "done_reason": reason,
        "total_duration": 1_234_000_000,
        "load_duration": 1_000_000,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 130_000_000,
        "eval_count": n,
        "eval_duration": 1_000_000_000,
    }
    if chat:
        doc["message"] = {"role": "assistant", "content": ""}
    else:
        doc["response"] = ""
    return doc


def _line(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def _sse(doc: dict | str) -> bytes:
    data = doc if isinstance(doc, str) else json.dumps(doc, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


class Upstream:
    """A streaming server in a thread of the test process, on its own event loop."""

    def __init__(self) -> None:
        self.port = procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.gone = 0  # streams whose client went away before the end
        self.big_sent = 0  # bytes of /big written so far
        # Per model: seconds from a request's arrival to its first content write, as it happened.
        self.first_write: dict[str, float] = {}
        # Per model: seconds from the first content write to the last.
        self.span: dict[str, float] = {}
        self.requests: list[dict] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Upstream:
        self._thread.start()
        assert self._ready.wait(10), "upstream did not start"
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/api/generate", self.ollama)
        app.router.add_post("/api/chat", self.ollama)
        app.router.add_post("/v1/chat/completions", self.openai)
        app.router.add_post("/v1/completions", self.openai)
        app.router.add_get("/api/version", self.version)
        app.router.add_get("/api/ps", self.ps)
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_get("/big", self.big)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    async def version(self, _request: web.Request) -> web.Response:
        return web.json_response({"version": "0.6.5"})

    async def ps(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"models": [{"name": "llama3.2:3b", "model": "llama3.2:3b", "size": 3, "size_vram": 2}]}
        )

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        doc = {
            "method": request.method,
            "path_qs": request.path_qs,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": body.decode(),
        }
        return web.json_response(doc, headers={"X-Echo": "1"})

    async def big(self, request: web.Request) -> web.StreamResponse:
        total = int(request.query["bytes"])
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        block = b"x" * 65536
        with contextlib.suppress(ConnectionError):
            while self.big_sent < total:
                await resp.write(block)
                self.big_sent += len(block)
        return resp

    async def ollama(self, request: web.Request) -> web.StreamResponse:
        arrival = time.perf_counter()
        doc = await request.json()
        model, chat = doc["model"], request.path == "/api/chat"
        n = doc.get("options", {}).get("num_predict", 5)
        if model == "boom":
            return web.json_response(
                {"error": "model 'boom' crashed"}, status=500, headers={"X-Upstream": "boom"}
            )
        if doc.get("stream", True) is False:
            await asyncio.sleep(FIRST_DELAY)
            final = _ollama_final(model, n, "stop", chat)
            final["response" if not chat else "message"] = (
                "".join(f"tok{i} " for i in range(n))
                if not chat
                else {"role": "assistant", "content": "x"}
            )
            return web.json_response(final)
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        resp.headers.add("Set-Cookie", "a=1")
        resp.headers.add("Set-Cookie", "b=2")
        resp.headers["X-Upstream"] = "ollama"
        await resp.prepare(request)
        await asyncio.sleep(FIRST_DELAY)
        try:
            for i in range(n):
                if i:
                    await asyncio.sleep(INTERVAL)
                if not i:
                    self.first_write[model] = time.perf_counter() - arrival
                self.span[model] = time.perf_counter() - arrival - self.first_write[model]
                await resp.write(_line(_ollama_line(model, i, chat)))
                if model == "cut" and i == 2:
                    assert request.transport is not None
                    request.transport.close()
                    return resp
            await resp.write(_line(_ollama_final(model, n, "length" if n >= 8 else "stop", chat)))
            await resp.write_eof()
        except ConnectionError:
            self.gone += 1
        return resp

    async def openai(self, request: web.Request) -> web.StreamResponse:
        arrival = time.perf_counter()
        doc = await request.json()
        model = doc["model"]
        n = doc.get("max_tokens", 5)
        chat = request.path == "/v1/chat/completions"
        kind = "chat.completion.chunk" if chat else "text_completion"
        usage = {"prompt_tokens": 11, "completion_tokens": n, "total_tokens": 11 + n}

        def chunk(i: int | None, finish: str | None = None) -> dict:
            if chat:
                delta = {"role": "assistant", "content": ""} if i is None else {"content": f"t{i}"}
                choice = {"index": 0, "delta": delta if finish is None else {}}
            else:
                choice = {"index": 0, "text": "" if i is None else f"t{i}"}
            choice["finish_reason"] = finish
            return {"id": "cmpl-1", "object": kind, "created": 1764072000, "model": model,
                    "choices": [choice]}  # fmt: skip

        if not doc.get("stream"):
            await asyncio.sleep(FIRST_DELAY)
            body = chunk(0, "stop")
            body["object"] = "chat.completion" if chat else "text_completion"
            body["usage"] = usage
            return web.json_response(body)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        # A role-only first chunk, at once: it carries no content, so it is not the first token.
        await resp.write(_sse(chunk(None)))
        await asyncio.sleep(FIRST_DELAY)
        try:
            for i in range(n):
                if i:
                    await asyncio.sleep(INTERVAL)
                if not i:
                    self.first_write[model] = time.perf_counter() - arrival
                await resp.write(_sse(chunk(i)))
            await resp.write(_sse(chunk(None, "length")))
            if doc.get("stream_options", {}).get("include_usage"):
                final = chunk(None)
                final["choices"] = []
                final["usage"] = usage
                await resp.write(_sse(final))
            await resp.write(_sse("[DONE]"))
            await resp.write_eof()
        except ConnectionError:
            self.gone += 1
        return resp


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ollama_proxy(upstream: Upstream, tmp_path_factory) -> Iterator[ExporterProcess]:
    proxy = ExporterProcess(
        tmp_path_factory.mktemp("proxy-ollama"), upstream=upstream.url, extra_args=["--proxy"]
    ).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def vllm_proxy(upstream: Upstream, tmp_path_factory) -> Iterator[ExporterProcess]:
    proxy = ExporterProcess(
        tmp_path_factory.mktemp("proxy-vllm"),
        upstream=upstream.url,
        engine="vllm",
        extra_args=["--proxy"],
    ).start()
    yield proxy
    proxy.stop()


def request(
    base: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def post_json(base: str, path: str, doc: dict) -> tuple[int, list[tuple[str, str]], bytes]:
    return request(
        base, "POST", path, json.dumps(doc).encode(), {"Content-Type": "application/json"}
    )


def comparable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # Date changes between two answers; framing headers are per hop.
    skip = {"date", "transfer-encoding", "connection", "keep-alive"}
    return [(k.lower(), v) for k, v in headers if k.lower() not in skip]


def value(proxy: ExporterProcess, name: str, **labels: str) -> float | None:
    return sample_value(proxy.metrics().body, name, **labels)


def wait_for(check, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_ollama_stream_is_forwarded_byte_for_byte_and_measured(
    upstream: Upstream, ollama_proxy: ExporterProcess
) -> None:
    doc = {"model": "stream-a", "prompt": "hi", "options": {"num_predict": 6}}
    direct = post_json(upstream.url, "/api/generate", doc)
    proxied = post_json(ollama_proxy.url, "/api/generate", doc)
    assert proxied[0] == direct[0] == 200
    assert proxied[2] == direct[2]
    assert comparable(proxied[1]) == comparable(direct[1])
    assert [v for k, v in proxied[1] if k.lower() == "set-cookie"] == ["a=1", "b=2"]

    m = {"engine": "ollama", "model": "stream-a", "source": "proxy"}
    assert value(ollama_proxy, "llm_requests_finished_total", reason="stop", **m) == 1
    assert value(ollama_proxy, "llm_prompt_tokens_total", **m) == 26
    assert value(ollama_proxy, "llm_generation_tokens_total", **m) == 6
    assert value(ollama_proxy, "llm_requests_running", **m) == 0
    assert value(ollama_proxy, "llm_time_to_first_token_seconds_count", **m) == 1
    ttft = value(ollama_proxy, "llm_time_to_first_token_seconds_sum", **m)
    # Within 5 ms of the delay the server actually kept (FIRST_DELAY, plus whatever its
    # event loop overslept on a busy machine).
    assert ttft is not None and abs(ttft - upstream.first_write["stream-a"]) < 0.005, ttft
    assert abs(upstream.first_write["stream-a"] - FIRST_DELAY) < 0.05
    assert value(ollama_proxy, "llm_inter_token_latency_seconds_count", **m) == 5
    itl = value(ollama_proxy, "llm_inter_token_latency_seconds_sum", **m)
    span = upstream.span["stream-a"]  # 5 intervals, as the server kept them
    assert itl is not None and abs(itl - span) < 0.005, (itl, span)
    tpot = value(ollama_proxy, "llm_time_per_output_token_seconds_sum", **m)
    assert tpot is not None and abs(tpot - span / 5) < 0.002, (tpot, span)
    e2e = value(ollama_proxy, "llm_request_duration_seconds_sum", **m)
    assert e2e is not None and FIRST_DELAY + 5 * INTERVAL <= e2e < FIRST_DELAY + 0.5
    le = value(ollama_proxy, "llm_time_to_first_token_seconds_bucket", le="0.25", **m)
    assert (
        le == 1
        and value(ollama_proxy, "llm_time_to_first_token_seconds_bucket", le="0.1", **m) == 0
    )


def test_ollama_chat_length_and_non_streamed(upstream: Upstream, ollama_proxy: ExporterProcess):
    doc = {"model": "chat-b", "messages": [], "options": {"num_predict": 9}}
    assert post_json(ollama_proxy.url, "/api/chat", doc)[0] == 200
    quiet = {"model": "chat-b", "messages": [], "stream": False, "options": {"num_predict": 4}}
    direct = post_json(upstream.url, "/api/chat", quiet)
    proxied = post_json(ollama_proxy.url, "/api/chat", quiet)
    assert proxied[2] == direct[2]
    m = {"engine": "ollama", "model": "chat-b", "source": "proxy"}
    assert value(ollama_proxy, "llm_requests_finished_total", reason="length", **m) == 1
    assert value(ollama_proxy, "llm_requests_finished_total", reason="stop", **m) == 1
    assert value(ollama_proxy, "llm_generation_tokens_total", **m) == 9 + 4
    # Only the streamed request has a first token; both have an end-to-end duration.
    assert value(ollama_proxy, "llm_time_to_first_token_seconds_count", **m) == 1
    assert value(ollama_proxy, "llm_request_duration_seconds_count", **m) == 2


def test_openai_sse_stream_first_token_is_the_first_content(
    upstream: Upstream, vllm_proxy: ExporterProcess
) -> None:
    doc = {
        "model": "sse-c",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    direct = post_json(upstream.url, "/v1/chat/completions", doc)
    proxied = post_json(vllm_proxy.url, "/v1/chat/completions", doc)
    assert proxied[2] == direct[2] and proxied[2].endswith(b"data: [DONE]\n\n")
    assert comparable(proxied[1]) == comparable(direct[1])
    m = {"engine": "vllm", "model": "sse-c", "source": "proxy"}
    ttft = value(vllm_proxy, "llm_time_to_first_token_seconds_sum", **m)
    # The role-only chunk came at once; the first token FIRST_DELAY later.
    assert ttft is not None and abs(ttft - upstream.first_write["sse-c"]) < 0.005, ttft
    assert ttft > FIRST_DELAY
    assert value(vllm_proxy, "llm_requests_finished_total", reason="length", **m) == 1
    assert value(vllm_proxy, "llm_prompt_tokens_total", **m) == 11
    assert value(vllm_proxy, "llm_generation_tokens_total", **m) == 4
    assert value(vllm_proxy, "llm_inter_token_latency_seconds_count", **m) == 3


def test_openai_completions_not_streamed(upstream: Upstream, vllm_proxy: ExporterProcess):
    doc = {"model": "plain-d", "prompt": "hi", "max_tokens": 3}
    direct = post_json(upstream.url, "/v1/completions", doc)
    proxied = post_json(vllm_proxy.url, "/v1/completions", doc)
    assert proxied[2] == direct[2]
    m = {"engine": "vllm", "model": "plain-d", "source": "proxy"}
    assert value(vllm_proxy, "llm_requests_finished_total", reason="stop", **m) == 1
    assert value(vllm_proxy, "llm_generation_tokens_total", **m) == 3
    assert value(vllm_proxy, "llm_time_to_first_token_seconds_count", **m) == 0


def test_client_disconnect_mid_stream_is_an_abort(
    upstream: Upstream, ollama_proxy: ExporterProcess
) -> None:
    gone_before = upstream.gone
    body = json.dumps({"model": "leaver", "prompt": "x", "options": {"num_predict": 300}})
    sock = socket.create_connection(("127.0.0.1", ollama_proxy.port), timeout=10)
    sock.sendall(
        f"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body.encode()
    )
    got = b""
    while b"tok1 " not in got:
        got += sock.recv(65536)
    sock.close()
    m = {"engine": "ollama", "model": "leaver", "source": "proxy"}
    wait_for(lambda: value(ollama_proxy, "llm_requests_finished_total", reason="abort", **m) == 1)
    assert value(ollama_proxy, "llm_requests_running", **m) == 0
    # The proxy closed its upstream connection: the upstream stopped generating.
    wait_for(lambda: upstream.gone == gone_before + 1)


def test_upstream_error_is_passed_through_and_counted(
    upstream: Upstream, ollama_proxy: ExporterProcess
) -> None:
    doc = {"model": "boom", "prompt": "x"}
    direct = post_json(upstream.url, "/api/generate", doc)
    proxied = post_json(ollama_proxy.url, "/api/generate", doc)
    assert proxied[0] == direct[0] == 500
    assert proxied[2] == direct[2] == b'{"error": "model \'boom\' crashed"}'
    assert comparable(proxied[1]) == comparable(direct[1])
    m = {"engine": "ollama", "model": "boom", "source": "proxy"}
    assert value(ollama_proxy, "llm_requests_finished_total", reason="error", **m) == 1
    # Not a generation path: forwarded as it is, never counted.
    status, _headers, _body = request(ollama_proxy.url, "GET", "/no/such/path?x=1")
    assert status == 404


def test_stream_cut_by_the_upstream_is_an_error(ollama_proxy: ExporterProcess) -> None:
    with pytest.raises(http.client.IncompleteRead):
        post_json(ollama_proxy.url, "/api/generate", {"model": "cut", "prompt": "x"})
    m = {"engine": "ollama", "model": "cut", "source": "proxy"}
    wait_for(lambda: value(ollama_proxy, "llm_requests_finished_total", reason="error", **m) == 1)


def test_unreachable_upstream_gets_502_and_counts_an_error(tmp_path) -> None:
    dead = f"http://127.0.0.1:{procs.free_port()}"
    proxy = ExporterProcess(tmp_path, upstream=dead, extra_args=["--proxy"]).start()
    try:
        status, _headers, body = post_json(proxy.url, "/api/generate", {"model": "m"})
        assert status == 502
        assert b"cannot reach the upstream" in body and dead.encode() in body
        m = {"engine": "ollama", "model": "m", "source": "proxy"}
        assert value(proxy, "llm_requests_finished_total", reason="error", **m) == 1
        # Polling Ollama failed too: said by the exporter's own health series.
        assert value(proxy, "inferwatch_exporter_upstream_up", source="engine") == 0
    finally:
        proxy.stop()


def test_request_is_forwarded_unchanged(upstream: Upstream, ollama_proxy: ExporterProcess):
    body = b'{"odd": "bytes \xc3\xa9"}'
    status, headers, answer = request(
        ollama_proxy.url,
        "PUT",
        "/echo?a=1&b=%20x",
        body,
        {"X-Custom": "v1", "Authorization": "Bearer t0k", "Content-Type": "text/plain"},
    )
    assert status == 200 and ("X-Echo", "1") in headers
    seen = json.loads(answer)
    assert seen["method"] == "PUT" and seen["path_qs"] == "/echo?a=1&b=%20x"
    assert seen["body"] == body.decode()
    sent = {k.lower(): v for k, v in seen["headers"]}
    assert sent.pop("host") == upstream.url.removeprefix("http://")
    # Exactly the client's headers: nothing added (no User-Agent, no Accept-Encoding).
    assert sent == {
        "x-custom": "v1",
        "authorization": "Bearer t0k",
        "content-type": "text/plain",
        "content-length": str(len(body)),
    }


def test_own_paths_are_served_not_forwarded(ollama_proxy: ExporterProcess) -> None:
    assert ollama_proxy.get("/healthz").body == "ok\n"
    answer = ollama_proxy.metrics()
    assert "inferwatch_exporter_build_info" in answer.body
    # The Ollama poller: loaded models and version from /api/ps and /api/version.
    info = sample_value(answer.body, "llm_engine_info", model="llama3.2:3b")
    assert info == 1
    assert 'version="0.6.5"' in answer.body and 'model_vram_bytes="2"' in answer.body
    assert ollama_proxy.get("/readyz").status == 200
    # "/" belongs to the upstream in proxy mode (Ollama answers "Ollama is running" there).
    assert ollama_proxy.get("/").status == 404


def test_slow_client_holds_back_the_upstream(
    upstream: Upstream, ollama_proxy: ExporterProcess
) -> None:
    total = 512 * 1024 * 1024
    upstream.big_sent = 0
    rss_before = ollama_proxy.rss_bytes()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(("127.0.0.1", ollama_proxy.port))
    sock.sendall(f"GET /big?bytes={total} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    received = 0
    while received < 1024 * 1024:
        received += len(sock.recv(65536))
    time.sleep(1.5)  # the client stalls; an unbounded proxy would read all 512 MB meanwhile
    sent = upstream.big_sent
    grown = ollama_proxy.rss_bytes() - rss_before
    sock.close()
    assert sent < 64 * 1024 * 1024, f"upstream pushed {sent} bytes past a stalled client"
    assert grown < 64 * 1024 * 1024, f"proxy memory grew by {grown} bytes"


# -- measurement units, without servers ---------------------------------------------------------


def test_model_names_from_clients_are_bounded() -> None:
    metrics = ProxyMetrics("ollama")
    for i in range(MAX_MODELS + 10):
        watch = Watch("ollama", metrics, f"m{i}", 0.0)
        watch.finish(1.0, "abort")
    assert len(metrics.models) == MAX_MODELS + 1
    assert metrics.models["other"].finished == {"abort": 10}


def test_load_and_unload_answers_are_not_generations() -> None:
    metrics = ProxyMetrics("ollama")
    watch = Watch("ollama", metrics, "m", 0.0)
    watch.begin(200, "application/json", False)
    watch.feed(b'{"model":"m","done":true,"done_reason":"load"}', 0.1)
    watch.finish(0.1)
    assert metrics.models["m"].finished == {}
    assert 'proxy:requests_running{model="m"} 0' in metrics.exposition()


def test_error_inside_a_stream_and_a_stream_without_its_end() -> None:
    metrics = ProxyMetrics("vllm")
    w = Watch("openai", metrics, "m", 0.0)
    w.begin(200, "text/event-stream", False)
    w.feed(
        b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"error": {"message": "x"}}\n\n',
        0.5,
    )
    w.finish(0.6)
    w2 = Watch("openai", metrics, "m", 0.0)
    w2.begin(200, "text/event-stream", False)
    w2.feed(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n', 0.5)
    w2.finish(0.6)
    assert metrics.models["m"].finished == {"error": 2}
    result = metrics.result()
    assert (
        result.values()[
            'llm_requests_finished_total{engine="vllm",model="m",reason="error",source="proxy"}'
        ]
        == 2
    )


def test_lines_split_across_reads_are_joined() -> None:
    metrics = ProxyMetrics("ollama")
    w = Watch("ollama", metrics, "m", 0.0)
    w.begin(200, "application/x-ndjson", False)
    line = b'{"response":"hi","done":false}\n{"done":true,"done_reason":"stop","eval_count":7}\n'
    for i, byte in enumerate(line):
        w.feed(bytes([byte]), 0.1 + i * 0.001)
    w.finish(1.0)
    m = metrics.models["m"]
    assert m.finished == {"stop": 1} and m.generation_tokens == 7
    # The first line is whole when its newline (byte 30) arrives.
    assert m.histograms["time_to_first_token_seconds"].sum == pytest.approx(0.1 + 30 * 0.001)


ND, SSE = "application/x-ndjson", "text/event-stream"
CHUNKS = [
    ("ollama", ND, b'{"response":"a","done":false}', True),
    ("ollama", ND, b'{"response":"","done":false}', False),
    ("ollama", ND, b'{"response": "a", "done": false}', True),
    ("ollama", ND, b'{"message":{"content":"","thinking":"t"},"done":false}', True),
    ("ollama", ND, b'{"error":"oops","done":false}', False),
    ("openai", SSE, b'data: {"choices":[{"delta":{"content":"a"},"finish_reason":null}]}', True),
    ("openai", SSE, b'data: {"choices":[{"delta":{"content":""},"finish_reason":null}]}', False),
    ("openai", SSE, b'data: {"choices":[{"delta":{"content":null},"finish_reason":null}]}', False),
    ("openai", SSE, b'data: {"choices":[{"text":"a","finish_reason":null}]}', True),
    (
        "openai",
        SSE,
        b'data: {"choices":[{"delta":{"content":"\\"\\""},"finish_reason":null}]}',
        True,
    ),
]


@pytest.mark.parametrize(("api", "fmt", "line", "content"), CHUNKS)
def test_content_chunks_with_and_without_parsing(api, fmt, line, content) -> None:
    metrics = ProxyMetrics("ollama")
    w = Watch(api, metrics, "m", 0.0)
    w.begin(200, fmt, False)
    w.feed(line + b"\n", 0.25)
    assert (w.first == 0.25) is content
