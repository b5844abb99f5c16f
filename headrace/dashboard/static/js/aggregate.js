// The windowed counts panel: the dashboard's own consumer (/api/aggregate, SSE) counts JSON
// events per value of a field over a sliding window; drawn as stacked bars or one line per
// value, with a legend that hides and shows series and carries each total.

import { seriesColor, timeChart } from "./charts.js";
import { $, compact, el, number, panelStatus, rate, reportStreamErrors } from "./dom.js";

const state = { source: null, last: null, hidden: new Set(), mode: "stacked", onChange: null };

const setStatus = panelStatus("#aggregate", "#agg-status");

// Series names in a readable order: numbers and classes ascending, null last.
function order(names) {
  return [...names].sort((a, b) => {
    if (a === "null") return 1;
    if (b === "null") return -1;
    return a.localeCompare(b, "en", { numeric: true });
  });
}

function render() {
  const w = state.last;
  if (!w) return;
  const names = order(Object.keys(w.series || {}));
  const series = names.map((name) => ({ name, values: w.series[name] }));
  const chart = $("#agg-chart");
  chart.dataset.topic = w.topic;
  chart.dataset.field = w.field;
  chart.dataset.now = w.now;
  if (!w.buckets.length || !names.length) {
    chart.replaceChildren(el("p", { class: "empty" }, `no events in the last ${w.window_s} s`));
  } else {
    chart.replaceChildren(
      timeChart(w.buckets, series, {
        mode: state.mode,
        hidden: state.hidden,
        height: 260,
        width: 980,
      }),
    );
  }
  $("#agg-legend").replaceChildren(
    ...names.map((name, i) =>
      el(
        "li",
        {
          "data-series": name,
          "data-total": w.totals[name] ?? 0,
          class: state.hidden.has(name) ? "off" : "",
          title: "click to hide or show",
          onclick: () => {
            if (state.hidden.has(name)) state.hidden.delete(name);
            else state.hidden.add(name);
            render();
          },
        },
        el("span", { class: "swatch", style: `background:${seriesColor(name, i)}` }),
        el("span", { class: "mono" }, name),
        el("span", { class: "total" }, compact(w.totals[name] ?? 0)),
      ),
    ),
  );
  const agg = $("#aggregate");
  agg.dataset.events = w.events;
  agg.dataset.late = w.late;
  const summary = [
    el("span", {}, el("b", {}, number(w.events)), " events in window"),
    el("span", {}, el("b", {}, rate(w.events_per_s)), " events/s read"),
    el("span", {}, el("b", {}, `${w.step_s} s`), " buckets"),
  ];
  if (w.late)
    summary.push(
      el("span", { class: "warn" }, el("b", {}, number(w.late)), " late (older than the window)"),
    );
  $("#agg-summary").replaceChildren(...summary);
}

function close() {
  if (state.source) state.source.close();
  state.source = null;
}

export const stopAggregate = close;

export function currentAggregate() {
  return {
    topic: $("#agg-topic").value,
    field: $("#agg-field").value.trim(),
    window: $("#agg-window").value,
    timeField: $("#agg-time-field").value.trim(),
    classes: $("#agg-classes").checked,
  };
}

export function startAggregate() {
  const view = currentAggregate();
  if (!view.topic || !view.field) {
    setStatus("pick a topic and a field", "idle");
    return;
  }
  close();
  state.last = null;
  state.hidden.clear();
  const params = new URLSearchParams({ topic: view.topic, field: view.field, window: view.window });
  const step = $("#agg-step").value.trim();
  if (step) params.set("step", step);
  if (view.timeField) params.set("time_field", view.timeField);
  if (view.classes) params.set("classes", "1");
  const source = new EventSource(`api/aggregate?${params}`);
  state.source = source;
  $("#agg-chart").replaceChildren(el("p", { class: "empty" }, "rebuilding the window…"));
  $("#agg-legend").replaceChildren();
  setStatus(`counting ${view.field} in ${view.topic}…`, "connecting");
  source.addEventListener("window", (event) => {
    if (state.source !== source) return;
    state.last = JSON.parse(event.data);
    setStatus(`${view.field} in ${view.topic}, last ${state.last.window_s} s`, "live");
    render();
  });
  const current = () => state.source === source;
  reportStreamErrors(source, `api/aggregate?${params}`, current, close, setStatus);
  if (state.onChange) state.onChange(view);
}

export function setupAggregate({ onChange } = {}) {
  state.onChange = onChange;
  $("#agg-start").addEventListener("click", startAggregate);
  for (const input of ["#agg-field", "#agg-step", "#agg-time-field"]) {
    $(input).addEventListener("keydown", (e) => {
      if (e.key === "Enter") startAggregate();
    });
  }
  for (const button of document.querySelectorAll("#agg-mode button")) {
    button.addEventListener("click", () => {
      state.mode = button.dataset.mode;
      for (const b of document.querySelectorAll("#agg-mode button"))
        b.classList.toggle("on", b === button);
      $("#agg-chart").dataset.mode = state.mode;
      render();
    });
  }
  setStatus("pick a topic and a field, then Show", "idle");
}

// Preselect the panel from the URL fragment's topic:field:window:time_field:classes.
export function presetAggregate(spec) {
  const [topic, field, window, timeField, classes] = spec.split(":");
  if (topic) $("#agg-topic").dataset.want = topic;
  if (field) $("#agg-field").value = field;
  if (window) {
    const select = $("#agg-window");
    if (![...select.options].some((o) => o.value === window))
      select.append(el("option", { value: window }, `${window} s`));
    select.value = window;
  }
  $("#agg-time-field").value = timeField || "";
  $("#agg-classes").checked = classes === "classes" || classes === "1";
  return topic;
}
