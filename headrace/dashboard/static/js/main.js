// The page's entry point: one EventSource on /api/events feeds the Cluster, Topics and Consumer
// groups panels; the URL fragment preselects the tail, the windowed counts and the audit
// (#tail=access&aggregate=access:status:10800:ts:classes&audit=access) and follows the choices.

import {
  currentAggregate,
  presetAggregate,
  setupAggregate,
  startAggregate,
  stopAggregate,
} from "./aggregate.js";
import { setupAudit, startAudit } from "./audit.js";
import { renderCluster } from "./cluster.js";
import { $, clock, fillSelect } from "./dom.js";
import { renderGroups } from "./groups.js";
import { setupTail, startTail, stopTail } from "./tail.js";
import { renderTopics } from "./topics.js";

const STALE_MS = 3500;
const wanted = { tail: null, aggregate: null, audit: null };
const views = { tail: null, aggregate: null, audit: null };
let lastEvent = 0;
let lastTopics = null;

// The views the URL fragment asks for; they start once their topic is known.
function readFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  for (const name of Object.keys(wanted)) wanted[name] = fragment.get(name);
  if (wanted.aggregate) presetAggregate(wanted.aggregate);
}

function writeFragment() {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(views)) if (value) params.set(name, value);
  const text = params.toString().replaceAll("%3A", ":");
  history.replaceState(null, "", text ? `#${text}` : location.pathname);
}

function setLive(mode, text) {
  const badge = $("#live");
  badge.dataset.state = mode;
  badge.textContent = text;
}

function offerTopics(snapshot) {
  lastTopics = snapshot;
  const names = (snapshot.topics || []).map((t) => t.name).sort();
  fillSelect($("#tail-topic"), names, "topic…");
  fillSelect($("#agg-topic"), names, "topic…");
  fillSelect($("#audit-topic"), names, "topic…");
  // Views the fragment asked for start once their topic is known.
  if (wanted.tail && names.includes(wanted.tail)) {
    $("#tail-topic").value = wanted.tail;
    wanted.tail = null;
    startTail();
  }
  if (wanted.aggregate) {
    const topic = presetAggregate(wanted.aggregate);
    if (names.includes(topic)) {
      $("#agg-topic").value = topic;
      wanted.aggregate = null;
      startAggregate();
    }
  }
  if (wanted.audit && names.includes(wanted.audit)) {
    $("#audit-topic").value = wanted.audit;
    wanted.audit = null;
    startAudit();
  }
}

function onSnapshot(render) {
  return (event) => {
    lastEvent = Date.now();
    const snapshot = JSON.parse(event.data);
    render(snapshot);
    setLive("live", `live · ${clock(snapshot.sampled_at)} UTC`);
  };
}

function connect() {
  const source = new EventSource("api/events");
  source.addEventListener("open", () => setLive("live", "live"));
  source.addEventListener("cluster", onSnapshot(renderCluster));
  source.addEventListener(
    "topics",
    onSnapshot((snapshot) => {
      renderTopics(snapshot, {
        onPick: (name) => {
          if (!$("#tail-topic").value) $("#tail-topic").value = name;
        },
      });
      offerTopics(snapshot);
    }),
  );
  source.addEventListener("groups", onSnapshot(renderGroups));
  source.addEventListener("error", () => setLive("down", "reconnecting…"));
  // Leaving the page closes every stream: a page kept in the back/forward cache would
  // otherwise hold its connections, and a browser opens only six to one server.
  window.addEventListener("pagehide", () => {
    source.close();
    stopTail();
    stopAggregate();
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) location.reload();
  });
  setInterval(() => {
    if (lastEvent && Date.now() - lastEvent > STALE_MS && source.readyState === EventSource.OPEN) {
      setLive("stale", `no update for ${Math.round((Date.now() - lastEvent) / 1000)} s`);
    }
  }, 1000);
}

function setupNavigation() {
  for (const link of document.querySelectorAll("nav [data-panel]")) {
    link.addEventListener("click", (e) => {
      e.preventDefault();
      document
        .getElementById(link.dataset.panel)
        .scrollIntoView({ behavior: "smooth", block: "start" });
    });
  }
}

function boot() {
  readFragment();
  window.addEventListener("hashchange", () => {
    readFragment();
    if (lastTopics) offerTopics(lastTopics);
  });
  setupNavigation();
  setupTail({
    onChange: (topic) => {
      views.tail = topic;
      writeFragment();
    },
  });
  setupAggregate({
    onChange: () => {
      const v = currentAggregate();
      views.aggregate = [v.topic, v.field, v.window, v.timeField, v.classes ? "classes" : ""]
        .join(":")
        .replace(/:+$/, "");
      writeFragment();
    },
  });
  setupAudit({
    onChange: (topic) => {
      views.audit = topic;
      writeFragment();
    },
  });
  connect();
}

boot();
