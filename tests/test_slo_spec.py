"""The SLO spec model: valid specs load, every malformed one is refused with file, line, field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from inferwatch.exporters import buckets
from inferwatch.slo import spec
from tests.conftest import ROOT

EXAMPLES = ROOT / "slo" / "examples"


def parse(text: str) -> tuple[spec.SLOSpec, ...]:
    return spec.parse(textwrap.dedent(text), "slos.yaml")


def refused(text: str) -> str:
    with pytest.raises(spec.SpecError) as info:
        parse(text)
    return str(info.value)


LATENCY = """\
    slos:
      - name: chat-ttft
        namespace: llm
        deployment: chat-vllm
        engine: {engine}
        sli:
          type: latency
          metric: {metric}
          threshold: {threshold}
        objective: 0.99
    """


def latency(engine: str = "vllm", metric: str = buckets.TTFT, threshold: str = "0.5") -> str:
    return textwrap.dedent(LATENCY.format(engine=engine, metric=metric, threshold=threshold))


def test_every_example_spec_loads() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert files, "slo/examples/ has no spec"
    specs = spec.load_all(files)
    assert {s.sli.type for s in specs} == {"availability", "latency"}
    assert {s.period for s in specs} == {"28d", "30d"}


def test_the_docstring_example_is_a_valid_spec() -> None:
    doc = spec.__doc__ or ""
    example = doc.split("\n\n    slos:", 1)[1].split("\n\n", 1)[0]
    specs = parse("slos:" + textwrap.dedent(example.replace("\n    ", "\n")))
    assert [s.name for s in specs] == ["chat-availability", "chat-ttft"]


def test_availability_defaults() -> None:
    (slo,) = parse("""\
        slos:
          - name: chat
            namespace: llm
            deployment: chat-vllm
            sli: {type: availability}
            objective: 0.999
        """)
    assert slo.period == "30d" and slo.period_days == 30
    assert slo.sli.error_reasons == ("abort", "error")
    assert slo.models == () and slo.engine is None and slo.labels == {}


def test_latency_threshold_on_a_boundary_gives_the_canonical_le() -> None:
    (slo,) = parse(latency(threshold="1"))
    assert isinstance(slo.sli, spec.LatencySLI)
    assert slo.sli.le == "1.0"


def test_tgi_geometric_boundary_is_accepted_as_the_exporter_writes_it() -> None:
    (slo,) = parse(latency(engine="tgi", metric=buckets.E2E, threshold="8.52226929923929"))
    assert slo.sli.le == "8.52226929923929"
    # TGI computes 0.0001 * 1.5 as a double; the exporter writes that double's text.
    assert buckets.boundaries("tgi", buckets.E2E)[0] == 0.0001 * 1.5
    assert buckets.le_text(buckets.boundaries("tgi", buckets.E2E)[0]) == "0.00015000000000000001"


def test_threshold_off_the_buckets_is_refused_with_the_nearest_boundaries() -> None:
    message = refused(latency(threshold="0.3"))
    assert message == (
        "slos.yaml:9: slos[0].sli.threshold: 0.3 is not a bucket boundary of vllm's default "
        "llm_time_to_first_token_seconds buckets, so the fraction of requests under it cannot "
        "be read; nearest: 0.25, 0.5"
    )


def test_vllm_ttft_has_no_two_second_boundary() -> None:
    assert "nearest: 1.0, 2.5" in refused(latency(threshold="2"))


def test_threshold_beyond_the_last_boundary_lists_the_last_one() -> None:
    assert refused(latency(threshold="99999")).endswith("nearest: 2560.0")


def test_custom_buckets_replace_the_engine_defaults() -> None:
    text = latency(threshold="0.3").replace(
        "threshold: 0.3", "threshold: 0.3\n      buckets: [0.1, 0.3, 0.9]"
    )
    (slo,) = parse(text)
    assert slo.sli.le == "0.3"
    message = refused(text.replace("threshold: 0.3", "threshold: 0.2"))
    assert "0.2 is not a bucket boundary of sli.buckets" in message
    assert "nearest: 0.1, 0.3" in message


def test_unsorted_custom_buckets_are_refused() -> None:
    text = latency().replace("threshold: 0.5", "threshold: 0.5\n      buckets: [0.5, 0.1]")
    assert "slos.yaml:10: slos[0].sli.buckets: " in refused(text)
    assert "strictly increasing" in refused(text)


def test_engine_without_the_family_is_refused_naming_what_it_reports() -> None:
    message = refused(latency(engine="tgi", threshold="0.5"))
    assert message.startswith("slos.yaml:8: slos[0].sli.metric: tgi does not report ")
    assert "it reports llm_time_per_output_token_seconds, llm_request_duration_seconds" in message


def test_latency_without_engine_is_refused() -> None:
    message = refused(latency().replace("    engine: vllm\n", ""))
    assert message.startswith("slos.yaml:2: slos[0].engine: a latency SLI needs the engine")


def test_non_latency_family_is_refused() -> None:
    message = refused(latency(metric="llm_request_queue_duration_seconds"))
    assert message.startswith("slos.yaml:8: slos[0].sli.metric: Input should be ")


@pytest.mark.parametrize(
    ("objective", "expected"),
    [
        ("99.9", "99.9 looks like a percentage: the objective is a ratio, e.g. 0.999 for 99.9%"),
        ("1", "an objective of 1 leaves no error budget"),
        ("0", "Input should be greater than 0"),
        ("-0.5", "Input should be greater than 0"),
        (".nan", "Input should be a finite number"),
        ("high", "Input should be a valid number"),
    ],
)
def test_objective_must_be_a_ratio_between_0_and_1(objective: str, expected: str) -> None:
    message = refused(latency().replace("objective: 0.99", f"objective: {objective}"))
    assert message.startswith("slos.yaml:10: slos[0].objective: ")
    assert expected in message


def test_period_is_28d_or_30d() -> None:
    message = refused(latency() + "    period: 7d\n")
    assert message.startswith("slos.yaml:11: slos[0].period: Input should be '28d' or '30d'")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("namespace", "'llm\"} or vector(1) #'"),
        ("namespace", "'llm\\nfoo'"),
        ("namespace", '"llm\\n"'),
        ("namespace", "LLM"),
        ("namespace", "'ns\\\\x'"),
        ("namespace", "'naïve'"),
        ("deployment", "'chat\"}'"),
        ("deployment", "'-leading-dash'"),
        ("name", "'chat ttft'"),
    ],
)
def test_names_that_reach_promql_must_be_kubernetes_names(field: str, value: str) -> None:
    text = latency().replace(f"{field}: ", f"{field}: {value} #", 1)
    message = refused(text)
    assert f"slos[0].{field}: " in message
    assert "is not valid: " in message


def test_model_names_are_free_text_but_not_control_characters() -> None:
    text = latency().replace("engine: vllm", "engine: vllm\n    models: ['a\"} or vector(1) #']")
    (slo,) = parse(text)
    assert slo.models == ('a"} or vector(1) #',)  # escaped when rendered, never refused
    message = refused(text.replace("models: ['a\"} or vector(1) #']", 'models: ["a\\nb"]'))
    assert "slos[0].models: model 'a\\nb' is empty or has control characters" in message


def test_error_reasons_must_be_schema_reasons() -> None:
    text = """\
        slos:
          - name: chat
            namespace: llm
            deployment: chat-vllm
            sli:
              type: availability
              error_reasons: [error, timeout]
            objective: 0.999
        """
    message = refused(text)
    assert message.startswith("slos.yaml:7: slos[0].sli.error_reasons: unknown finish reason")
    assert "'timeout'" in message and "stop, length, abort, error" in message


def test_labels_may_not_replace_generated_ones_or_hold_templates() -> None:
    base = latency() + "    labels: {LABELS}\n"
    assert parse(base.replace("LABELS", "team: inference"))[0].labels == {"team": "inference"}
    assert "set by the generated rules" in refused(base.replace("LABELS", "severity: info"))
    assert "no templates" in refused(base.replace("LABELS", "team: '{{ $value }}'"))
    assert "not a Prometheus label name" in refused(base.replace("LABELS", "'bad-name': x"))


def test_unknown_field_names_its_line() -> None:
    message = refused(latency().replace("objective: 0.99", "objective: 0.99\n    objectve: 0.9"))
    assert message == "slos.yaml:11: slos[0].objectve: unknown field"


def test_missing_field_names_the_slo() -> None:
    message = refused(latency().replace("    namespace: llm\n", ""))
    assert message == "slos.yaml:2: slos[0].namespace: required field is missing"


def test_unknown_sli_type_is_refused() -> None:
    message = refused(latency().replace("type: latency", "type: throughput"))
    assert message.startswith("slos.yaml:6: slos[0].sli: Input tag 'throughput'")


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = latency().replace("objective: 0.99", "objective: 2") + "    period: 1y\n"
    message = refused(text)
    assert "slos[0].objective" in message and "slos[0].period" in message


def test_duplicate_keys_are_refused_not_silently_overwritten() -> None:
    message = refused(latency().replace("objective: 0.99", "objective: 0.99\n    objective: 0.9"))
    assert message == "slos.yaml:11: slos[0].objective: duplicate key"


def test_duplicate_slo_names_are_refused() -> None:
    text = latency() + latency().split("slos:\n", 1)[1]
    message = refused(text)
    assert message.startswith("slos.yaml:11: slos[1].name: 'chat-ttft' is already slos[0]")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "slos.yaml: empty; expected `slos:` with a list of SLOs"),
        ("- a\n", "slos.yaml:1: expected a mapping with `slos:`, found a list"),
        ("slos: []\n", "slos.yaml:1: slos: list at least one SLO"),
        ("slos: [\n  - a: b\n", "slos.yaml:2: not valid YAML: expected the node content"),
        ("slos:\n  - name: x\n\tbad: tab\n", "slos.yaml:3: not valid YAML: "),
    ],
)
def test_documents_that_are_not_specs(text: str, expected: str) -> None:
    assert refused(text).startswith(expected)


def test_huge_and_alias_bomb_documents_are_refused_quickly() -> None:
    assert "larger than" in refused("slos: []\n" + "#" * (spec.MAX_FILE_BYTES + 1))
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
    )
    assert "YAML nodes: not an SLO spec" in refused(bomb)


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(latency(threshold="0.3"))
    with pytest.raises(spec.SpecError, match=rf"^{path}:9: slos\[0\]\.sli\.threshold: "):
        spec.load(path)
    with pytest.raises(spec.SpecError, match="cannot read"):
        spec.load(tmp_path / "missing.yaml")


def test_load_all_reads_directories_and_keeps_names_unique(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(latency())
    (tmp_path / "notes.txt").write_text("not a spec")
    assert [s.name for s in spec.load_all([tmp_path])] == ["chat-ttft"]
    (tmp_path / "b.yml").write_text(latency())
    duplicate = r"b\.yml: SLO 'chat-ttft' is already defined in .*a\.yaml"
    with pytest.raises(spec.SpecError, match=duplicate):
        spec.load_all([tmp_path])
