"""The house style: the only module that imports grafanalib.

Builders describe panels with the factories below (`timeseries`, `stat`, `table`, `heatmap`)
and lay them out in `Row`s; `dashboard()` applies the defaults every inferwatch dashboard shares
(uid, tags, links, datasource variable, refresh, time zone), places the panels on the grid and
returns the dashboard as JSON data. A move to another generator touches this file only.

grafanalib 0.7 still writes fields of Grafana's pre-8 model (`rows`, `style`, per-target `step`,
nulls where Grafana expects a value or nothing). `_modernize` removes them, so the output is
the current dashboard model: the tests hold it to the JSON Schema generated from
`@grafana/schema`.

Every panel reads the normalized families its queries name; when an engine does not report
one of them the panel says so, in its description and in place of "No data"
(`coverage.note`, `coverage.no_value`).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import attr
from grafanalib import core as G
from grafanalib._gen import DashboardEncoder

from inferwatch.dashboards import coverage

# Grafana 10.4 / 11 model. Newer Grafana migrates it on load; older versions refuse newer ones.
SCHEMA_VERSION = 39
GRID_WIDTH = 24
TAG = "inferwatch"
DATASOURCE_VARIABLE = "datasource"
# Every panel and query reads from the data source the user picks: never a fixed id.
DATASOURCE = {"type": "prometheus", "uid": f"${{{DATASOURCE_VARIABLE}}}"}

# Grafana unit ids.
SECONDS = "s"
RATIO = "percentunit"
BYTES = "bytes"
WATTS = "watt"
CELSIUS = "celsius"
JOULES = "joule"
COUNT = "short"
NONE = "none"
REQUESTS_PER_SECOND = "reqps"
TOKENS_PER_SECOND = "suffix: tok/s"
PER_SECOND = "suffix: /s"
JOULES_PER_TOKEN = "suffix: J/tok"

# Colours (Grafana's named palette) and the thresholds built from them.
GOOD, WARN, BAD, NEUTRAL = "green", "orange", "red", "blue"


def steps(*pairs: tuple[str, float | None]) -> list[dict[str, Any]]:
    """Threshold steps, lowest first; the first step's value is None (from minus infinity)."""
    return [{"color": color, "value": value} for color, value in pairs]


# Saturation of a ratio resource (KV cache, GPU memory): amber at 90 %, red at 98 %.
SATURATION = steps((GOOD, None), (WARN, 0.9), (BAD, 0.98))
# Error ratios: amber from 1 %, red from 5 %.
ERRORS = steps((GOOD, None), (WARN, 0.01), (BAD, 0.05))
# Anything above zero is bad (XID errors, preemptions).
ANY_IS_BAD = steps((GOOD, None), (BAD, 1))
PLAIN = steps((NEUTRAL, None))


# What the factories return: a grafanalib panel, placed by `dashboard()`.
Panel = G.Panel


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    # "time_series"; "table" for rows of an instant query; "heatmap" for buckets by `le`.
    format: str = "time_series"


@dataclass(frozen=True)
class Column:
    """One value column of a table: the query that fills it, its header and unit."""

    header: str
    query: Query
    unit: str = COUNT
    thresholds: list[dict[str, Any]] | None = None


@dataclass
class Row:
    """A titled row of panels, laid out left to right and wrapped at the grid width."""

    title: str
    panels: list[G.Panel] = field(default_factory=list)


@dataclass(frozen=True)
class Variable:
    """A query variable over label values, e.g. `label_values(llm_engine_info, namespace)`."""

    name: str
    label: str
    query: str
    multi: bool = False
    include_all: bool = False
    description: str = ""


def _targets(queries: Sequence[Query]) -> list[G.Target]:
    return [
        G.Target(
            expr=q.expr,
            legendFormat=q.legend,
            refId=chr(ord("A") + i),
            instant=q.instant,
            format=q.format,
            datasource=DATASOURCE,
        )
        for i, q in enumerate(queries)
    ]


def _description(text: str, queries: Iterable[Query]) -> tuple[str, str | None]:
    """The panel description with its "not reported by" note, and the text for no data."""
    families: frozenset[str] = frozenset()
    for q in queries:
        families |= coverage.families_in(q.expr)
    note = coverage.note(families)
    return (f"{text}\n\n{note}" if note else text), coverage.no_value(families)


def _grid(w: int, h: int) -> G.GridPos:
    if not 1 <= w <= GRID_WIDTH:
        raise ValueError(f"panel width {w} is outside 1..{GRID_WIDTH}")
    return G.GridPos(h=h, w=w, x=0, y=0)


def _field_defaults(no_value: str | None, **extra: Any) -> dict[str, Any]:
    defaults = {k: v for k, v in extra.items() if v is not None}
    if no_value is not None:
        defaults["noValue"] = no_value
    return {"fieldConfig": {"defaults": defaults}}


def _merge(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = _merge(out[key], value)
            else:
                out[key] = value
    return out


def timeseries(
    title: str,
    description: str,
    queries: Sequence[Query],
    unit: str,
    *,
    w: int = 12,
    h: int = 8,
    stack: bool = False,
    min_value: float | None = 0,
    max_value: float | None = None,
    thresholds: list[dict[str, Any]] | None = None,
    legend_table: bool = False,
) -> G.TimeSeries:
    """Lines over time; with `legend_table`, a legend table with mean, max and last."""
    text, no_value = _description(description, queries)
    return G.TimeSeries(
        title=title,
        description=text,
        dataSource=DATASOURCE,
        targets=_targets(queries),
        gridPos=_grid(w, h),
        unit=unit,
        fillOpacity=25 if stack else 10,
        stacking={"mode": "normal", "group": "A"} if stack else {"mode": "none", "group": "A"},
        lineWidth=1,
        showPoints="never",
        tooltipMode="multi",
        tooltipSort="desc",
        legendDisplayMode="table" if legend_table else "list",
        legendPlacement="right" if legend_table else "bottom",
        legendCalcs=["mean", "max", "lastNotNull"] if legend_table else [],
        thresholds=thresholds or PLAIN,
        thresholdsStyleMode="dashed" if thresholds else "off",
        maxDataPoints=None,
        extraJson=_merge(
            {"options": {"legend": {"showLegend": True}}},
            _field_defaults(no_value, min=min_value, max=max_value),
        ),
    )


def stat(
    title: str,
    description: str,
    query: Query,
    unit: str,
    *,
    w: int = 4,
    h: int = 4,
    thresholds: list[dict[str, Any]] | None = None,
    decimals: int | None = None,
    reduce: str = "lastNotNull",
) -> G.Stat:
    """One big number with a sparkline, coloured by its thresholds."""
    text, no_value = _description(description, [query])
    return G.Stat(
        title=title,
        description=text,
        dataSource=DATASOURCE,
        targets=_targets([query]),
        gridPos=_grid(w, h),
        format=unit,
        decimals=decimals,
        reduceCalc=reduce,
        colorMode="value",
        graphMode="area",
        textMode="value",
        thresholds=thresholds or PLAIN,
        noValue=no_value,
        maxDataPoints=None,
        extraJson=_merge(
            {
                "options": {
                    "percentChangeColorMode": "standard",
                    "showPercentChange": False,
                    "wideLayout": True,
                }
            },
            _field_defaults(no_value, color={"mode": "thresholds"}),
        ),
    )


def table(
    title: str,
    description: str,
    labels: Sequence[tuple[str, str]],
    columns: Sequence[Column],
    *,
    w: int = GRID_WIDTH,
    h: int = 8,
    sort_by: str | None = None,
) -> G.Table:
    """One row per label set: each column is an instant query, merged on the `labels`.

    `labels` are (label, header) pairs, in the order shown; every other field is hidden.
    """
    queries = [c.query for c in columns]
    for q in queries:
        if not (q.instant and q.format == "table"):
            raise ValueError(f"table {title!r}: columns need instant table queries: {q.expr}")
    text, _ = _description(description, queries)
    values = {f"Value #{chr(ord('A') + i)}": c for i, c in enumerate(columns)}
    shown = [*(label for label, _ in labels), *values]
    organize = {
        "excludeByName": {"Time": True},
        "includeByName": {name: True for name in shown},
        "indexByName": {name: i for i, name in enumerate(shown)},
        "renameByName": {
            **{label: header for label, header in labels},
            **{name: c.header for name, c in values.items()},
        },
    }
    overrides = [
        {
            "matcher": {"id": "byName", "options": c.header},
            "properties": [
                {"id": "unit", "value": c.unit},
                *_column_no_value(c),
                *(
                    [
                        {"id": "thresholds", "value": {"mode": "absolute", "steps": c.thresholds}},
                        {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                    ]
                    if c.thresholds
                    else []
                ),
            ],
        }
        for c in columns
    ]
    return G.Table(
        title=title,
        description=text,
        dataSource=DATASOURCE,
        targets=_targets(queries),
        gridPos=_grid(w, h),
        filterable=True,
        overrides=overrides,
        sortBy=[G.TableSortByField(displayName=sort_by, desc=True)] if sort_by else [],
        transformations=[
            {"id": "merge", "options": {}},
            {"id": "organize", "options": organize},
        ],
        thresholds=PLAIN,
        maxDataPoints=None,
        extraJson=_merge(
            {"options": {"frameIndex": 0, "cellHeight": "sm"}},
            _field_defaults(
                None,
                custom={
                    "align": "auto",
                    "cellOptions": {"type": "auto"},
                    "filterable": True,
                    "inspect": False,
                },
            ),
        ),
    )


def _column_no_value(column: Column) -> list[dict[str, Any]]:
    """A column an engine cannot fill says so in its cells, not the whole table."""
    _, no_value = _description("", [column.query])
    return [{"id": "noValue", "value": no_value}] if no_value else []


@attr.s
class _Heatmap(G.Panel):
    """A heatmap of Prometheus histogram buckets in Grafana's current model.

    grafanalib 0.7's `Heatmap` writes the pre-9 (Angular) heatmap, which Grafana converts on
    load; this writes what Grafana would convert it to.
    """

    unit: str = attr.ib(default=SECONDS)

    def to_json_data(self) -> dict[str, Any]:
        return self.panel_json(
            {
                "type": "heatmap",
                "options": {
                    "calculate": False,
                    "cellGap": 1,
                    "color": {
                        "exponent": 0.5,
                        "fill": "dark-orange",
                        "mode": "scheme",
                        "reverse": False,
                        "scale": "exponential",
                        "scheme": "Oranges",
                        "steps": 64,
                    },
                    "exemplars": {"color": "rgba(255,0,255,0.7)"},
                    "filterValues": {"le": 1e-9},
                    "legend": {"show": True},
                    "rowsFrame": {"layout": "auto"},
                    "showValue": "never",
                    "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": True},
                    "yAxis": {"axisPlacement": "left", "reverse": False, "unit": self.unit},
                },
                "fieldConfig": {
                    "defaults": {
                        "custom": {
                            "hideFrom": {"legend": False, "tooltip": False, "viz": False},
                            "scaleDistribution": {"type": "linear"},
                        }
                    },
                    "overrides": [],
                },
            }
        )


def heatmap(
    title: str, description: str, query: Query, unit: str, *, w: int = 12, h: int = 8
) -> G.Panel:
    """Bucket counts over time; `query` must give one series per `le` (format "heatmap")."""
    if query.format != "heatmap":
        raise ValueError(f"heatmap {title!r}: the query must have format 'heatmap'")
    text, no_value = _description(description, [query])
    return _Heatmap(
        title=title,
        description=text,
        dataSource=DATASOURCE,
        targets=_targets([query]),
        gridPos=_grid(w, h),
        unit=unit,
        maxDataPoints=None,
        extraJson=_field_defaults(no_value),
    )


def _variable(v: Variable) -> G.Template:
    return G.Template(
        name=v.name,
        label=v.label,
        query=v.query,
        dataSource=DATASOURCE,
        multi=v.multi,
        includeAll=v.include_all,
        # "All" selects every value by regex, not by listing them (short, and stays right
        # when values appear after the page loaded).
        allValue=".*" if v.include_all else None,
        refresh=G.REFRESH_ON_TIME_RANGE_CHANGE,
        sort=G.SORT_ALPHA_ASC,
    )


def _datasource_variable() -> G.Template:
    return G.Template(
        name=DATASOURCE_VARIABLE,
        label="Data source",
        query="prometheus",
        type="datasource",
    )


def _panel_id(kind: str, title: str) -> int:
    """A panel id from its title: stable when other panels are added, moved or removed."""
    return zlib.crc32(f"{kind}:{title}".encode()) % 1_000_000 + 1


def _layout(rows: Sequence[Row]) -> list[G.Panel]:
    """Row panels and their panels with `gridPos` set: left to right, wrapped at 24 columns."""
    placed: list[G.Panel] = []
    y = 0
    for row in rows:
        placed.append(
            G.RowPanel(
                title=row.title,
                id=_panel_id("row", row.title),
                gridPos=G.GridPos(h=1, w=GRID_WIDTH, x=0, y=y),
            )
        )
        y += 1
        x, line_height = 0, 0
        for panel in row.panels:
            w, h = panel.gridPos.w, panel.gridPos.h
            if x + w > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            placed.append(
                attr.evolve(
                    panel,
                    id=_panel_id(type(panel).__name__, panel.title),
                    gridPos=G.GridPos(h=h, w=w, x=x, y=y),
                )
            )
            x += w
            line_height = max(line_height, h)
        y += line_height
    return placed


_LEGACY_DASHBOARD_KEYS = ("__inputs", "rows", "style", "sharedCrosshair", "hideControls")
_LEGACY_PANEL_KEYS = ("editable", "error", "height", "span", "minSpan")
# grafanalib's Table also writes the pre-8 table's own fields.
_LEGACY_TABLE_KEYS = ("color", "columns", "fontSize", "mappings")
# A row is not a panel with queries: Grafana's model gives it only these.
_ROW_KEYS = ("collapsed", "datasource", "gridPos", "id", "panels", "repeat", "title", "type")
_LEGACY_TARGET_KEYS = ("query", "target", "metric", "step", "intervalFactor")
_LEGACY_VARIABLE_KEYS = (
    "current",
    "useTags",
    "tagsQuery",
    "tagValuesQuery",
    "auto",
    "auto_min",
    "auto_count",
)


def _drop_none(value: Any, keep_null: bool = False) -> Any:
    """Remove null fields, except threshold steps' `value` (null there means -infinity)."""
    if isinstance(value, dict):
        return {
            k: _drop_none(v, keep_null=k == "steps")
            for k, v in value.items()
            if v is not None or (keep_null and k == "value")
        }
    if isinstance(value, list):
        return [_drop_none(v, keep_null=keep_null) for v in value]
    return value


def _modernize(data: dict[str, Any]) -> dict[str, Any]:
    for key in _LEGACY_DASHBOARD_KEYS:
        data.pop(key, None)
    data["timepicker"].pop("time_options", None)
    for panel in data["panels"]:
        if panel["type"] == "row":
            for key in set(panel) - set(_ROW_KEYS):
                del panel[key]
            continue
        for key in _LEGACY_PANEL_KEYS:
            panel.pop(key, None)
        if panel["type"] == "table":
            for key in _LEGACY_TABLE_KEYS:
                panel.pop(key, None)
            # Superseded by `cellOptions`.
            panel["fieldConfig"]["defaults"]["custom"].pop("displayMode", None)
        for target in panel.get("targets", []):
            for key in _LEGACY_TARGET_KEYS:
                target.pop(key, None)
            target["range"] = not target["instant"]
    for variable in data["templating"]["list"]:
        for key in _LEGACY_VARIABLE_KEYS:
            variable.pop(key, None)
    return _drop_none(data)


def dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    variables: Sequence[Variable],
    rows: Sequence[Row],
    tags: Sequence[str] = (),
) -> dict[str, Any]:
    """The dashboard as JSON data, with the defaults every inferwatch dashboard shares."""
    built = G.Dashboard(
        title=title,
        uid=uid,
        description=description,
        tags=[TAG, *tags],
        timezone="browser",
        refresh="30s",
        time=G.Time("now-1h", "now"),
        graphTooltip=G.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        schemaVersion=SCHEMA_VERSION,
        version=1,
        links=[
            G.DashboardLink(
                title="inferwatch",
                type="dashboards",
                tags=[TAG],
                asDropdown=True,
                includeVars=True,
                keepTime=True,
            )
        ],
        templating=G.Templating(list=[_datasource_variable(), *(_variable(v) for v in variables)]),
        panels=_layout(rows),
    )
    data = json.loads(json.dumps(built.to_json_data(), cls=DashboardEncoder))
    return _modernize(data)


def to_json(data: dict[str, Any]) -> str:
    """Deterministic JSON text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
