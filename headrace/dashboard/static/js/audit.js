// The audit panel (the paper's section 4): per window of event time, what audited producers
// counted, what the brokers hold and what reached the warehouse, from GET /api/audit.

import { $, cell, el, errorText, number, panelStatus, rowsOr } from "./dom.js";

const REFRESH_MS = 15000;
const state = { timer: null, onChange: null };

const setStatus = panelStatus("#audit", "#audit-status");

function render(table) {
  const rows = (table.rows || [])
    .slice()
    .reverse()
    .map((r) =>
      el(
        "tr",
        {
          "data-window": r.window_start,
          "data-ok": r.ok,
          class: r.ok ? "" : r.closed ? "bad-row" : "open-row",
        },
        cell("window_start", r.window_start, r.window_start_iso, { class: "mono" }),
        cell("closed", r.closed, r.closed ? "closed" : "open", { class: r.closed ? "" : "muted" }),
        cell("produced", r.produced, number(r.produced), { class: "num" }),
        cell("brokered", r.brokered, number(r.brokered), { class: "num" }),
        cell("loaded", r.loaded, r.loaded === null ? "—" : number(r.loaded), { class: "num" }),
        cell("unaudited", r.unaudited, number(r.unaudited), { class: "num muted" }),
        cell("missing", r.missing, number(r.missing), { class: `num ${r.missing ? "bad" : ""}` }),
        cell("duplicated", r.duplicated, number(r.duplicated), {
          class: `num ${r.duplicated ? "bad" : ""}`,
        }),
        el(
          "td",
          { "data-field": "ok", "data-value": r.ok },
          el("span", { class: `dot ${r.ok ? "ok" : r.closed ? "bad" : "idle"}` }),
          r.ok ? "ok" : r.closed ? "mismatch" : "pending",
        ),
      ),
    );
  $("#audit-body").replaceChildren(...rowsOr(rows, 9, "no windows yet"));
  const bad = (table.rows || []).filter((r) => r.closed && !r.ok).length;
  setStatus(
    bad
      ? `${bad} closed windows do not match`
      : `every closed window matches (window ${table.window_ms / 1000} s, grace ${table.grace_ms / 1000} s)`,
    bad ? "mismatch" : "ok",
  );
}

async function refresh() {
  const topic = $("#audit-topic").value;
  if (!topic) return;
  let response;
  try {
    response = await fetch(`api/audit?${new URLSearchParams({ topic })}`);
  } catch (_) {
    setStatus("the dashboard is not reachable", "error");
    return;
  }
  if (topic !== $("#audit-topic").value) return;
  if (response.status === 404) {
    $("#audit-body").replaceChildren();
    setStatus(`Audit not available for ${topic}: ${await errorText(response)}`, "unavailable");
    return;
  }
  if (!response.ok) {
    setStatus(`Audit failed: ${await errorText(response)}`, "error");
    return;
  }
  render(await response.json());
}

export function startAudit() {
  clearInterval(state.timer);
  const topic = $("#audit-topic").value;
  if (!topic) return;
  setStatus(`auditing ${topic}…`, "loading");
  refresh();
  state.timer = setInterval(refresh, REFRESH_MS);
  if (state.onChange) state.onChange(topic);
}

export function setupAudit({ onChange } = {}) {
  state.onChange = onChange;
  $("#audit-topic").addEventListener("change", startAudit);
  $("#audit-refresh").addEventListener("click", startAudit);
  setStatus("pick a topic", "idle");
}
