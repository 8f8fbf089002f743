"""The parser and renderer: robust to broken input, exact on good input."""

from __future__ import annotations

import random
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.exporters import registry
from inferwatch.exporters.normalize import (
    Context,
    Normalizer,
    canonical_float,
    engine_info,
    parse_labels,
    render,
)
from tests.conftest import FIXTURES, capture

VLLM = capture("vllm-0.32.0-cpu-tiny-real.prom")
PAGES = {
    "vllm": VLLM,
    "tgi": (FIXTURES / "engines" / "tgi-3.x.prom").read_text(),
    "dcgm": capture("dcgm-exporter-gpu-operator-v25.10.0.prom"),
}


def normalize(text: str, engine: str = "vllm"):
    return Normalizer(registry.get(engine), Context()).normalize(text)


def test_parse_labels() -> None:
    assert parse_labels('a="1",b="x y"') == {"a": "1", "b": "x y"}
    assert parse_labels('a="1",') == {"a": "1"}
    assert parse_labels("") == {}
    assert parse_labels(r'a="q\"uote",b="back\\slash"') == {"a": r"q\"uote", "b": r"back\\slash"}
    assert parse_labels('a="}"') == {"a": "}"}
    for broken in ('a="1', "a=1", 'a="1" b="2"', 'a="1",a="2"', '="x"', 'a="1",,b="2"'):
        assert parse_labels(broken) is None, broken


def test_canonical_float() -> None:
    assert [canonical_float(v) for v in (1, 0.5, 2560, 1e-5, float("inf"))] == [
        "1.0",
        "0.5",
        "2560.0",
        "1e-05",
        "+Inf",
    ]


def test_output_parses_with_the_reference_parser_and_has_no_colons() -> None:
    ctx = Context(pod="cuda-75454ffb9f-8ljq7", namespace="default")
    results = []
    for engine, page in PAGES.items():
        result = Normalizer(registry.get(engine), ctx).normalize(page)
        engine_info(result, registry.get(engine), ctx)
        results.append(result)
    text = render(results, ctx)
    families = list(text_string_to_metric_families(text))
    names = {f.name for f in families}
    assert "llm_time_to_first_token_seconds" in names
    assert "llm_gpu_memory_used_bytes" in names
    assert not [n for n in names if ":" in n]
    assert text.endswith("\n") and "\n\n" not in text
    # One HELP/TYPE pair per family, even with several sources.
    assert len(re.findall(r"^# TYPE ", text, re.M)) == len(names)


def test_bad_lines_are_skipped_and_counted_and_the_rest_kept() -> None:
    lines = VLLM.splitlines()
    good = normalize(VLLM).values()
    broken = list(lines)
    targets = [i for i, line in enumerate(lines) if line.startswith("vllm:num_requests_waiting{")]
    broken[targets[0]] = 'vllm:num_requests_waiting{engine="0",model_name="tiny" 3'  # no brace
    broken.insert(10, 'vllm:prompt_tokens_total{engine="0",model_name="tiny"} not-a-number')
    broken.insert(11, "%%% garbage %%%")
    result = normalize("\n".join(broken))
    assert result.errors == 3
    values = result.values()
    assert not [k for k in values if k.startswith("llm_requests_waiting")]
    expected = {k: v for k, v in good.items() if not k.startswith("llm_requests_waiting")}
    assert values == expected


def test_nan_is_absent_not_zero() -> None:
    page = 'vllm:num_requests_running{engine="0",model_name="m"} NaN\n'
    page += 'vllm:num_requests_waiting{engine="0",model_name="m"} 2\n'
    values = normalize(page).values()
    assert list(values) == ['llm_requests_waiting{engine="vllm",model="m",rank="0"}']


def test_timestamps_and_windows_line_endings_are_accepted() -> None:
    page = 'vllm:num_requests_running{engine="0",model_name="m"} 5 1700000000000\r\n'
    assert normalize(page).values() == {
        'llm_requests_running{engine="vllm",model="m",rank="0"}': 5.0
    }


def test_duplicate_upstream_series_is_not_counted_twice() -> None:
    line = 'vllm:prompt_tokens_total{engine="0",model_name="m"} 7\n'
    assert normalize(line + line).values() == {
        'llm_prompt_tokens_total{engine="vllm",model="m",rank="0"}': 7.0
    }


def test_label_values_pass_through_escaped() -> None:
    page = 'vllm:num_requests_running{engine="0",model_name="we\\"ird\\\\name"} 1\n'
    text = render([normalize(page)], Context())
    families = list(text_string_to_metric_families(text))
    assert families[0].samples[0].labels["model"] == 'we"ird\\name'


def test_engine_info_uses_the_endpoint_facts_without_overriding_the_page() -> None:
    result = normalize(VLLM)
    ctx = Context(info={"version": "0.32.0", "block_size": "999", "max_model_len": "512"})
    engine_info(result, registry.get("vllm"), ctx)
    (info,) = [k for k in result.values() if k.startswith("llm_engine_info")]
    assert 'version="0.32.0"' in info and 'max_model_len="512"' in info
    assert 'block_size="128"' in info and 'block_size="999"' not in info


# --- property tests --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_random_bytes_never_raise(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    for engine in ("vllm", "tgi", "dcgm"):
        result = normalize(text, engine)
        render([result], Context())
    try:
        registry.detect(text)
    except registry.DetectionError as exc:
        assert str(exc)  # a reason, never an empty message


_MUTATIONS = ("delete", "truncate", "garbage", "duplicate_char", "swap")


@settings(max_examples=200, deadline=None)
@given(
    engine=st.sampled_from(sorted(PAGES)),
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(1, 25),
)
def test_mutated_real_pages_keep_every_good_line(engine: str, seed: int, count: int) -> None:
    """Break random lines of a real page; every line left intact still comes through."""
    rng = random.Random(seed)
    lines = PAGES[engine].splitlines()
    touched: set[int] = set()
    for _ in range(count):
        i = rng.randrange(len(lines))
        touched.add(i)
        line = lines[i]
        kind = rng.choice(_MUTATIONS)
        if kind == "delete":
            lines[i] = ""
        elif kind == "truncate" and line:
            lines[i] = line[: rng.randrange(len(line))]
        elif kind == "garbage":
            lines[i] = "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(1, 40)))
        elif kind == "duplicate_char" and line:
            j = rng.randrange(len(line))
            lines[i] = line[:j] + line[j] + line[j:]
        elif kind == "swap" and line:
            lines[i] = line[::-1]
    # What an unbroken page gives for the lines we did not touch:
    intact = "\n".join(line for i, line in enumerate(lines) if i not in touched)
    ctx = Context()
    expected = Normalizer(registry.get(engine), ctx).normalize(intact).values()
    got = Normalizer(registry.get(engine), ctx).normalize("\n".join(lines)).values()
    # A mutated line may still be valid and add a sample; no intact line may lose one. Where a
    # concept has a fallback source, a mutated-but-valid primary line may rightly win instead.
    with_fallback = {
        c.family for c in registry.get(engine).concepts if any(s.fallback for s in c.sources)
    }
    expected = {k: v for k, v in expected.items() if _family(k) not in with_fallback}
    assert {k: got.get(k) for k in expected} == expected


def _family(sample: str) -> str:
    name = sample.split("{", 1)[0]
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)].endswith("_seconds"):
            return name[: -len(suffix)]
    return name
