// Small DOM and formatting helpers shared by the panels: building elements, numbers, bytes,
// durations and times as an operator reads them.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (name.startsWith("data-"))
      node.setAttribute(name, String(value)); // "true" / "false" too
    else if (value === false) continue;
    else if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A table cell that carries its raw value for tests and tools: data-field and data-value.
export function cell(field, value, text, attrs = {}) {
  const shown = text === undefined ? (value === null ? "—" : String(value)) : text;
  return el(
    "td",
    { "data-field": field, "data-value": value === null ? "" : value, ...attrs },
    shown,
  );
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function number(n, digits = 0) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

export function rate(n) {
  if (n === null || n === undefined) return "—";
  if (n === 0) return "0";
  if (n < 10) return number(n, 1);
  return compact(n);
}

export function compact(n) {
  if (n === null || n === undefined) return "—";
  const abs = Math.abs(n);
  for (const [size, unit] of [
    [1e9, "G"],
    [1e6, "M"],
    [1e3, "k"],
  ]) {
    if (abs >= size)
      return `${abs >= size * 100 ? (n / size).toFixed(0) : Number((n / size).toFixed(2))}${unit}`;
  }
  return number(n, Number.isInteger(n) ? 0 : 1);
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 || value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function duration(ms) {
  if (ms === null || ms === undefined || ms < 0) return "—";
  const parts = [
    [86400000, "d"],
    [3600000, "h"],
    [60000, "min"],
    [1000, "s"],
  ];
  for (const [size, unit] of parts) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${unit}`;
  }
  for (const [size, unit] of parts) {
    if (ms >= size) return `${(ms / size).toFixed(1)} ${unit}`;
  }
  return `${ms} ms`;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

// Times are shown in UTC, as the warehouse's hours and the audit's windows are.
export function clock(ms, withMillis = false) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms);
  const base = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  return withMillis ? `${base}.${pad(d.getUTCMilliseconds(), 3)}` : base;
}

export function dateTime(ms) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${clock(ms)}`;
}

export function ago(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return "—";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} d ago`;
}

// Fill a <select> with options, keeping the current choice when it is still offered.
export function fillSelect(select, values, placeholder) {
  const current = select.value || select.dataset.want || "";
  const wanted = [...values];
  const existing = [...select.options].map((o) => o.value);
  const target = placeholder === undefined ? wanted : ["", ...wanted];
  if (existing.length === target.length && existing.every((v, i) => v === target[i])) return;
  select.replaceChildren(
    ...(placeholder === undefined ? [] : [el("option", { value: "" }, placeholder)]),
    ...wanted.map((v) => el("option", { value: v }, v)),
  );
  if (target.includes(current)) select.value = current;
}

// A message for a failed fetch: the API's {"error": ...} body when there is one.
export async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (_) {
    // not JSON: fall through to the status line
  }
  return `HTTP ${response.status} ${response.statusText}`.trim();
}

// A header row; the names in `numeric` are right-aligned like their numbers.
export function headRow(names, numeric = []) {
  return el(
    "tr",
    {},
    ...names.map((h) => el("th", { class: numeric.includes(h) ? "num" : null }, h)),
  );
}

// A panel's status setter: the status line's text, and data-state on it and on the panel.
export function panelStatus(panelSelector, statusSelector) {
  return (text, mode) => {
    const status = $(statusSelector);
    status.textContent = text;
    status.dataset.state = mode;
    $(panelSelector).dataset.state = mode;
  };
}

// Report an event stream's failures through `report(text, mode)`: the server's own "error"
// event (it gave up on the stream), a refused stream (its {"error"} fetched again from `url`)
// or a lost connection the browser is retrying. `current()` says whether the stream is still
// the panel's; `stop()` closes it.
export function reportStreamErrors(source, url, current, stop, report) {
  source.addEventListener("error", async (event) => {
    if (!current()) return;
    if (event.data) {
      stop();
      report(`stopped: ${JSON.parse(event.data).error}`, "error");
    } else if (source.readyState === EventSource.CLOSED) {
      stop();
      const response = await fetch(url, { signal: AbortSignal.timeout(3000) }).catch(() => null);
      report(
        `stopped: ${response ? await errorText(response) : "the dashboard is not reachable"}`,
        "error",
      );
    } else {
      report("reconnecting…", "connecting");
    }
  });
}

// Open or close a table's detail row: the set of open keys, and the panel drawn again.
export function toggler(open, key, redraw) {
  return () => {
    if (open.has(key)) open.delete(key);
    else open.add(key);
    redraw();
  };
}

// Table rows, or one row saying there are none.
export function rowsOr(rows, columns, emptyText) {
  return rows.length
    ? rows
    : [el("tr", {}, el("td", { colspan: columns, class: "empty" }, emptyText))];
}

// A detail table: its header (names in `numeric` right-aligned) and rows, or a row saying none.
export function innerTable(names, numeric, rows, emptyText) {
  return el(
    "table",
    { class: "inner" },
    el("thead", {}, headRow(names, numeric)),
    el("tbody", {}, ...rowsOr(rows, names.length, emptyText)),
  );
}
