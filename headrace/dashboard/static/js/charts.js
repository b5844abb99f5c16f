// Charts drawn as SVG by hand: a sparkline for rates and lag, and a time chart with axes for
// history and windowed counts (stacked bars or one line per series). Every mark carries its
// numbers as data-* attributes, so tools and tests read values rather than pixels.

import { clock, compact } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

const PALETTE = ["#3b6ea8", "#5d9c8f", "#c28b2c", "#8467a8", "#4f8f3a", "#b8577d", "#6b7a8f"];
const STATUS = { 1: "#7d8fa3", 2: "#4f8f6a", 3: "#5b8fb0", 4: "#c9962e", 5: "#c2453d" };

// A stable colour per series: HTTP statuses and their classes by meaning, others by name.
export function seriesColor(name, index) {
  const m = /^([1-5])(\d\d|xx)$/.exec(name);
  if (m) return STATUS[m[1]];
  if (name === "null") return "#9aa5b1";
  return PALETTE[index % PALETTE.length];
}

// A small line with a shaded area under it; `values` oldest first.
export function sparkline(values, { width = 120, height = 28, label = "" } = {}) {
  const clean = values.map((v) => (v === null || v === undefined ? 0 : v));
  const max = Math.max(1e-9, ...clean);
  const step = clean.length > 1 ? width / (clean.length - 1) : width;
  const points = clean.map((v, i) => [i * step, height - 2 - (v / max) * (height - 4)]);
  const line = points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  const root = svg("svg", {
    class: "sparkline",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": label,
    "data-points": clean.length,
    "data-last": clean.length ? clean[clean.length - 1] : "",
    "data-max": clean.length ? max : "",
  });
  if (points.length > 1) {
    const area = `0,${height} ${line} ${points[points.length - 1][0].toFixed(1)},${height}`;
    root.append(svg("polygon", { points: area, class: "spark-area" }));
    root.append(svg("polyline", { points: line, class: "spark-line" }));
  }
  return root;
}

// A round step for about four grid lines over 0..max: 1, 2, 2.5 or 5 times a power of ten.
function niceStep(max) {
  if (max <= 0) return 1;
  const rough = max / 4;
  const exp = 10 ** Math.floor(Math.log10(rough));
  for (const m of [1, 2, 2.5, 5]) if (m * exp >= rough) return m * exp;
  return 10 * exp;
}

function timeLabel(ms, spanMs) {
  const text = clock(ms);
  return spanMs >= 2 * 3600 * 1000 ? text.slice(0, 5) : text;
}

// A time chart: `times` (ms, oldest first, evenly spaced) and `series` [{name, values}].
// mode "stacked" draws stacked bars, "lines" one line per series. `hidden` names series
// left out. Returns the <svg>.
export function timeChart(times, series, opts = {}) {
  const { width = 760, height = 240, mode = "stacked", hidden = new Set(), unit = "" } = opts;
  const pad = { left: 48, right: 12, top: 10, bottom: 24 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const shown = series.filter((s) => !hidden.has(s.name));
  const n = times.length;
  let max = 0;
  for (let i = 0; i < n; i += 1) {
    if (mode === "stacked")
      max = Math.max(
        max,
        shown.reduce((a, s) => a + (s.values[i] || 0), 0),
      );
    else for (const s of shown) max = Math.max(max, s.values[i] || 0);
  }
  const step = niceStep(max);
  const lines = Math.max(1, Math.ceil(max / step));
  const top = step * lines;
  const slot = n > 0 ? plotW / n : plotW;
  const x = (i) => pad.left + i * slot;
  const y = (v) => pad.top + plotH - (v / top) * plotH;
  const root = svg("svg", {
    class: `timechart ${mode}`,
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "none",
    "data-mode": mode,
    "data-buckets": n,
    "data-max": max,
  });

  const grid = svg("g", { class: "grid" });
  for (let k = 0; k <= lines; k += 1) {
    const v = step * k;
    grid.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }));
    const label = svg("text", { x: pad.left - 6, y: y(v) + 4, class: "axis-y" });
    label.textContent = `${compact(v)}${unit}`;
    grid.append(label);
  }
  const span = n > 1 ? times[n - 1] - times[0] : 0;
  const ticks = Math.min(6, n);
  for (let k = 0; k < ticks; k += 1) {
    const i = Math.round((k * (n - 1)) / Math.max(1, ticks - 1));
    // The first and last labels keep inside the plot's edges.
    const edge = ticks > 1 && k === 0 ? "start" : ticks > 1 && k === ticks - 1 ? "end" : "middle";
    const at = edge === "start" ? x(i) : edge === "end" ? x(i) + slot : x(i) + slot / 2;
    const label = svg("text", { x: at, y: height - 6, class: "axis-x", "text-anchor": edge });
    label.textContent = timeLabel(times[i], span);
    grid.append(label);
  }
  root.append(grid);

  const marks = svg("g", { class: "marks" });
  if (mode === "stacked") {
    const base = new Array(n).fill(0);
    shown.forEach((s) => {
      const color = seriesColor(s.name, series.indexOf(s));
      const g = svg("g", { class: "series", "data-series": s.name, fill: color });
      for (let i = 0; i < n; i += 1) {
        const v = s.values[i] || 0;
        const rect = svg("rect", {
          x: x(i) + Math.min(1, slot * 0.1),
          width: Math.max(0.5, slot - Math.min(2, slot * 0.2)),
          y: y(base[i] + v),
          height: Math.max(0, y(base[i]) - y(base[i] + v)),
          "data-bucket": times[i],
          "data-count": v,
        });
        const tip = svg("title");
        tip.textContent = `${s.name} at ${clock(times[i])}: ${v}`;
        rect.append(tip);
        g.append(rect);
        base[i] += v;
      }
      marks.append(g);
    });
  } else {
    shown.forEach((s) => {
      const color = seriesColor(s.name, series.indexOf(s));
      const g = svg("g", { class: "series", "data-series": s.name, stroke: color, fill: color });
      const pts = s.values.map((v, i) => `${(x(i) + slot / 2).toFixed(1)},${y(v || 0).toFixed(1)}`);
      g.append(svg("polyline", { points: pts.join(" "), fill: "none", "stroke-width": 1.8 }));
      s.values.forEach((v, i) => {
        const dot = svg("circle", {
          cx: x(i) + slot / 2,
          cy: y(v || 0),
          r: v ? 2 : 0,
          "data-bucket": times[i],
          "data-count": v || 0,
        });
        const tip = svg("title");
        tip.textContent = `${s.name} at ${clock(times[i])}: ${v || 0}`;
        dot.append(tip);
        g.append(dot);
      });
      marks.append(g);
    });
  }
  root.append(marks);
  root.append(
    svg("line", {
      class: "axis",
      x1: pad.left,
      x2: width - pad.right,
      y1: pad.top + plotH,
      y2: pad.top + plotH,
    }),
  );
  return root;
}
