"""`inferwatch load` against a small OpenAI-compatible server with known delays.

The server (aiohttp, in a thread of its own) answers completions and chat, streamed or not,
with a first token after `TTFT` seconds and one token every `ITL` seconds after that. The
model name picks its behaviour: `ok-*` answers, `mixed-*` cycles through failures, and so on;
each test uses its own name, so its counters start at zero.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from aiohttp import web
from typer.testing import CliRunner

from inferwatch.cli import app
from inferwatch.load import LoadError, LoadSpec, LoadSpecError, run_load
from inferwatch.load.client import MAX_BODY_BYTES
from inferwatch.load.progress import Progress
from inferwatch.load.prompts import make_prompt
from inferwatch.load.runner import arrival_offsets
from inferwatch.load.spec import parse_duration
from inferwatch.load.stats import Summary, percentile

TTFT = 0.040  # seconds before the first token
ITL = 0.015  # seconds between tokens
CHAT_OVERHEAD = 3  # prompt tokens a chat turn adds to the words of its message
# Measured latencies are never below the server's sleeps, and above them by at most a few ms
# (loopback, two event loops, a busy 2-core machine): per gap, and for a whole request, whose
# error adds up over its sleeps.
SLACK = 0.004
REQUEST_SLACK = 0.012

# The failures `mixed-*` models cycle through, one request each, then one success.
MIXED = ("http_503", "http_429", "timeout", "invalid_response", "stream_error", None)
MIXED_TIMEOUT = 0.3  # the client's --timeout in the mixed test; the server hangs longer


class FakeOpenAI:
    """An OpenAI-compatible server with known latencies, on a free loopback port."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.bodies: list[dict] = []
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.url = ""

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        assert self.started.wait(10), "the fake server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self.stop_event = asyncio.Event()
        application = web.Application()
        application.router.add_get("/v1/models", self.models)
        application.router.add_post("/v1/completions", self.generate)
        application.router.add_post("/v1/chat/completions", self.generate)
        runner = web.AppRunner(application, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self.started.set()
        await self.stop_event.wait()
        await runner.cleanup()
        # Handlers still sleeping for clients that gave up (the timeout cases).
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "ok-default"}]})

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        model = body["model"]
        call = self.calls[model]
        self.calls[model] += 1
        self.in_flight[model] += 1
        self.max_in_flight[model] = max(self.max_in_flight[model], self.in_flight[model])
        try:
            return await self._answer(request, body, model, call)
        finally:
            self.in_flight[model] -= 1

    async def _answer(
        self, request: web.Request, body: dict, model: str, call: int
    ) -> web.StreamResponse:
        chat = request.path.endswith("/chat/completions")
        behaviour = model.split("-")[0]
        if behaviour == "mixed":
            behaviour = {None: "ok"}.get(MIXED[call % len(MIXED)], MIXED[call % len(MIXED)])
        if behaviour.startswith("http_"):
            return web.json_response(
                {"error": {"message": "busy"}}, status=int(behaviour.removeprefix("http_"))
            )
        if behaviour == "timeout":
            await asyncio.sleep(MIXED_TIMEOUT * 4)
            return web.json_response({})
        text = body["messages"][0]["content"] if chat else body["prompt"]
        prompt_tokens = len(text.split()) + (CHAT_OVERHEAD if chat else 0)
        n = body["max_tokens"]
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": n,
            "total_tokens": prompt_tokens + n,
        }
        if behaviour == "nousage":
            usage = None
        if not body.get("stream"):
            await asyncio.sleep(TTFT + (n - 1) * ITL)
            if behaviour == "invalid_response":
                return web.Response(text="this is not json", content_type="application/json")
            if behaviour == "huge":  # over the client's cap on a whole body
                filler = "x" * (MAX_BODY_BYTES + 1)
                return web.json_response({"choices": [{"index": 0, "text": filler}]})
            doc: dict = {"object": "text_completion", "choices": [{"index": 0, "text": "x"}]}
            if usage:
                doc["usage"] = usage
            return web.json_response(doc)

        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def event(data: str) -> None:
            await resp.write(f"data: {data}\n\n".encode())

        if chat:  # the role comes first, before anything is generated
            await event(
                json.dumps(
                    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
                )
            )
        await asyncio.sleep(TTFT)
        if behaviour == "invalid_response":
            await event("{not json")
            return resp
        if behaviour == "huge":
            await resp.write(b"data: " + b"x" * (1 << 20))
            return resp
        for i in range(n):
            if i:
                await asyncio.sleep(ITL)
            if behaviour == "stream_error" and i == 2:
                await event(json.dumps({"error": {"message": "engine died", "code": 500}}))
                await event("[DONE]")
                return resp
            if behaviour == "drop" and i == 2:
                assert request.transport is not None
                request.transport.close()
                return resp
            # Every third token decodes to nothing (half of a UTF-8 character): still a token.
            piece = "" if i % 3 == 1 else f" w{i}"
            choice = {
                "index": 0,
                ("delta" if chat else "text"): ({"content": piece} if chat else piece),
            }
            await event(json.dumps({"choices": [choice]}))
        if usage:
            await event(json.dumps({"choices": [], "usage": usage}))
        if behaviour != "nodone":
            await event("[DONE]")
        return resp


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_near(measured: float, expected: float, slack: float = SLACK) -> None:
    assert expected - 0.001 <= measured <= expected + slack, (measured, expected)


# --- latencies and counts against known delays ----------------------------------------------


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
def test_streaming_measures_the_servers_known_ttft_itl_and_tpot(server, chat):
    n, words = 8, 20
    report = run_load(
        LoadSpec(
            server.url,
            concurrency=2,
            requests=6,
            max_tokens=n,
            prompt_tokens=words,
            stream=True,
            chat=chat,
            model=f"ok-stream-{chat}",
        )
    )
    assert report.requests_ok == 6 and report.errors == {}
    assert report.completion_tokens == 6 * n
    assert report.prompt_tokens == 6 * (words + (CHAT_OVERHEAD if chat else 0))
    assert report.usage_missing == 0
    assert report.ttft is not None and report.itl is not None and report.tpot is not None
    assert_near(report.ttft.p50, TTFT, 2 * SLACK)
    assert_near(report.ttft.min, TTFT, 2 * SLACK)
    assert_near(report.itl.p50, ITL)
    assert report.itl.count == 6 * (n - 1)  # empty-text tokens counted, the chat role not
    assert_near(report.tpot.p50, ITL)
    assert report.e2e is not None
    assert_near(report.e2e.p50, TTFT + (n - 1) * ITL, REQUEST_SLACK)


def test_non_streaming_measures_e2e_only(server):
    n = 5
    report = run_load(
        LoadSpec(
            server.url, concurrency=3, requests=6, max_tokens=n, prompt_tokens=7, model="ok-plain"
        )
    )
    assert report.requests_ok == 6
    assert (report.prompt_tokens, report.completion_tokens) == (6 * 7, 6 * n)
    assert report.ttft is None and report.itl is None and report.tpot is None
    assert report.e2e is not None
    assert_near(report.e2e.p50, TTFT + (n - 1) * ITL, REQUEST_SLACK)


def test_request_bodies_follow_the_openai_protocol(server):
    before = len(server.bodies)
    run_load(
        LoadSpec(
            server.url,
            requests=1,
            max_tokens=4,
            prompt_tokens=3,
            stream=True,
            chat=True,
            model="ok-body",
        )
    )
    run_load(
        LoadSpec(
            server.url, requests=1, max_tokens=4, prompt_tokens=3, ignore_eos=False, model="ok-body"
        )
    )
    chat, plain = server.bodies[before:]
    assert chat["messages"] == [{"role": "user", "content": make_prompt(3, 0, 0)}]
    assert chat["stream_options"] == {"include_usage": True}
    assert (chat["ignore_eos"], chat["min_tokens"], chat["max_tokens"]) == (True, 4, 4)
    assert plain["prompt"] == make_prompt(3, 0, 0) and plain["stream"] is False
    assert "ignore_eos" not in plain and "min_tokens" not in plain
    assert "stream_options" not in plain


def test_closed_loop_holds_exactly_the_concurrency(server):
    report = run_load(
        LoadSpec(server.url, concurrency=3, requests=9, max_tokens=4, model="ok-conc")
    )
    assert server.calls["ok-conc"] == 9 and report.requests == 9
    assert server.max_in_flight["ok-conc"] == 3


def test_closed_loop_stops_starting_requests_at_the_duration(server):
    duration = 0.4
    report = run_load(
        LoadSpec(server.url, concurrency=2, duration=duration, max_tokens=3, model="ok-duration")
    )
    one = TTFT + 2 * ITL
    # Each worker runs back to back until the deadline, then finishes the request in flight.
    most = 2 * (int(duration / one) + 1)
    assert 2 * int(duration / (one + REQUEST_SLACK)) <= report.requests <= most
    assert report.duration < duration + one + 0.05


def test_open_loop_sends_poisson_arrivals_from_the_seed(server):
    rate, duration, seed = 40.0, 0.5, 7
    expected = sum(1 for _ in iter_until(arrival_offsets(rate, seed), duration))
    report = run_load(
        LoadSpec(server.url, rate=rate, duration=duration, seed=seed, max_tokens=2, model="ok-open")
    )
    assert report.requests == expected and report.requests_ok == expected
    assert report.spec.mode == "open"
    # Arrivals don't wait for earlier requests: more are in flight than one at a time.
    assert server.max_in_flight["ok-open"] > 1


def iter_until(offsets: Iterator[float], end: float) -> Iterator[float]:
    for t in offsets:
        if t >= end:
            return
        yield t


def test_open_loop_stops_at_the_request_count(server):
    report = run_load(
        LoadSpec(server.url, rate=200.0, requests=12, max_tokens=2, model="ok-open-n")
    )
    assert report.requests == 12 and server.calls["ok-open-n"] == 12


def test_arrival_offsets_are_seeded_and_average_one_over_the_rate():
    first = list(iter_until(arrival_offsets(10.0, 3), 1000.0))
    assert first == list(iter_until(arrival_offsets(10.0, 3), 1000.0))
    assert first[0] == 0.0
    assert first != list(iter_until(arrival_offsets(10.0, 4), 1000.0))
    mean_gap = first[-1] / (len(first) - 1)
    assert 0.09 < mean_gap < 0.11  # 10,000 gaps: the mean is within a few percent of 0.1 s


# --- failures, by kind ----------------------------------------------------------------------


def test_errors_are_counted_by_kind(server):
    rounds = 2
    report = run_load(
        LoadSpec(
            server.url,
            concurrency=2,
            requests=rounds * len(MIXED),
            max_tokens=4,
            stream=True,
            timeout=MIXED_TIMEOUT,
            model="mixed-a",
        )
    )
    expected = {kind: rounds for kind in MIXED if kind}
    assert report.errors == dict(sorted(expected.items()))
    assert report.requests_ok == rounds
    assert report.requests_failed == rounds * (len(MIXED) - 1)
    # Only successes count towards tokens and latencies.
    assert report.completion_tokens == rounds * 4
    assert report.e2e is not None and report.e2e.count == rounds


def test_a_server_that_is_down_is_a_connection_error():
    report = run_load(LoadSpec(f"http://127.0.0.1:{closed_port()}", requests=3, model="m"))
    assert report.errors == {"connection": 3}
    assert report.e2e is None and report.completion_tokens == 0


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        ("drop", "connection"),
        ("nodone", "incomplete_stream"),
        ("huge", "invalid_response"),
        ("invalid_response", "invalid_response"),
        ("stream_error", "stream_error"),
    ],
)
def test_broken_streams_are_errors_of_their_kind(server, behaviour, kind):
    report = run_load(
        LoadSpec(server.url, requests=2, max_tokens=5, stream=True, model=f"{behaviour}-stream")
    )
    assert report.errors == {kind: 2}


@pytest.mark.parametrize("behaviour", ["invalid_response", "huge"])
def test_a_body_that_is_not_json_or_too_big_is_an_invalid_response(server, behaviour):
    report = run_load(LoadSpec(server.url, requests=2, max_tokens=2, model=f"{behaviour}-body"))
    assert report.errors == {"invalid_response": 2}


def test_responses_without_usage_are_counted_not_guessed(server):
    report = run_load(
        LoadSpec(server.url, requests=3, max_tokens=4, stream=True, model="nousage-x")
    )
    assert report.requests_ok == 3 and report.usage_missing == 3
    assert report.completion_tokens == 0 and report.prompt_tokens == 0
    assert report.tpot is not None  # from the chunks, when the server gives no count
    assert_near(report.tpot.p50, ITL)


# --- the model, the spec, the report --------------------------------------------------------


def test_model_is_discovered_when_not_given(server):
    report = run_load(LoadSpec(server.url, requests=1, max_tokens=2))
    assert report.model == "ok-default" and report.requests_ok == 1


def test_model_discovery_failure_says_where():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(LoadError, match=rf"cannot list the models at {url}/v1/models"):
        run_load(LoadSpec(url, requests=1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": 2, "rate": 1.0}, "not both"),
        ({"concurrency": 0}, "--concurrency 0"),
        ({"rate": 0.0}, "--rate 0.0"),
        ({"requests": 0}, "--requests 0"),
        ({"max_tokens": 0}, "--max-tokens 0"),
        ({"prompt_tokens": 0}, "--prompt-tokens 0"),
        ({"timeout": -1.0}, "--timeout -1.0"),
        ({"model": " "}, "--model"),
    ],
)
def test_spec_refuses_impossible_runs(kwargs, message):
    with pytest.raises(LoadSpecError, match=message):
        LoadSpec("http://127.0.0.1:8000", **kwargs)


@pytest.mark.parametrize(
    "target", ["127.0.0.1:8000", "ftp://h", "http://", "http://h:99999", "http://h:8000/v1?x=1"]
)
def test_spec_refuses_bad_targets(target):
    with pytest.raises(LoadSpecError, match="--target"):
        LoadSpec(target)


def test_target_may_name_the_v1_root():
    for target in ("http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"):
        assert LoadSpec(target).url == "http://h:8000/v1/completions"
    assert LoadSpec("https://h/proxy/v1", chat=True).url == "https://h/proxy/v1/chat/completions"


def test_spec_defaults():
    spec = LoadSpec("http://h:1")
    assert (spec.concurrency, spec.duration, spec.requests, spec.mode) == (1, 30.0, None, "closed")
    assert LoadSpec("http://h:1", requests=5).duration is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), (".5", 0.5)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1s", "ten", "5d", "1e3"])
def test_parse_duration_refuses(text):
    with pytest.raises(LoadSpecError, match="--duration"):
        parse_duration(text)


def test_prompts_are_deterministic_and_about_the_size_asked():
    assert make_prompt(50, 1, 2) == make_prompt(50, 1, 2)
    assert make_prompt(50, 1, 2) != make_prompt(50, 1, 3) != make_prompt(50, 2, 2)
    assert len(make_prompt(50, 1, 2).split()) == 50


def test_percentiles_interpolate_between_ranks():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0], 90) == 3.0
    summary = Summary.of([0.3, 0.1, 0.2])
    assert summary is not None
    assert (summary.count, summary.min, summary.max) == (3, 0.1, 0.3)
    assert summary.mean == pytest.approx(0.2)
    assert Summary.of([]) is None


def test_json_report_shape(server):
    report = run_load(
        LoadSpec(
            server.url, concurrency=2, requests=4, max_tokens=3, prompt_tokens=5, model="ok-json"
        )
    )
    doc = json.loads(report.to_json())
    assert doc["requests"] == {"total": 4, "succeeded": 4, "failed": 0, "usage_missing": 0}
    assert doc["tokens"] == {"prompt": 20, "completion": 12}
    assert doc["errors"] == {}
    assert (doc["mode"], doc["concurrency"], doc["rate"]) == ("closed", 2, None)
    assert doc["endpoint"] == "/v1/completions" and doc["model"] == "ok-json"
    latency = doc["latency_seconds"]
    assert latency["ttft"] is None and latency["itl"] is None and latency["tpot"] is None
    assert set(latency["e2e"]) == {"count", "mean", "p50", "p90", "p95", "p99", "min", "max"}
    assert doc["throughput"]["output_tokens_per_second"] == pytest.approx(
        12 / doc["duration_seconds"]
    )


def test_table_lists_every_latency_and_the_errors(server):
    report = run_load(
        LoadSpec(server.url, requests=2, max_tokens=3, stream=True, chat=True, model="ok-table")
    )
    table = report.table()
    assert "model ok-table, chat, streaming" in table
    assert "2 ok, 0 failed" in table
    for name in ("TTFT", "ITL", "TPOT", "E2E"):
        assert f"\n{name} " in table
    down = run_load(LoadSpec(f"http://127.0.0.1:{closed_port()}", requests=1, model="m"))
    assert "1 failed (connection: 1)" in down.table()


def test_progress_bar_draws_and_ends_its_line():
    out = io.StringIO()
    bar = Progress(requests=10, duration=None, stream=out)
    bar.update(5, 1, 1.0, force=True)
    bar.close()
    text = out.getvalue()
    assert text.startswith("\r[############            ]  50%  5 done  4 ok  1 failed  1.0 s")
    assert text.endswith("\n")


# --- the command ----------------------------------------------------------------------------


def test_cli_prints_json(server):
    result = CliRunner().invoke(
        app,
        [
            "load",
            "--target",
            server.url,
            "--requests",
            "3",
            "--max-tokens",
            "2",
            "--prompt-tokens",
            "4",
            "--json",
            "--model",
            "ok-cli",
            "--stream",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["tokens"] == {"prompt": 12, "completion": 6}
    assert doc["stream"] is True
    assert "\r[" not in result.stderr  # no progress bar when stderr is not a terminal


def test_cli_prints_a_table_by_default(server):
    result = CliRunner().invoke(
        app,
        [
            "load",
            "--target",
            server.url,
            "-n",
            "2",
            "--max-tokens",
            "2",
            "--rate",
            "50",
            "--model",
            "ok-cli-table",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "open loop, Poisson arrivals at 50 req/s" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "nope"], "--target 'nope'"),
        (["--target", "http://h:1", "--duration", "soon"], "--duration 'soon'"),
        (["--target", "http://h:1", "-c", "2", "-r", "3"], "not both"),
    ],
)
def test_cli_refuses_bad_options_with_a_message(args, message):
    result = CliRunner().invoke(app, ["load", *args])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_cli_fails_when_no_request_succeeds():
    result = CliRunner().invoke(
        app, ["load", "--target", f"http://127.0.0.1:{closed_port()}", "-n", "2", "--model", "m"]
    )
    assert result.exit_code == 1
    assert "none of the 2 requests succeeded" in result.stderr
    assert "connection: 2" in result.stdout


def test_cli_says_when_the_server_lists_no_model():
    url = f"http://127.0.0.1:{closed_port()}"
    result = CliRunner().invoke(app, ["load", "--target", url, "-n", "1"])
    assert result.exit_code == 2
    assert f"cannot list the models at {url}/v1/models" in result.stderr
