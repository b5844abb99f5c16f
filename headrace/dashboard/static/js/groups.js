// The Consumer groups panel: the paper's ZooKeeper groups, Kafka clients' groups and the
// loaders in one table (state, members, lag and its trend); a click opens the lag per
// partition with its owner, and for a loader its last run and the hours marked _SUCCESS.

import { sparkline } from "./charts.js";
import { $, ago, cell, dateTime, el, innerTable, number, rowsOr, toggler } from "./dom.js";

const expanded = new Set();
const KIND_LABEL = { zookeeper: "ZooKeeper", kafka: "Kafka", loader: "loader" };

function partitionTable(group) {
  const rows = (group.partitions || []).map((p) =>
    el(
      "tr",
      { "data-group": group.name, "data-topic": p.topic, "data-partition": p.partition },
      cell("topic", p.topic, undefined, { class: "mono" }),
      cell("partition", p.partition, String(p.partition), { class: "num" }),
      cell("committed", p.committed, number(p.committed), { class: "num" }),
      cell("log_end_offset", p.log_end_offset, number(p.log_end_offset), { class: "num" }),
      cell("lag", p.lag, number(p.lag), { class: `num strong ${p.lag ? "warn" : ""}` }),
      cell("owner", p.owner, p.owner || "—", { class: "mono" }),
    ),
  );
  return innerTable(
    ["topic", "partition", "committed", "end", "lag", "owner"],
    ["partition", "committed", "end", "lag"],
    rows,
    "no committed offsets",
  );
}

// The hours marked _SUCCESS, one strip of 24 cells per day, newest day first.
function successHours(hours) {
  const days = new Map();
  for (const h of hours) {
    const [day, hour] = h.split("T");
    if (!days.has(day)) days.set(day, new Set());
    days.get(day).add(Number(hour));
  }
  const strips = [...days.keys()]
    .sort()
    .reverse()
    .slice(0, 7)
    .map((day) =>
      el(
        "div",
        { class: "hours", "data-day": day },
        el("span", { class: "day mono" }, day),
        ...Array.from({ length: 24 }, (_, hour) => {
          const done = days.get(day).has(hour);
          const label = `${day}T${String(hour).padStart(2, "0")}`;
          return el("span", {
            class: `hour ${done ? "done" : ""}`,
            title: `${label}${done ? " _SUCCESS" : ""}`,
            "data-hour": done ? label : null,
          });
        }),
      ),
    );
  return el(
    "div",
    { class: "success-hours", "data-count": hours.length },
    el("h4", {}, `Event hours marked _SUCCESS (${hours.length})`),
    ...(strips.length ? strips : [el("p", { class: "empty" }, "none yet")]),
  );
}

function loaderBlock(loader) {
  const run = loader.last_run;
  const facts = run
    ? [
        [
          "last run",
          `${dateTime(run.finished_at)} UTC (${ago(run.finished_at)})`,
          "finished_at",
          run.finished_at,
        ],
        ["rows", number(run.rows), "rows", run.rows],
        ["dead letters", number(run.dead_letters), "dead_letters", run.dead_letters],
        ["files", number(run.files), "files", run.files],
        ["took", `${number(run.seconds, 1)} s`, "seconds", run.seconds],
      ]
    : [["last run", "never", "finished_at", ""]];
  if (loader.warehouse) facts.push(["warehouse", loader.warehouse, "warehouse", loader.warehouse]);
  return el(
    "div",
    { class: "loader" },
    el(
      "dl",
      { class: "facts" },
      ...facts.flatMap(([label, text, field, value]) => [
        el("dt", {}, label),
        el(
          "dd",
          {
            "data-field": field,
            "data-value": value,
            class: field === "dead_letters" && value ? "warn" : "",
          },
          text,
        ),
      ]),
    ),
    successHours(loader.success_hours || []),
  );
}

function detailRow(group, columns) {
  const members = (group.members || []).map((m) =>
    el("li", { class: "mono" }, m.id, m.host ? ` @ ${m.host}` : ""),
  );
  return el(
    "tr",
    { class: "detail", "data-detail-group": group.name },
    el(
      "td",
      { colspan: columns },
      el(
        "div",
        { class: "detail-grid" },
        el("div", {}, partitionTable(group)),
        el(
          "div",
          {},
          group.loader ? loaderBlock(group.loader) : null,
          el("h4", {}, `Members (${members.length})`),
          members.length
            ? el("ul", { class: "members" }, ...members)
            : el("p", { class: "empty" }, "none"),
        ),
      ),
    ),
  );
}

function stateTone(state) {
  if (state === "Stable" || state === "Running") return "ok";
  if (state === "Empty" || state === "Idle") return "idle";
  if (state === "Dead") return "bad";
  return "warn";
}

export function renderGroups(snapshot) {
  const groups = [...(snapshot.groups || [])].sort(
    (a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name),
  );
  const columns = 8;
  const rows = [];
  for (const group of groups) {
    const open = expanded.has(group.name);
    const trend = (group.lag_history || []).map((h) => h.lag);
    rows.push(
      el(
        "tr",
        {
          class: `group-row ${open ? "open" : ""}`,
          id: `group-${group.name}`,
          "data-group": group.name,
          "data-kind": group.kind,
          onclick: toggler(expanded, group.name, () => renderGroups(snapshot)),
        },
        el(
          "td",
          { "data-field": "name", "data-value": group.name },
          el("span", { class: "caret" }, open ? "▾" : "▸"),
          el("span", { class: "mono" }, group.name),
        ),
        el(
          "td",
          { "data-field": "kind", "data-value": group.kind },
          el("span", { class: `kind ${group.kind}` }, KIND_LABEL[group.kind] || group.kind),
        ),
        el(
          "td",
          { "data-field": "state", "data-value": group.state },
          el("span", { class: `state ${stateTone(group.state)}` }, group.state),
        ),
        cell("topics", (group.topics || []).join(","), (group.topics || []).join(", ") || "—", {
          class: "mono",
        }),
        cell("members", (group.members || []).length, number((group.members || []).length), {
          class: "num",
        }),
        cell("lag", group.lag, number(group.lag), {
          class: `num strong ${group.lag ? "warn" : ""}`,
        }),
        el("td", { class: "chart-cell" }, sparkline(trend, { label: `${group.name} lag` })),
        cell(
          "last_run",
          group.loader && group.loader.last_run ? group.loader.last_run.finished_at : null,
          group.loader
            ? group.loader.last_run
              ? ago(group.loader.last_run.finished_at)
              : "never"
            : "",
        ),
      ),
    );
    if (open) rows.push(detailRow(group, columns));
  }
  $("#groups-body").replaceChildren(...rowsOr(rows, columns, "no consumer groups yet"));
  $("#groups-count").textContent = `${groups.length} groups`;
}
