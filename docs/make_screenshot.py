"""Make docs/dashboard.png, the README's picture of the dashboard: ``headrace demo`` into a
scratch directory (its own cluster on free ports), ``headrace dashboard`` on that cluster, the
page in headless chromium with the demo's views open, saved whole; then everything stopped.

    .venv/bin/python docs/make_screenshot.py [--out docs/dashboard.png] [--events 50000]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser import (  # noqa: E402 (after the path it is found on)
    full_page_screenshot,
    missing_browser,
    start_chromium,
    start_dashboard,
    stop_process,
)

from consumers.producer import Producer  # noqa: E402
from headrace.devcluster import cluster_down, free_port, read_state  # noqa: E402

HEADRACE = [sys.executable, "-m", "headrace.cli"]
VIEWS = "#aggregate=access:status:10800:ts:classes&audit=access"
OPEN_VIEWS = """
document.querySelector('#topic-access').click();
const loader = document.querySelector('tr.group-row[data-kind="loader"]');
if (loader) loader.click();
document.querySelector('#tail-topic').value = 'access';
document.querySelector('#tail-from').value = 'earliest';
document.querySelector('#tail-filter').value = '"status":5';
document.querySelector('#tail-start').click();
"""


def keep_producing(bootstrap: str, stop: threading.Event) -> None:
    """Fresh access events, about 20 a second (the demo's own rate is about 5), so that
    the page shows rates moving without hiding the demo's hours in the counts."""
    rng = random.Random(7)
    with Producer(bootstrap_servers=bootstrap, linger_ms=20) as producer:
        while not stop.is_set():
            ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            for _ in range(2):
                status = rng.choices([200, 304, 404, 500], [90, 5, 4, 1])[0]
                ip = f"203.0.113.{rng.randrange(1, 255)}"
                event = {"ts": ts, "ip": ip, "method": "GET", "path": "/", "status": status}
                producer.send("access", json.dumps(event).encode(), key=ip.encode())
            stop.wait(0.1)


def wait(driver, script: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not driver.execute_script(script):
        if time.monotonic() > deadline:
            shown = driver.execute_script("return document.querySelector('#live').textContent")
            raise SystemExit(f"make_screenshot: no {what} within {timeout} s (page: {shown})")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    parser.add_argument("--events", default="50000")
    args = parser.parse_args()
    why = missing_browser()
    if why:
        print(f"make_screenshot: {why}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="headrace-shot-") as scratch:
        work = Path(scratch)
        cluster_dir = work / "cluster"
        demo = [
            *HEADRACE,
            "demo",
            "--events",
            args.events,
            "--dir",
            str(cluster_dir),
            "--work-dir",
            str(work / "demo"),
            "--to",
            str(work / "warehouse"),
            "--zookeeper-port",
            "0",
            "--base-port",
            "0",
        ]
        dashboard = driver = producing = None
        stop = threading.Event()
        try:
            subprocess.run(demo, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=600)
            state = read_state(cluster_dir)
            zookeeper = state["connect"]
            producing = threading.Thread(target=keep_producing, args=(state["bootstrap"], stop))
            producing.start()
            port = free_port()
            command = [*HEADRACE, "dashboard", "--zookeeper", zookeeper, "--port", str(port)]
            command += ["--warehouse", str(work / "warehouse")]
            dashboard = start_dashboard(command, port, work / "dashboard.log", ROOT)
            driver = start_chromium(1440, 1000)
            driver.get(f"http://127.0.0.1:{port}/{VIEWS}")
            wait(driver, "return document.querySelector('#topic-access')", 30, "topic row")
            time.sleep(8)  # a few seconds of rates and lag history
            driver.execute_script(OPEN_VIEWS)
            wait(driver, "return document.querySelector('#agg-legend li')", 90, "window counts")
            wait(driver, "return document.querySelector('#tail-rows tr')", 30, "tail rows")
            time.sleep(2)
            driver.execute_script("window.scrollTo(0, 0)")
            print(full_page_screenshot(driver, Path(args.out)))
        finally:
            stop.set()
            if producing is not None:
                producing.join(30)
            if driver is not None:
                driver.quit()
            if dashboard is not None:
                stop_process(dashboard)
            cluster_down(cluster_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
