"""Made-up web access logs for the demo: JSON lines, one time-ordered file per web server.

Each line has ``ts`` (ISO-8601 UTC), ``ip``, ``method``, ``path``, ``status``, ``bytes``,
``latency_ms``, ``user_agent`` and ``host``; a few clients are busy, and a twelve-minute
incident (a bad deploy) brings 5xx errors and slow answers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import random
import time
from pathlib import Path

HOURS = 3  # the generated events cover the last HOURS hours

PAGES = (
    ["/"] * 20
    + ["/products"] * 10
    + ["/cart"] * 6
    + ["/search"] * 8
    + ["/login"] * 3
    + ["/static/app.js"] * 8
    + ["/static/app.css"] * 6
    + ["/favicon.ico"] * 3
)
USER_AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "curl/8.8.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
]
UA_WEIGHTS = [30, 35, 20, 10, 2, 3]


def _event(
    rng: random.Random,
    t: float,
    clients: list[str],
    weights: list[float],
    incident: tuple[float, float],
    host: str,
) -> dict:
    """One access-log event at time ``t`` (epoch seconds)."""
    method = rng.choices(["GET", "POST", "PUT", "DELETE"], [85, 11, 3, 1])[0]
    if method == "GET":
        path = rng.choice(PAGES)
        if path == "/products" and rng.random() < 0.7:
            path = f"/products/{rng.randint(1, 500)}"
        elif path == "/search":
            path = f"/search?q={rng.choice(['shoes', 'socks', 'hats', 'bags', 'coats'])}"
        status = rng.choices([200, 304, 301, 404], [86, 8, 2, 4])[0]
    else:
        path = rng.choice(["/api/v1/orders", "/api/v1/cart/items", "/login", "/api/v1/events"])
        status = rng.choices([200, 201, 400, 401], [40, 50, 6, 4])[0]
    slow = 1.0
    if incident[0] <= t < incident[1]:  # a bad deploy: errors and slow answers for a while
        slow = 6.0
        if rng.random() < 0.25:
            status = rng.choice([500, 502, 503])
    elif rng.random() < 0.004:
        status = 500
    if status == 304 or status >= 500:
        size = 0 if status == 304 else rng.randint(150, 600)
    elif path.startswith("/static/"):
        size = 48_213 if path.endswith(".js") else 9_640
    else:
        size = int(rng.lognormvariate(8.5, 0.6))
    return {
        "ts": dt.datetime.fromtimestamp(t, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "ip": rng.choices(clients, weights)[0],
        "method": method,
        "path": path,
        "status": status,
        "bytes": size,
        "latency_ms": round(rng.lognormvariate(3.0, 0.8) * slow, 1),
        "user_agent": rng.choices(USER_AGENTS, UA_WEIGHTS)[0],
        "host": host,
    }


def generate_logs(
    directory: Path,
    events: int,
    files: int,
    seed: int | None = None,
    now: float | None = None,
    hours: int = HOURS,
) -> list[Path]:
    """Write ``events`` JSON access-log lines over the last ``hours`` hours, one time-ordered
    file per web server (``web-1.log`` ...), replacing the files of an earlier run."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("web-*.log"):
        old.unlink()
    rng = random.Random(seed)
    now = time.time() if now is None else now
    start = now - hours * 3600
    clients = [
        f"{net}.{rng.randint(1, 254)}"
        for net in ("203.0.113", "198.51.100", "192.0.2")
        for _ in range(120)
    ]
    weights = [1 / (rank + 1) for rank in range(len(clients))]  # a few clients are busy
    incident_start = start + rng.uniform(0.3, 0.6) * hours * 3600
    incident = (incident_start, incident_start + 12 * 60)
    paths = [directory / f"web-{i}.log" for i in range(1, files + 1)]
    times = sorted(rng.uniform(start, now) for _ in range(events))
    with contextlib.ExitStack() as stack:
        outs = [stack.enter_context(open(p, "w")) for p in paths]
        for t in times:
            server = rng.randrange(files)
            line = json.dumps(
                _event(rng, t, clients, weights, incident, f"web-{server + 1}"),
                separators=(",", ":"),
            )
            outs[server].write(line + "\n")
    return paths
