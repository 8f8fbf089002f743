"""PNG previews of the dashboards from a live Prometheus, without a Grafana.

`render_previews(prometheus_url, out_dir)` draws each dashboard as one PNG laid out like
Grafana lays it out (the same 24-column grid): it picks the variables' values as Grafana does
on first load ("All", else the first value), substitutes them into every query, asks
Prometheus, and draws time series, stats, tables and heatmaps with matplotlib. A panel without
data shows the text Grafana would show (its `noValue`, else "No data").

Needs the `preview` extra (matplotlib, httpx).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from matplotlib import dates as mdates
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from inferwatch.dashboards import build, variables
from inferwatch.dashboards.style import GRID_WIDTH

# Pixels of one grid unit: Grafana's row height is 30 px; 24 columns over 1600 px.
ROW_PX, WIDTH_PX, DPI = 30, 1600, 100
POINTS = 240  # points per range query (Grafana asks for about one per pixel; enough here)
MAX_TABLE_ROWS = 12
AXIS_LABEL_PX = 60  # room for the y tick labels left of a graph
TICK_LABEL_PX = 22  # and for the time labels below it
TITLE_PX = 20  # a panel's title above its axes
COLORS = {"green": "#37872d", "orange": "#ff9830", "red": "#e02f44", "blue": "#3274d9"}
PALETTE = ("#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0")


class PreviewError(RuntimeError):
    """Prometheus could not be reached or refused a request."""


@dataclass
class Result:
    """What Prometheus answered for one target."""

    series: list[tuple[dict[str, str], list[tuple[float, float]]]] = field(default_factory=list)
    error: str | None = None


class Prometheus:
    """The few calls of Prometheus' HTTP API a preview needs."""

    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        if not re.match(r"^https?://", self.url):
            raise PreviewError(f"--prometheus {url!r}: expected an http:// or https:// URL")
        self.client = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def _api(self, path: str, params: Mapping[str, Any]) -> Any:
        try:
            response = self.client.post(f"/api/v1/{path}", data=dict(params))
        except httpx.HTTPError as exc:
            raise PreviewError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        try:
            doc = response.json()
        except ValueError:
            raise PreviewError(
                f"{self.url}/api/v1/{path} answered HTTP {response.status_code} with "
                "something that is not Prometheus' JSON"
            ) from None
        if doc.get("status") != "success":
            raise PreviewError(f"{doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def label_values(self, selector: str, label: str, start: float, end: float) -> list[str]:
        found = self._api("series", {"match[]": selector, "start": start, "end": end})
        return sorted({s[label] for s in found if label in s})

    def scrape_interval(self) -> float:
        """The global scrape interval in seconds (15 s, Grafana's default, if unknown)."""
        try:
            config = yaml.safe_load(self._api("status/config", {})["yaml"])
            return parse_duration(config["global"]["scrape_interval"])
        except (PreviewError, KeyError, TypeError, ValueError, yaml.YAMLError):
            return 15.0

    def run(self, expr: str, instant: bool, start: float, end: float, step: float) -> Result:
        params: dict[str, Any] = {"query": expr}
        if instant:
            params["time"] = end
        else:
            params.update(start=start, end=end, step=step)
        try:
            data = self._api("query" if instant else "query_range", params)
        except PreviewError as exc:
            if "cannot reach" in str(exc):
                raise
            return Result(error=str(exc))
        result = []
        for item in data["result"]:
            points = item.get("values") or [item["value"]]
            result.append((item["metric"], [(float(t), float(v)) for t, v in points]))
        return Result(result)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration (`90s`, `1h30m`)."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


# ---- values and units -----------------------------------------------------------------------


def format_value(value: float, unit: str) -> str:
    """A number as Grafana would print it for the unit ids our dashboards use."""
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "s":
        if value != 0 and abs(value) < 1:
            return f"{value * 1000:.3g} ms"
        return f"{value:.3g} s"
    if unit == "bytes":
        for suffix, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= size:
                return f"{value / size:.3g} {suffix}"
        return f"{value:.0f} B"
    suffixes = {"reqps": " req/s", "watt": " W", "celsius": " °C", "joule": " J"}
    if unit in suffixes:
        return f"{value:.3g}{suffixes[unit]}"
    if unit.startswith("suffix:"):
        return f"{value:.3g}{unit.removeprefix('suffix:')}"
    return f"{value:.3g}"


def _legend(template: str, labels: Mapping[str, str]) -> str:
    if not template:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    return " ".join(text.split())


def _threshold_color(value: float, steps: Sequence[Mapping[str, Any]]) -> str:
    color = "blue"
    for step in steps:
        if step.get("value") is None or value >= step["value"]:
            color = step["color"]
    return COLORS.get(color, color)


# ---- drawing --------------------------------------------------------------------------------


@dataclass
class _Context:
    start: float
    end: float
    step: float
    builtins: dict[str, str]
    chosen: Mapping[str, Sequence[str]]
    variables: list[variables.Variable]


def _no_data(ax: Any, panel: Mapping[str, Any], message: str | None = None) -> None:
    text = message or panel.get("fieldConfig", {}).get("defaults", {}).get("noValue", "No data")
    ax.text(
        0.5,
        0.5,
        text,
        ha="center",
        va="center",
        color="#8e8e8e",
        fontsize=10,
        wrap=True,
        transform=ax.transAxes,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _timeseries(ax: Any, panel: Mapping[str, Any], results: list[tuple[dict, Result]]) -> None:
    unit = panel["fieldConfig"]["defaults"].get("unit", "")
    drawn = 0
    starts: list[float] = []
    ends: list[float] = []
    for target, result in results:
        for labels, all_points in result.series:
            # A NaN (a quantile of no requests) is a gap, as Grafana draws it.
            points = [(t, v) for t, v in all_points if not math.isnan(v)]
            if not points:
                continue
            starts.append(points[0][0])
            ends.append(points[-1][0])
            times = [datetime.fromtimestamp(t, tz=UTC) for t, _ in points]
            ax.plot(
                times,
                [v for _, v in points],
                linewidth=1.2,
                color=PALETTE[drawn % len(PALETTE)],
                label=_legend(target.get("legendFormat", ""), labels),
            )
            drawn += 1
    if not drawn:
        _no_data(ax, panel, _first_error(results))
        return
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    if (
        panel["fieldConfig"]["defaults"]
        .get("custom", {})
        .get("thresholdsStyle", {})
        .get("mode", "off")
        != "off"
    ):
        for step in steps:
            if step.get("value") is not None:
                ax.axhline(
                    step["value"],
                    color=COLORS.get(step["color"], step["color"]),
                    linestyle="--",
                    linewidth=0.8,
                )
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_value(v, unit)))
    span = max(ends) - min(starts)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if span < 900 else "%H:%M"))
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.2)
    ax.legend(fontsize=6, loc="upper left", frameon=False, ncol=2 if drawn > 4 else 1)


def _stat(ax: Any, panel: Mapping[str, Any], results: list[tuple[dict, Result]]) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    values = [v for _t, result in results for _labels, points in result.series for _ts, v in points]
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        _no_data(ax, panel, _first_error(results))
        return
    last = finite[-1]
    color = _threshold_color(last, defaults.get("thresholds", {}).get("steps", []))
    if len(finite) > 1:
        ax.fill_between(range(len(finite)), finite, alpha=0.15, color=color)
    ax.text(
        0.5,
        0.5,
        format_value(last, defaults.get("unit", "")),
        ha="center",
        va="center",
        fontsize=20,
        color=color,
        fontweight="bold",
        transform=ax.transAxes,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _table(ax: Any, panel: Mapping[str, Any], results: list[tuple[dict, Result]]) -> None:
    organize = next(
        (t["options"] for t in panel.get("transformations", []) if t["id"] == "organize"), {}
    )
    order = sorted(organize.get("indexByName", {}), key=organize.get("indexByName", {}).get)
    rename = organize.get("renameByName", {})
    units = {
        o["matcher"]["options"]: next(
            (p["value"] for p in o["properties"] if p["id"] == "unit"), ""
        )
        for o in panel["fieldConfig"].get("overrides", [])
    }
    rows: dict[tuple, dict[str, str]] = {}
    label_columns = [c for c in order if not c.startswith("Value #")]
    for target, result in results:
        column = f"Value #{target['refId']}"
        for labels, points in result.series:
            key = tuple(labels.get(c, "") for c in label_columns)
            row = rows.setdefault(key, dict(zip(label_columns, key, strict=True)))
            header = rename.get(column, column)
            row[column] = format_value(points[-1][1], units.get(header, ""))
    if not rows:
        _no_data(ax, panel, _first_error(results))
        return
    # Only columns that have a value somewhere, as Grafana shows them.
    shown = [c for c in order if any(r.get(c) for r in rows.values())]
    cells = [[r.get(c, "") for c in shown] for r in list(rows.values())[:MAX_TABLE_ROWS]]
    table = ax.table(
        cellText=cells,
        colLabels=[rename.get(c, c) for c in shown],
        loc="upper center",
        cellLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(6)
    ax.axis("off")


def _heatmap(ax: Any, panel: Mapping[str, Any], results: list[tuple[dict, Result]]) -> None:
    buckets: dict[float, dict[float, float]] = {}
    for _target, result in results:
        for labels, points in result.series:
            le = float(labels.get("le", "nan"))
            for t, v in points:
                buckets.setdefault(le, {})[t] = buckets.get(le, {}).get(t, 0.0) + v
    bounds = sorted(b for b in buckets if not math.isnan(b))
    if not bounds:
        _no_data(ax, panel, _first_error(results))
        return
    times = sorted({t for series in buckets.values() for t in series})
    # Buckets are cumulative (count at or under `le`): the difference of neighbours per cell.
    grid = []
    for i, le in enumerate(bounds):
        below = buckets[bounds[i - 1]] if i else {}
        grid.append([max(0.0, buckets[le].get(t, 0.0) - below.get(t, 0.0)) for t in times])
    ax.pcolormesh(
        range(len(times) + 1), range(len(bounds) + 1), grid, cmap="Oranges", shading="flat"
    )
    labels_at = range(0, len(bounds), max(1, len(bounds) // 8))
    ax.set_yticks([i + 0.5 for i in labels_at])
    unit = panel.get("options", {}).get("yAxis", {}).get("unit", "")
    ax.set_yticklabels([format_value(bounds[i], unit) for i in labels_at], fontsize=6)
    ax.set_xticks([])


def _first_error(results: list[tuple[dict, Result]]) -> str | None:
    for _target, result in results:
        if result.error:
            return f"Query error: {result.error}"[:200]
    return None


_DRAW = {"timeseries": _timeseries, "stat": _stat, "table": _table, "heatmap": _heatmap}


def _query(prom: Prometheus, panel: Mapping[str, Any], ctx: _Context) -> list[tuple[dict, Result]]:
    results = []
    for target in panel.get("targets", []):
        try:
            expr = variables.substitute(target["expr"], ctx.variables, ctx.chosen, ctx.builtins)
        except variables.VariableError:
            # Variables without values (the header says why): nothing to ask Prometheus.
            results.append((target, Result()))
            continue
        results.append(
            (target, prom.run(expr, bool(target.get("instant")), ctx.start, ctx.end, ctx.step))
        )
    return results


def render_dashboard(
    dashboard: Mapping[str, Any], prom: Prometheus, out: Path, ctx: _Context, note: str = ""
) -> Path:
    """One PNG of a dashboard, panels where Grafana would put them."""
    panels = dashboard["panels"]
    height_units = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) + 2
    fig = Figure(figsize=(WIDTH_PX / DPI, height_units * ROW_PX / DPI), dpi=DPI)
    top = 2 / height_units  # a header band for the title and the variables
    chosen = ", ".join(
        f"{name}={'All' if tuple(v) == variables.ALL else ','.join(v)}"
        for name, v in ctx.chosen.items()
    )
    span = f"{_stamp(ctx.start)} to {_stamp(ctx.end)} UTC"
    fig.text(0.01, 1 - 0.6 / height_units, dashboard["title"], fontsize=14, fontweight="bold")
    fig.text(
        0.01,
        1 - 1.4 / height_units,
        f"{chosen}  ·  {span}  {note}".strip(),
        fontsize=8,
        color="#555555",
    )
    for panel in panels:
        pos = panel["gridPos"]
        left, width = pos["x"] / GRID_WIDTH, pos["w"] / GRID_WIDTH
        bottom = 1 - top - (pos["y"] + pos["h"]) / height_units
        height = pos["h"] / height_units
        if panel["type"] == "row":
            fig.text(
                left + 0.005,
                bottom + height / 2,
                panel.get("title", ""),
                fontsize=11,
                fontweight="bold",
                va="center",
            )
            continue
        # Room inside the panel for the title above and the axis labels left and below.
        graph = panel["type"] in ("timeseries", "heatmap")
        left_room = (AXIS_LABEL_PX if graph else 0) / WIDTH_PX
        below = (TICK_LABEL_PX if graph else 4) / (height_units * ROW_PX)
        above = TITLE_PX / (height_units * ROW_PX)
        pad_x = 0.006
        ax = fig.add_axes(
            (
                left + pad_x + left_room,
                bottom + below,
                width - pad_x * 2 - left_room,
                height - below - above,
            )
        )
        ax.set_title(panel.get("title", ""), fontsize=8, loc="left")
        draw = _DRAW.get(panel["type"])
        if draw is None:
            _no_data(ax, panel, f"panel type {panel['type']!r} is not previewed")
            continue
        draw(ax, panel, _query(prom, panel, ctx))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M")


def render_previews(
    prometheus_url: str,
    out_dir: Path,
    *,
    range_seconds: float = 1800.0,
    end: float | None = None,
    timeout: float = 30.0,
) -> list[Path]:
    """Render every dashboard to `out_dir/<uid>.png` from the Prometheus at `prometheus_url`.

    Raises `PreviewError` when Prometheus cannot be reached; a dashboard whose variables have
    no values yet (no SLO rules loaded, say) is still drawn, its panels empty and the reason
    in its header.
    """
    if range_seconds <= 0:
        raise PreviewError("the preview range must be positive")
    prom = Prometheus(prometheus_url, timeout=timeout)
    try:
        end = time.time() if end is None else end
        start = end - range_seconds
        step = max(1.0, range_seconds / POINTS)
        scrape = prom.scrape_interval()
        # Grafana's $__rate_interval: at least four scrapes, and one step plus a scrape.
        rate_interval = max(4 * scrape, step + scrape)
        builtins = {
            "__rate_interval": _duration(rate_interval),
            "__interval": _duration(step),
            "__range": _duration(range_seconds),
        }
        written = []
        for uid, dashboard in build.build_all().items():
            found = variables.query_variables(dashboard)
            note = ""
            try:
                chosen = variables.resolve(
                    dashboard, lambda sel, label: prom.label_values(sel, label, start, end)
                )
            except variables.VariableError as exc:
                chosen, note = {}, f"·  {exc}"
            ctx = _Context(start, end, step, builtins, chosen, found)
            written.append(render_dashboard(dashboard, prom, out_dir / f"{uid}.png", ctx, note))
        return written
    finally:
        prom.close()
