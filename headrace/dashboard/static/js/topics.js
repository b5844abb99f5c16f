// The Topics panel: one row per topic (rates with their history, size, retention, partitions,
// in-sync replicas); a click opens the topic's partitions (leader, replicas, ISR, offsets,
// per-partition rate with a history kept by the page since it opened).

import { sparkline, timeChart } from "./charts.js";
import { $, bytes, cell, duration, el, innerTable, number, rate, rowsOr, toggler } from "./dom.js";

const expanded = new Set();
const partitionHistory = new Map(); // "topic/partition" -> [messages_per_s, ...]
const PARTITION_SAMPLES = 120;

function remember(topic) {
  for (const p of topic.partition_detail || []) {
    const key = `${topic.name}/${p.partition}`;
    const samples = partitionHistory.get(key) || [];
    samples.push(p.messages_per_s || 0);
    if (samples.length > PARTITION_SAMPLES) samples.splice(0, samples.length - PARTITION_SAMPLES);
    partitionHistory.set(key, samples);
  }
}

function retention(topic) {
  const parts = [];
  if (topic.retention_ms !== null && topic.retention_ms >= 0)
    parts.push(duration(topic.retention_ms));
  if (topic.retention_bytes !== null && topic.retention_bytes >= 0)
    parts.push(bytes(topic.retention_bytes));
  return parts.length ? parts.join(" · ") : "forever";
}

function isrSummary(topic) {
  const detail = topic.partition_detail || [];
  const under = detail.filter((p) => (p.isr || []).length < (p.replicas || []).length).length;
  const offline = detail.filter((p) => (p.offline || []).length > 0 || p.leader < 0).length;
  return { under, offline };
}

function partitionTable(topic) {
  const rows = (topic.partition_detail || []).map((p) => {
    const inSync = new Set(p.isr || []);
    const offline = new Set(p.offline || []);
    const replicas = el(
      "td",
      { "data-field": "replicas", "data-value": (p.replicas || []).join(",") },
      ...(p.replicas || []).map((r) =>
        el(
          "span",
          {
            class: `replica ${offline.has(r) ? "offline" : inSync.has(r) ? "insync" : "lagging"}`,
            title: offline.has(r) ? "offline" : inSync.has(r) ? "in sync" : "out of sync",
          },
          String(r),
        ),
      ),
    );
    const key = `${topic.name}/${p.partition}`;
    return el(
      "tr",
      { "data-topic": topic.name, "data-partition": p.partition },
      cell("partition", p.partition, String(p.partition), { class: "num" }),
      cell("leader", p.leader, p.leader < 0 ? "none" : String(p.leader), {
        class: `num ${p.leader < 0 ? "bad" : ""}`,
      }),
      cell("leader_epoch", p.leader_epoch, undefined, { class: "num" }),
      replicas,
      cell("isr", (p.isr || []).join(","), (p.isr || []).join(", ") || "—"),
      cell("log_start_offset", p.log_start_offset, number(p.log_start_offset), { class: "num" }),
      cell("log_end_offset", p.log_end_offset, number(p.log_end_offset), { class: "num" }),
      cell("size_bytes", p.size_bytes, bytes(p.size_bytes), { class: "num" }),
      cell("messages_per_s", p.messages_per_s, rate(p.messages_per_s), { class: "num" }),
      el(
        "td",
        { class: "chart-cell" },
        sparkline(partitionHistory.get(key) || [], { width: 100, height: 20 }),
      ),
    );
  });
  const names = ["partition", "leader", "epoch", "replicas", "ISR", "start", "end", "size"];
  names.push("msg/s", "since opened");
  const numeric = ["partition", "leader", "epoch", "start", "end", "size", "msg/s"];
  return innerTable(names, numeric, rows, "no partitions");
}

function detailRow(topic, columns) {
  const history = topic.history || [];
  const chart = history.length
    ? timeChart(
        history.map((h) => h.t),
        [{ name: "messages/s", values: history.map((h) => h.messages_per_s) }],
        { mode: "lines", height: 150, width: 900 },
      )
    : el("p", { class: "empty" }, "no history yet");
  return el(
    "tr",
    { class: "detail", "data-detail-topic": topic.name },
    el(
      "td",
      { colspan: columns },
      el(
        "div",
        { class: "detail-chart" },
        el("h4", {}, `${topic.name}: messages/s, last ${history.length} s`),
        chart,
      ),
      partitionTable(topic),
    ),
  );
}

export function renderTopics(snapshot, { onPick } = {}) {
  const topics = [...(snapshot.topics || [])].sort((a, b) => a.name.localeCompare(b.name));
  const columns = 11;
  const rows = [];
  for (const topic of topics) {
    remember(topic);
    const open = expanded.has(topic.name);
    const { under, offline } = isrSummary(topic);
    const history = (topic.history || []).map((h) => h.messages_per_s);
    const internal = topic.name.startsWith("_");
    rows.push(
      el(
        "tr",
        {
          class: `topic-row ${open ? "open" : ""}`,
          id: `topic-${topic.name}`,
          "data-topic": topic.name,
          onclick: () => {
            toggler(expanded, topic.name, () => renderTopics(snapshot, { onPick }))();
            if (onPick) onPick(topic.name);
          },
        },
        el(
          "td",
          { "data-field": "name", "data-value": topic.name },
          el("span", { class: "caret" }, open ? "▾" : "▸"),
          el("span", { class: "mono" }, topic.name),
          internal ? el("span", { class: "tag muted" }, "internal") : null,
        ),
        cell("partitions", topic.partitions, number(topic.partitions), { class: "num" }),
        cell("replication_factor", topic.replication_factor, String(topic.replication_factor), {
          class: "num",
        }),
        el(
          "td",
          {
            "data-field": "isr",
            "data-value": under,
            class: under || offline ? "warn" : "ok-text",
          },
          offline ? `${offline} offline` : under ? `${under} under-replicated` : "all in sync",
        ),
        cell("messages_per_s", topic.messages_per_s, rate(topic.messages_per_s), {
          class: "num strong",
        }),
        el(
          "td",
          { class: "chart-cell" },
          sparkline(history, { label: `${topic.name} messages/s` }),
        ),
        cell(
          "bytes_per_s",
          topic.bytes_per_s,
          topic.bytes_per_s === null ? "—" : `${bytes(topic.bytes_per_s)}/s`,
          {
            class: "num",
          },
        ),
        cell("end_offset_total", topic.end_offset_total, number(topic.end_offset_total), {
          class: "num",
        }),
        cell("size_bytes", topic.size_bytes, bytes(topic.size_bytes), { class: "num" }),
        cell("retention", topic.retention_ms, retention(topic)),
        cell("cleanup_policy", topic.cleanup_policy),
      ),
    );
    if (open) rows.push(detailRow(topic, columns));
  }
  $("#topics-body").replaceChildren(...rowsOr(rows, columns, "no topics yet"));
  $("#topics-count").textContent = `${topics.length} topics`;
}
