"""docs/metrics.md is generated from the schema and the adapters, and kept up to date."""

from __future__ import annotations

from inferwatch import schema
from inferwatch.exporters import metrics_doc, registry
from tests.conftest import ROOT


def test_docs_metrics_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "metrics.md").read_text()
    assert committed == metrics_doc.render(), (
        "docs/metrics.md is stale: run `inferwatch metrics-table --out docs/metrics.md`"
    )


def test_every_family_and_every_engine_has_a_row() -> None:
    text = metrics_doc.render()
    for fam in schema.FAMILIES:
        assert f"| `{fam.name}` |" in text
    for adapter in registry.ADAPTERS.values():
        assert f"## {adapter.title}\n" in text
    # Every concept an engine does not report is said so in its section.
    vllm_only = [c.family for c in registry.get("vllm").concepts]
    tgi_missing = [
        f.name for f in schema.ENGINE_FAMILIES if registry.get("tgi").concept(f.name) is None
    ]
    assert "llm_time_to_first_token_seconds" in tgi_missing and vllm_only
    assert "| `llm_time_to_first_token_seconds` | not reported | |" in text


def test_adapters_only_use_schema_families_with_matching_types() -> None:
    for adapter in registry.ADAPTERS.values():
        for concept in adapter.concepts:
            fam = schema.family(concept.family)
            assert fam.group is adapter.group, (adapter.name, fam.name)
            for source in concept.sources:
                if fam.kind is schema.Kind.HISTOGRAM:
                    assert source.kind is schema.Kind.HISTOGRAM and not source.suffix
                elif source.suffix:
                    assert source.kind is schema.Kind.HISTOGRAM, "a counter from a histogram part"
