"""Real components for tests: processes, Prometheus, Alertmanager, promtool, the exporter, and
upstream pages whose behaviour a test can switch.

The fixtures in `tests.harness.plugin` wrap these; import the modules directly for anything
the fixtures do not cover. Every process the harness starts is stopped by PID at the end of
the session, even when a test fails.
"""
