"""HTTP servers for the simulators (aiohttp).

An engine simulator serves what the real engine serves for monitoring and load: `/metrics`
(the writer's page), `/health`, the engine's info documents (`/version` and `/v1/models` for
vLLM, `/info` for TGI, `/props` for llama.cpp, `/api/ps` and `/api/version` for Ollama, ...:
`catalog`) and the OpenAI-compatible `/v1/completions` and `/v1/chat/completions`, streaming
or not. A request sent to it enters the same queueing model as the synthetic arrivals (the
engine of its model, where each served model has its own: Triton), so a load generator moves
its numbers; a streamed answer sends each token when the model emits it, and a client that goes
away aborts its request in the model. The model runs on wall-clock time while the server runs.

The dcgm-exporter simulator serves `/metrics` and `/health` for GPUs bound to engines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

from inferwatch.simulators import ollama, openai
from inferwatch.simulators.catalog import EngineSimulator, refusal_error
from inferwatch.simulators.dcgm import DcgmWriter
from inferwatch.simulators.model import INF, Realtime, Request
from inferwatch.simulators.openai import ApiError

log = logging.getLogger("inferwatch.simulators")

API_PATHS = frozenset(("/v1/completions", "/v1/chat/completions"))
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


class EngineServer:
    """An engine simulator's HTTP face."""

    def __init__(self, engine: EngineSimulator):
        self.engine = engine
        self.clock = Realtime(engine.sim)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._api_middleware])
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/health", self.health)
        for path in self.engine.kind.documents(self.engine):
            app.router.add_get(path, self.document)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        if self.engine.kind.ollama_api:
            app.router.add_post("/api/generate", self.ollama_generate)
            app.router.add_post("/api/chat", self.ollama_chat)

        async def start(_app: web.Application) -> None:
            self.clock.start()

        async def stop(_app: web.Application) -> None:
            await self.clock.stop()

        app.on_startup.append(start)
        app.on_cleanup.append(stop)
        return app

    # -- monitoring ---------------------------------------------------------------------------

    async def metrics(self, _request: web.Request) -> web.Response:
        self.clock.catch_up()
        return web.Response(
            body=self.engine.writer.render(),
            headers={"Content-Type": self.engine.writer.content_type},
        )

    async def health(self, _request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def document(self, request: web.Request) -> web.Response:
        return web.json_response(self.engine.kind.documents(self.engine)[request.path])

    # -- the API ------------------------------------------------------------------------------

    @web.middleware
    async def _api_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in API_PATHS:
            return await handler(request)
        start = asyncio.get_running_loop().time()
        try:
            response = await handler(request)
        except ApiError as err:
            response = web.json_response(self.engine.kind.error(err), status=err.status)
        except web.HTTPException as exc:
            response = exc
        seconds = asyncio.get_running_loop().time() - start
        self.engine.writer.observe_http(
            request.path,
            request.method,
            response.status,
            seconds,
            request.content_length or 0,
            response.content_length or 0,
        )
        if isinstance(response, web.HTTPException):
            raise response
        return response

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=False)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=True)

    async def _complete(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApiError(400, "the request body is not valid JSON") from None
        c = openai.parse(body, chat)
        es = self.engine
        if c.model is not None and c.model not in es.models:
            raise ApiError(404, f"The model `{c.model}` does not exist.", "model")
        req = self._request(c, request.path)
        events: asyncio.Queue[str] = asyncio.Queue()
        req.listener = lambda _req, event: events.put_nowait(event)
        reason = self.clock.submit(req, es.rank_of(c.model))
        if reason is not None:
            raise refusal_error(es.kind, reason, es.sim, req.prompt_tokens, req.max_tokens)
        answer = openai.Answer(c, c.model or es.model, req.id)
        try:
            if c.stream:
                return await self._stream(request, req, answer, events)
            while await events.get() != "finished":
                pass
        except asyncio.CancelledError:
            self.clock.abort(req)  # the client went away
            raise
        if req.finish_reason == "error":
            raise ApiError(
                es.kind.generation_error_status,
                "Request failed during generation",
                kind="generation",
            )
        assert req.finish_reason is not None
        return web.json_response(answer.full(req.output_tokens, req.finish_reason))

    def _request(self, c: openai.Completion, endpoint: str) -> Request:
        sim = self.engine.sim
        max_tokens = c.max_tokens
        if max_tokens is None:
            max_tokens = max(1, sim.config.max_model_len - c.prompt_tokens)
        if c.ignore_eos:
            stop_at = max_tokens + 1
        else:
            stop_at = max(c.min_tokens, sim.workload.natural_length(sim.rng, 4 * max_tokens))
        # The workload decides engine errors and prefix hits; the HTTP client decides when
        # it gives up, by closing the connection.
        _deadline, fail_at, share = sim.workload.fate(sim.rng, sim.now)
        return Request(
            sim.new_id(),
            c.prompt_tokens,
            max_tokens,
            stop_at,
            sim.now,
            INF,
            fail_at,
            share,
            source="http",
            endpoint=endpoint,
            stream=c.stream,
        )

    async def _stream(
        self, request: web.Request, req: Request, answer: openai.Answer, events: asyncio.Queue[str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)

        async def send(doc: dict | str) -> None:
            data = doc if isinstance(doc, str) else json.dumps(doc, separators=(",", ":"))
            await response.write(f"data: {data}\n\n".encode())

        try:
            if answer.c.chat:
                await send(answer.chunk("", first=True))
            sent = 0
            while True:
                event = await events.get()
                while sent < req.output_tokens:
                    await send(answer.chunk(openai.token_text(req.id, sent)))
                    sent += 1
                if event == "finished":
                    break
            if req.finish_reason == "error":
                err = ApiError(
                    self.engine.kind.generation_error_status,
                    "Request failed during generation",
                    kind="generation",
                )
                await send(self.engine.kind.error(err))
            else:
                await send(answer.chunk(None if answer.c.chat else "", req.finish_reason))
                if answer.c.include_usage:
                    await send(answer.usage_chunk(req.output_tokens))
            await send("[DONE]")
            await response.write_eof()
        except ConnectionResetError:
            self.clock.abort(req)  # the client went away mid-stream: an abort, quietly
        return response

    # -- Ollama's native API ------------------------------------------------------------------

    async def ollama_generate(self, request: web.Request) -> web.StreamResponse:
        return await self._ollama(request, chat=False)

    async def ollama_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._ollama(request, chat=True)

    async def _ollama(self, request: web.Request, chat: bool) -> web.StreamResponse:
        es = self.engine

        def error(status: int, message: str) -> web.Response:
            return web.json_response({"error": message}, status=status)

        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError, RecursionError):
            return error(400, "invalid JSON in the request body")
        model = body.get("model") if isinstance(body, dict) else None
        if model not in es.models:
            return error(404, ollama.not_found(model))
        assert isinstance(body, dict) and isinstance(model, str)
        if not chat and not body.get("prompt"):
            return web.json_response(ollama.loaded(model))
        try:
            c = ollama.completion(body, chat)
        except ApiError as err:
            return error(err.status, err.message)
        req = self._request(c, request.path)
        events: asyncio.Queue[str] = asyncio.Queue()
        req.listener = lambda _req, event: events.put_nowait(event)
        reason = self.clock.submit(req, es.rank_of(model))
        if reason is not None:
            err = refusal_error(es.kind, reason, es.sim, req.prompt_tokens, req.max_tokens)
            return error(err.status, err.message)
        try:
            if c.stream:
                return await self._ollama_stream(request, req, model, chat, events)
            while await events.get() != "finished":
                pass
        except asyncio.CancelledError:
            self.clock.abort(req)  # the client went away
            raise
        if req.finish_reason == "error":
            return error(500, "the model runner stopped unexpectedly")
        text = "".join(openai.token_text(req.id, i) for i in range(req.output_tokens))
        return web.json_response(ollama.done_line(model, chat, req, text))

    async def _ollama_stream(
        self,
        request: web.Request,
        req: Request,
        model: str,
        chat: bool,
        events: asyncio.Queue[str],
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)

        async def send(doc: dict) -> None:
            await response.write(json.dumps(doc, separators=(",", ":")).encode() + b"\n")

        try:
            sent = 0
            while True:
                event = await events.get()
                while sent < req.output_tokens:
                    await send(ollama.token_line(model, chat, openai.token_text(req.id, sent)))
                    sent += 1
                if event == "finished":
                    break
            if req.finish_reason == "error":
                await send({"error": "the model runner stopped unexpectedly"})
            else:
                await send(ollama.done_line(model, chat, req))
            await response.write_eof()
        except ConnectionResetError:
            self.clock.abort(req)  # the client went away mid-stream: an abort, quietly
        return response


class DcgmServer:
    """dcgm-exporter's HTTP face."""

    def __init__(self, writer: DcgmWriter, clocks: list[Realtime] | None = None):
        self.writer = writer
        self.clocks = clocks or []  # engines of GPUs that no EngineServer runs

    def app(self) -> web.Application:
        app = web.Application()

        async def metrics(_request: web.Request) -> web.Response:
            for clock in self.clocks:
                clock.catch_up()
            return web.Response(
                body=self.writer.render(), headers={"Content-Type": self.writer.content_type}
            )

        async def health(_request: web.Request) -> web.Response:
            return web.Response(text="OK")

        async def start(_app: web.Application) -> None:
            for clock in self.clocks:
                clock.start()

        async def stop(_app: web.Application) -> None:
            for clock in self.clocks:
                await clock.stop()

        app.router.add_get("/metrics", metrics)
        app.router.add_get("/health", health)
        app.on_startup.append(start)
        app.on_cleanup.append(stop)
        return app


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (0: any free port); the runner and the port it got."""
    # handler_cancellation: a client that disconnects cancels its handler, which aborts its
    # request in the model, as engines do.
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


async def serve(
    app: web.Application, host: str, port: int, ready: Callable[[int], None] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT."""
    runner, bound = await start_site(app, host, port)
    if ready is not None:
        ready(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
