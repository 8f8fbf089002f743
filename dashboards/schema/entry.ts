// The Grafana types that dashboards/schema/make_schema.py turns into JSON Schemas: the
// dashboard model and the options of each panel type inferwatch uses. One alias per root,
// because the panel packages all name their types `Options` and `FieldConfig`.
import type { Dashboard } from "@grafana/schema/dist/esm/raw/dashboard/x/Dashboard_types.gen";
import type * as heatmap from "@grafana/schema/dist/esm/raw/composable/heatmap/panelcfg/x/HeatmapPanelCfg_types.gen";
import type * as stat from "@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen";
import type * as table from "@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen";
import type * as timeseries from "@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";

export type DashboardModel = Dashboard;
export type HeatmapOptions = heatmap.Options;
export type HeatmapFieldConfig = heatmap.FieldConfig;
export type StatOptions = stat.Options;
export type TableOptions = table.Options;
export type TableFieldConfig = table.FieldConfig;
export type TimeseriesOptions = timeseries.Options;
export type TimeseriesFieldConfig = timeseries.FieldConfig;
