"""Prometheus rules for LLM serving: recording rules, alerts, and SLO burn-rate rules.

Alerts and rules are data (`catalog`, `recording`, `slo_rules`) rendered by one renderer
(`rules`) into the files `build` writes under `alerts/generated/`; every name lives in
`conventions`, every threshold in `config`, and every label value reaching PromQL goes through
`promql`.
"""
