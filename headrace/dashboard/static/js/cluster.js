// The Cluster panel: ZooKeeper, the controller, partition health and one row per broker,
// from the `cluster` snapshot (GET /api/cluster, or the `cluster` event of /api/events).

import { $, cell, el, number, rowsOr } from "./dom.js";

function figure(id, label, value, tone = "") {
  return el(
    "div",
    { class: `figure ${tone}`, id, "data-value": value === null ? "" : value },
    el("span", { class: "figure-value" }, value === null ? "—" : number(value)),
    el("span", { class: "figure-label" }, label),
  );
}

export function renderCluster(snapshot) {
  const zk = snapshot.zookeeper || { connect: "", state: "lost" };
  const parts = snapshot.partitions || { total: 0, offline: 0, under_replicated: 0 };
  const brokers = snapshot.brokers || [];
  const up = brokers.filter((b) => b.up).length;

  $("#cluster-figures").replaceChildren(
    figure(
      "cluster-brokers-up",
      `of ${brokers.length} brokers up`,
      up,
      up < brokers.length ? "bad" : "good",
    ),
    figure(
      "cluster-controller",
      "controller",
      snapshot.controller,
      snapshot.controller === null ? "bad" : "",
    ),
    figure("cluster-partitions", "partitions", parts.total),
    figure(
      "cluster-under-replicated",
      "under-replicated",
      parts.under_replicated,
      parts.under_replicated ? "warn" : "good",
    ),
    figure("cluster-offline", "offline", parts.offline, parts.offline ? "bad" : "good"),
  );

  const zkBadge = $("#zk-state");
  zkBadge.textContent = `ZooKeeper ${zk.state}`;
  zkBadge.dataset.state = zk.state;
  zkBadge.title = zk.connect;
  $("#cluster-id").textContent = snapshot.cluster_id ? `cluster ${snapshot.cluster_id}` : "";

  const rows = brokers.map((b) => {
    const address = b.host === null ? null : `${b.host}:${b.port}`;
    return el(
      "tr",
      { "data-broker": b.id, "data-up": b.up, class: b.up ? "" : "down" },
      cell("id", b.id, String(b.id)),
      el(
        "td",
        { "data-field": "up", "data-value": b.up },
        el("span", { class: `dot ${b.up ? "ok" : "bad"}` }),
        b.up ? "up" : "down",
        b.controller ? el("span", { class: "tag" }, "controller") : null,
      ),
      cell("address", address, undefined, { class: "mono" }),
      cell("rack", b.rack),
      cell("leader_partitions", b.leader_partitions, number(b.leader_partitions), { class: "num" }),
      cell("replica_partitions", b.replica_partitions, number(b.replica_partitions), {
        class: "num",
      }),
      cell("under_replicated", b.under_replicated, number(b.under_replicated), {
        class: `num ${b.under_replicated ? "warn" : ""}`,
      }),
    );
  });
  $("#brokers-body").replaceChildren(...rowsOr(rows, 7, "no brokers"));
}
