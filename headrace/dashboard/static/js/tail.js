// The Live tail panel: one EventSource on /api/tail for the chosen topic, start point and
// filter. Pause closes the stream and remembers each partition's next offset; resume opens it
// again from those positions (from=positions:p=o,...), so nothing is shown twice or missed.

import { $, clock, el, number, panelStatus, reportStreamErrors } from "./dom.js";

const MAX_ROWS = 300;
const FLUSH_MS = 100;

const state = {
  source: null,
  topic: "",
  filter: "",
  positions: {}, // partition -> next offset, from the messages shown and the status events
  pending: [],
  received: 0,
  paused: false,
  onChange: null,
};

const showStatus = panelStatus("#tail", "#tail-status");

function setStatus(text, mode) {
  showStatus(text, mode);
  $("#tail-pause").textContent = mode === "paused" ? "Resume" : "Pause";
  $("#tail-pause").disabled = mode === "idle" || mode === "error";
}

// The text with every occurrence of the filter marked.
function marked(text, filter) {
  if (!filter || !text.includes(filter)) return [text];
  const out = [];
  text.split(filter).forEach((part, i) => {
    if (i > 0) out.push(el("mark", {}, filter));
    out.push(part);
  });
  return out;
}

function row(m) {
  const pretty =
    m.json !== null && m.json !== undefined ? JSON.stringify(m.json, null, 2) : m.value;
  const headers = (m.headers || []).map(([k, v]) => `${k}=${v === null ? "∅" : v}`).join(" ");
  return el(
    "tr",
    {
      class: "tail-row",
      "data-partition": m.partition,
      "data-offset": m.offset,
      "data-timestamp": m.timestamp,
      "data-key": m.key === null ? null : m.key,
      "data-json": m.json !== null && m.json !== undefined,
    },
    el(
      "td",
      { class: "mono muted", title: new Date(m.timestamp).toISOString() },
      clock(m.timestamp, true),
    ),
    el("td", { class: "num mono" }, `${m.partition}`),
    el("td", { class: "num mono" }, number(m.offset)),
    el(
      "td",
      { class: "mono key" },
      m.key === null ? el("span", { class: "muted" }, "null") : marked(m.key, state.filter),
    ),
    el(
      "td",
      { class: "value" },
      el(
        "pre",
        { class: m.json !== null && m.json !== undefined ? "json" : "" },
        ...(pretty === null ? ["null"] : marked(pretty, state.filter)),
      ),
      headers ? el("div", { class: "headers mono muted" }, headers) : null,
    ),
  );
}

function flush() {
  if (!state.pending.length) return;
  const body = $("#tail-rows");
  const fragment = document.createDocumentFragment();
  for (const m of state.pending.reverse()) fragment.append(row(m)); // newest on top
  state.pending = [];
  body.prepend(fragment);
  while (body.children.length > MAX_ROWS) body.lastElementChild.remove();
  $("#tail-empty").hidden = body.children.length > 0;
}

function advance(partition, next) {
  const key = String(partition);
  if (state.positions[key] === undefined || next > state.positions[key])
    state.positions[key] = next;
}

function fromParameter() {
  const kind = $("#tail-from").value;
  const value = $("#tail-from-value").value.trim();
  if (kind === "offset") return value || "0";
  if (kind === "time") {
    const parsed = new Date(
      value.endsWith("Z") || /[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`,
    );
    return Number.isNaN(parsed.getTime()) ? value : parsed.toISOString().replace(".000Z", "Z");
  }
  return kind;
}

function open(from) {
  close();
  const params = new URLSearchParams({ topic: state.topic, from });
  if (state.filter) params.set("filter", state.filter);
  const source = new EventSource(`api/tail?${params}`);
  state.source = source;
  setStatus(`connecting to ${state.topic}…`, "connecting");
  source.addEventListener("open", () => {
    if (state.source === source) setStatus(`following ${state.topic}`, "live");
  });
  source.addEventListener("message", (event) => {
    const m = JSON.parse(event.data);
    const known = state.positions[String(m.partition)];
    if (known !== undefined && m.offset < known) return; // already shown before a pause
    advance(m.partition, m.offset + 1);
    state.received += 1;
    $("#tail").dataset.received = state.received;
    state.pending.push(m);
  });
  source.addEventListener("status", (event) => {
    const s = JSON.parse(event.data);
    for (const [p, next] of Object.entries(s.positions || {})) advance(p, next);
    const parts = [`${s.partitions} partitions`, `${number(state.received)} shown`];
    if (s.skipped) parts.push(`${number(s.skipped)} filtered out`);
    if (s.dropped) parts.push(`${number(s.dropped)} dropped (over 200/s)`);
    $("#tail-counts").textContent = parts.join(" · ");
  });
  reportStreamErrors(source, `api/tail?${params}`, () => state.source === source, close, setStatus);
}

function close() {
  if (state.source) state.source.close();
  state.source = null;
}

export function startTail() {
  const topic = $("#tail-topic").value;
  if (!topic) {
    setStatus("pick a topic", "idle");
    return;
  }
  state.topic = topic;
  state.filter = $("#tail-filter").value;
  state.positions = {};
  state.received = 0;
  state.paused = false;
  $("#tail-rows").replaceChildren();
  $("#tail-empty").hidden = false;
  $("#tail-counts").textContent = "";
  open(fromParameter());
  if (state.onChange) state.onChange(topic);
}

function togglePause() {
  if (!state.topic) return;
  if (state.paused) {
    state.paused = false;
    const entries = Object.entries(state.positions);
    open(entries.length ? `positions:${entries.map(([p, o]) => `${p}=${o}`).join(",")}` : "latest");
  } else {
    state.paused = true;
    close();
    flush();
    setStatus(`paused on ${state.topic}`, "paused");
  }
}

export function setupTail({ onChange } = {}) {
  state.onChange = onChange;
  $("#tail-start").addEventListener("click", startTail);
  $("#tail-pause").addEventListener("click", togglePause);
  $("#tail-clear").addEventListener("click", () => {
    $("#tail-rows").replaceChildren();
    $("#tail-empty").hidden = false;
  });
  $("#tail-filter").addEventListener("keydown", (e) => {
    if (e.key === "Enter") startTail();
  });
  $("#tail-from").addEventListener("change", () => {
    const kind = $("#tail-from").value;
    const input = $("#tail-from-value");
    input.hidden = kind === "latest" || kind === "earliest";
    input.placeholder = kind === "time" ? "2026-12-07T14:00:00Z" : "offset";
    if (kind === "time" && !input.value)
      input.value = new Date(Date.now() - 600000).toISOString().slice(0, 19) + "Z";
  });
  setInterval(flush, FLUSH_MS);
  setStatus("pick a topic and press Follow", "idle");
}

export function stopTail() {
  close();
}
