"""Label values reaching PromQL are validated or escaped: no injection changes a query's meaning.

The escaping is checked against Prometheus' own PromQL parser and engine (promtool unit tests):
series carrying hostile label values are selected exactly, and decoys never are.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from inferwatch.alerts import promql
from tests.harness import promtool

HOSTILE = [
    '"} or vector(1) #',
    'a", namespace!="',
    "two\nlines",
    "carriage\rreturn",
    "back\\slash",
    "trailing\\",
    '\\"',
    "tab\there",
    "naïve-模型-🚀",
    "nul\x00byte",
    "del\x7f and \u2028",
    "{{ $labels.pod }}",
    "llama-3.1/8B-Instruct (int4) [v2] ^$|*+?",
    "",
]


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ('"} or vector(1) #', '\\"} or vector(1) #'),
        ("back\\slash", "back\\\\slash"),
        ("two\nlines", "two\\nlines"),
        ("nul\x00", "nul\\u0000"),
        ("naïve-模型", "naïve-模型"),
    ],
)
def test_escape(value: str, escaped: str) -> None:
    assert promql.escape(value) == escaped
    assert "\n" not in promql.quote(value)


@given(st.text())
def test_escaped_values_read_back_unchanged(value: str) -> None:
    (matcher,) = promql.parse_matchers(f"model={promql.quote(value)}")
    assert matcher.value == value


def test_regex_exact_escapes_re2_metacharacters() -> None:
    assert promql.regex_exact(["a.b", "c|d", "x(y)"]) == r"a\.b|c\|d|x\(y\)"
    with pytest.raises(ValueError, match="matches nothing"):
        promql.regex_exact([])


def test_one_of_uses_equality_for_one_value_and_an_escaped_regex_for_several() -> None:
    assert promql.one_of("model", ["a.b"]).render() == 'model="a.b"'
    assert promql.one_of("model", ["a.b", "c"]).render() == 'model=~"a\\\\.b|c"'


def test_series_and_selector() -> None:
    assert promql.series("up") == "up"
    assert promql.series("up", 'job="x"', namespace="llm") == 'up{job="x",namespace="llm"}'
    assert promql.selector(model='a"b') == '{model="a\\"b"}'


@pytest.mark.parametrize(
    "text",
    [
        'namespace="llm"} or vector(1) #',
        'namespace="llm" or up',
        "namespace=llm",
        'namespace=="llm"',
        '1abc="x"',
        'namespace="llm",,team="a"',
        'namespace="unterminated',
        'namespace="bad \\q escape"',
        'namespace=~"(unclosed"',
    ],
)
def test_matcher_text_that_would_change_a_query_is_refused(text: str) -> None:
    with pytest.raises(promql.UnsafeName):
        promql.parse_matchers(text)


def test_matcher_text_is_read_and_rerendered() -> None:
    matchers = promql.parse_matchers(' {namespace=~"llm-.*", team != "x\\"y"} ')
    assert [m.render() for m in matchers] == ['namespace=~"llm-.*"', 'team!="x\\"y"']
    assert promql.parse_matchers("") == []


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (promql.validate_namespace, 'llm"}'),
        (promql.validate_namespace, "LLM"),
        (promql.validate_namespace, "a" * 64),
        (promql.validate_namespace, "llm\n"),
        (promql.validate_deployment, "chat vllm"),
        (promql.validate_deployment, "chat\\x"),
        (promql.validate_slo_name, "chat.ttft"),
        (promql.validate_model, "two\nlines"),
        (promql.validate_model, ""),
        (promql.validate_label_name, "bad-name"),
        (promql.validate_metric_name, "up or vector(1)"),
        (promql.validate_duration, "5 minutes"),
        (promql.validate_duration, ""),
    ],
)
def test_validators_refuse(check: object, value: str) -> None:
    with pytest.raises(promql.UnsafeName, match=r"is not valid|empty|not a Prometheus duration"):
        check(value)  # type: ignore[operator]


def test_validators_accept_kubernetes_names() -> None:
    assert promql.validate_namespace("llm-prod") == "llm-prod"
    assert promql.validate_deployment("chat.vllm-0") == "chat.vllm-0"
    assert promql.validate_model("meta-llama/Llama-3.1-8B-Instruct")


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.999, "0.999"), (14.4, "14.4"), (10.0, "10"), (1 - 0.999, "0.0010000000000000009")],
)
def test_number_keeps_the_shortest_exact_text(value: float, text: str) -> None:
    # The last case is why objectives are rendered as `(1 - 0.999)`, never computed.
    assert promql.number(value) == text


def test_seconds() -> None:
    assert promql.seconds("1h30m") == 5400
    assert promql.seconds("28d") == 28 * 86400
    assert promql.seconds("500ms") == 0


def test_hostile_values_select_exactly_their_series_in_prometheus(tmp_path: Path) -> None:
    """Prometheus parses every escaped value back to itself; decoys and injections never match."""
    values = [v for v in HOSTILE if v]
    decoys = ["a", "", "x", "1"]
    series = [
        {"series": f'm{{model={promql.quote(v)},i="{i}"}}', "values": "1"}
        for i, v in enumerate(values)
    ] + [{"series": f'm{{model="{d}",i="decoy{n}"}}', "values": "7"} for n, d in enumerate(decoys)]
    tests = []
    for i, value in enumerate(values):
        tests.append(
            {
                "expr": promql.series("m", model=value),
                "eval_time": "0m",
                "exp_samples": [
                    {"labels": f'm{{model={promql.quote(value)},i="{i}"}}', "value": 1}
                ],
            }
        )
    # Several hostile values at once, through an escaped regex: exactly those series.
    tests.append(
        {
            "expr": f"count({promql.series('m', promql.one_of('model', values))})",
            "eval_time": "0m",
            "exp_samples": [{"labels": "{}", "value": len(values)}],
        }
    )
    path = tmp_path / "escape.test.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "rule_files": [],
                "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
            },
            allow_unicode=True,
        )
    )
    promtool.test_rules(path)
