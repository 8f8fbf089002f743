"""A real vLLM 0.32.0 on this machine: it answers, its /metrics page normalizes cleanly, and its
counters agree exactly with what `inferwatch load` counted from the responses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.exporters import registry
from inferwatch.exporters.normalize import Context, Normalizer, engine_info, render
from inferwatch.load import LoadSpec, run_load
from tests.e2e import realvllm

# The first test pays for the install (minutes, once per cache) and the start (about 20 s).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

# Counters are recorded by vLLM's output loop just after the response is sent.
SETTLE_SECONDS = 5.0


def totals(page: str, *names: str) -> dict[str, float]:
    """Each sample name's value summed over its label sets."""
    sums = dict.fromkeys(names, 0.0)
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name in sums:
                sums[sample.name] += sample.value
    return sums


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
def test_serves_completions_and_chat_streamed_or_not(real_vllm, chat, stream):
    report = run_load(
        LoadSpec(
            real_vllm.base_url,
            concurrency=2,
            requests=4,
            max_tokens=8,
            prompt_tokens=16,
            chat=chat,
            stream=stream,
        )
    )
    assert report.model == realvllm.MODEL_NAME  # found through /v1/models
    assert report.errors == {} and report.requests_ok == 4
    assert report.completion_tokens == 4 * 8  # ignore_eos + min_tokens: exactly max_tokens
    assert report.usage_missing == 0
    if chat:  # the chat template adds its own tokens around the message
        assert report.prompt_tokens > 4 * 16
    else:  # the tokenizer learned the load generator's words: one token each, or nearly
        assert 4 * 16 <= report.prompt_tokens <= 4 * 20
    assert report.e2e is not None
    if stream:
        assert report.ttft is not None and report.itl is not None and report.tpot is not None
        assert report.ttft.p50 < report.e2e.p50
    else:
        assert report.ttft is None


def test_metrics_page_normalizes_with_every_v1_family(real_vllm):
    run_load(LoadSpec(real_vllm.base_url, requests=2, max_tokens=4, stream=True))
    page = real_vllm.metrics()
    adapter = registry.detect(page)
    assert adapter.name == "vllm"
    ctx = Context()
    result = Normalizer(adapter, ctx).normalize(page)
    assert result.errors == 0

    on_page = {
        sample.name for family in text_string_to_metric_families(page) for sample in family.samples
    }
    current = [s for c in adapter.concepts for s in c.sources if s.fallback == 0]
    missing = [n for s in current for n in s.sample_names() if n not in on_page]
    assert missing == [], f"vLLM {realvllm.VLLM_VERSION} lacks families the adapter maps"
    assert set(result.families) == {c.family for c in adapter.concepts}

    engine_info(result, adapter, ctx)
    normalized = render([result], ctx)
    parsed = {f.name: f for f in text_string_to_metric_families(normalized)}
    info = parsed["llm_engine_info"].samples[0].labels
    assert info["engine"] == "vllm" and info["model"] == realvllm.MODEL_NAME
    assert int(info["kv_cache_blocks"]) > 0 and int(info["block_size"]) > 0
    ttft = parsed["llm_time_to_first_token_seconds"].samples
    assert any(s.name.endswith("_count") and s.value >= 2 for s in ttft)


def test_counters_equal_what_the_load_generator_counted(real_vllm):
    names = (
        "vllm:request_success_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
    )
    before = totals(real_vllm.metrics(), *names)
    reports = [
        run_load(
            LoadSpec(
                real_vllm.base_url,
                concurrency=3,
                requests=9,
                max_tokens=12,
                prompt_tokens=24,
                stream=True,
                seed=1,
            )
        ),
        run_load(
            LoadSpec(
                real_vllm.base_url,
                rate=20.0,
                requests=6,
                max_tokens=5,
                prompt_tokens=40,
                chat=True,
                seed=2,
            )
        ),
    ]
    for report in reports:
        assert report.errors == {} and report.usage_missing == 0
    expected = {
        "vllm:request_success_total": sum(r.requests_ok for r in reports),
        "vllm:prompt_tokens_total": sum(r.prompt_tokens for r in reports),
        "vllm:generation_tokens_total": sum(r.completion_tokens for r in reports),
    }
    assert expected["vllm:generation_tokens_total"] == 9 * 12 + 6 * 5
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        after = totals(real_vllm.metrics(), *names)
        delta = {name: after[name] - before[name] for name in names}
        if delta == expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert delta == expected


def test_stop_leaves_no_process_behind(vllm_install, tmp_path: Path):
    server = realvllm.start_server(vllm_install, tmp_path, max_num_seqs=2)
    pids = server.processes()
    assert len(pids) >= 2  # the API server and its engine core
    assert server.rss_bytes() > 100 * 2**20
    assert (tmp_path / "vllm.log").read_text().count("Application startup complete") == 1
    server.stop()
    assert server.running() == []
