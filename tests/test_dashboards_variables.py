"""Template variables outside Grafana: substitution, escaping, and choosing values.

The last test proves the escaping against a real Prometheus: label values full of quotes,
backslashes and regex characters select exactly themselves.
"""

from __future__ import annotations

import pytest

from inferwatch.dashboards import build, variables
from inferwatch.dashboards.variables import ALL, Variable, VariableError, substitute
from tests.harness.prometheus import scrape_job

NS = Variable("namespace", "label_values(llm_engine_info, namespace)", False, False, None)
POD = Variable("pod", "label_values(llm_engine_info, pod)", True, True, ".*")
MODEL = Variable("model", "label_values(llm_engine_info, model)", True, False, None)
VARS = [NS, POD, MODEL]


def test_single_value_goes_in_as_it_is() -> None:
    out = substitute('up{namespace="$namespace"}', VARS, {"namespace": ["llm"]})
    assert out == 'up{namespace="llm"}'


def test_several_values_become_an_escaped_alternation() -> None:
    out = substitute('up{pod=~"$pod"}', VARS, {"pod": ["a.b", "c+d"]})
    assert out == r'up{pod=~"(a\\.b|c\\+d)"}'


def test_all_becomes_the_all_value() -> None:
    assert substitute('up{pod=~"${pod}"}', VARS, {"pod": ALL}) == 'up{pod=~".*"}'


def test_quotes_and_backslashes_cannot_leave_the_string() -> None:
    out = substitute('up{namespace="$namespace"}', VARS, {"namespace": ['x"} or vector(1) #\\']})
    assert out == r'up{namespace="x\"} or vector(1) #\\"}'


def test_builtins_are_replaced_and_regex_groups_left_alone() -> None:
    expr = 'label_replace(rate(x{pod=~"$pod"}[$__rate_interval]), "w", "$1", "n", "(.*)")'
    out = substitute(expr, VARS, {"pod": ALL}, {"__rate_interval": "1m"})
    assert out == 'label_replace(rate(x{pod=~".*"}[1m]), "w", "$1", "n", "(.*)")'


def test_a_value_that_looks_like_a_variable_is_not_substituted_again() -> None:
    out = substitute(
        'x{namespace="$namespace"}[$__range]', VARS, {"namespace": ["$__range"]}, {"__range": "5m"}
    )
    assert out == 'x{namespace="$__range"}[5m]'


@pytest.mark.parametrize(
    ("expr", "chosen", "message"),
    [
        ('up{pod="$pod"}', {"pod": ["a"]}, "use it with =~"),
        ('up{namespace="$namespace"}', {}, "has no value"),
        ('up{namespace="$namespace"}', {"namespace": ["a", "b"]}, "takes one value"),
        ("up[$__range]", {}, "$__range"),
        ('up{x="$nope"} + $namespace', {"namespace": ["a"]}, "$namespace"),
    ],
)
def test_substitution_refuses_what_it_cannot_do(expr, chosen, message) -> None:
    with pytest.raises(VariableError, match=message.replace("$", r"\$")):
        substitute(expr, VARS, chosen)


def test_resolve_chooses_in_order_with_earlier_variables_substituted() -> None:
    dashboard = build.BUILDERS["inferwatch-deployment"]()
    asked: list[tuple[str, str]] = []
    values = {
        "namespace": ["llm", "batch"],
        "deployment": ["chat"],
        "engine": ["vllm"],
        "model": ["m1", "m2"],
        "pod": ["chat-0", "chat-1"],
    }

    def label_values(selector: str, label: str) -> list[str]:
        asked.append((selector, label))
        return values[label]

    chosen = variables.resolve(dashboard, label_values)
    assert chosen == {
        "namespace": ["batch"],
        "deployment": ["chat"],
        "engine": ["vllm"],
        "model": ALL,
        "pod": ALL,
    }
    assert asked[2] == ('llm_engine_info{namespace="batch", deployment="chat"}', "engine")


def test_resolve_says_which_variable_has_no_values() -> None:
    dashboard = build.BUILDERS["inferwatch-gpu"]()
    with pytest.raises(VariableError, match=r"\$namespace: no values"):
        variables.resolve(dashboard, lambda _selector, _label: [])


def test_resolve_refuses_a_choice_outside_the_values() -> None:
    dashboard = build.BUILDERS["inferwatch-gpu"]()
    with pytest.raises(VariableError, match="not among"):
        variables.resolve(dashboard, lambda _s, _l: ["a"], lambda _v, _o: ["b"])


NASTY = (
    'quote"inside',
    "back\\slash",
    "dots.and+plus(paren)",
    "pipe|or",
    "star*and?",
    "brace{1}[x]",
    "dollar$namespace^",
    "模型/γ",
)


def _exposition() -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"')

    lines = ["# TYPE llm_engine_info gauge"]
    lines += [f'llm_engine_info{{engine="vllm",model="{escape(m)}"}} 1' for m in NASTY]
    # Neighbours a sloppy regex would also match.
    lines += [f'llm_engine_info{{engine="vllm",model="{escape(m)}x"}} 1' for m in NASTY]
    lines.append('llm_engine_info{engine="vllm",model="dotsXand+plus(paren)"} 1')
    return "\n".join(lines) + "\n"


def test_nasty_label_values_select_exactly_themselves(page_factory, prometheus_factory) -> None:
    page = page_factory(_exposition())
    prom = prometheus_factory(scrape_configs=[scrape_job("nasty", f"127.0.0.1:{page.port}")])
    prom.wait_for("count(llm_engine_info)", lambda r: r and r[0].value == 2 * len(NASTY) + 1)
    single = Variable("model", "", False, False, None)
    many = Variable("model", "", True, True, ".*")
    for value in NASTY:
        for variable, op in ((single, "="), (many, "=~")):
            expr = substitute(
                f'llm_engine_info{{model{op}"$model"}}', [variable], {"model": [value]}
            )
            got = [s.labels["model"] for s in prom.vector(expr)]
            assert got == [value], (value, op, expr)
    pair = substitute('llm_engine_info{model=~"$model"}', [many], {"model": list(NASTY[:3])})
    assert sorted(s.labels["model"] for s in prom.vector(pair)) == sorted(NASTY[:3])
