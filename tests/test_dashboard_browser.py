"""The dashboard in a real browser: headless chromium (Debian's, through chromedriver) reads the
page of ``headrace dashboard``, started as a process on a live three-broker cluster, while the
tests produce, load and inject events; values are read from the page's data-* attributes.
A screenshot of every test's page is saved under test-output/screenshots/."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from datetime import UTC, datetime

import pytest
from browser import (
    full_page_screenshot,
    missing_browser,
    page_errors,
    start_chromium,
    start_dashboard,
    stop_process,
)
from command_lines import HEADRACE, ROOT, load_cmd
from conftest import create_topic, free_port

from consumers.producer import Producer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCREENSHOTS = ROOT / "test-output" / "screenshots"
WAIT = 15  # seconds: the bound of every wait for the page, except the tail's 2 s promise


@pytest.fixture(scope="module")
def dashboard(cluster3, tmp_path_factory):
    """``headrace dashboard`` on the cluster's ZooKeeper; yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("dashboard") / "dashboard.log"
    command = [*HEADRACE, "dashboard", "--zookeeper", cluster3.zookeeper_connect]
    process = start_dashboard([*command, "--port", str(port)], port, log, ROOT)
    yield f"http://127.0.0.1:{port}/"
    stop_process(process)
    print(f"dashboard log: {log}")


@pytest.fixture(scope="module")
def chromium():
    why = missing_browser()
    if why:
        pytest.fail(why, pytrace=False)
    driver = start_chromium()
    yield driver
    driver.quit()


@pytest.fixture
def page(chromium, dashboard, request):
    """``page(fragment)`` opens the dashboard with that URL fragment; afterwards the page is
    saved as a screenshot (also when the test failed) and must have logged no script error."""

    def open_page(fragment: str = ""):
        chromium.get(dashboard + fragment)
        return chromium

    yield open_page
    path = full_page_screenshot(chromium, SCREENSHOTS / f"{request.node.name}.png")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"screenshot: {path}")
    errors = page_errors(chromium)
    chromium.get("about:blank")  # closes the page's event streams before the next test
    assert errors == []


def until(driver, condition, timeout: float = WAIT, what: str = ""):
    """Poll ``condition(driver)`` until it is truthy (its value) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition(driver)
        if value:
            return value
        if time.monotonic() > deadline:
            states = driver.execute_script(
                "return ['#live', '#tail-status', '#tail-counts', '#agg-status']"
                ".map(s => s + ': ' + document.querySelector(s).textContent).join('; ')"
            )
            raise AssertionError(f"not within {timeout} s: {what} (page: {states})")
        time.sleep(0.05)


def field(driver, row_selector: str, name: str) -> str | None:
    """The data-value of the cell ``name`` in the row matching ``row_selector`` (None if absent)."""
    return driver.execute_script(
        "const c = document.querySelector(arguments[0] + ' [data-field=\"' + arguments[1] + '\"]');"
        "return c ? c.dataset.value : null;",
        row_selector,
        name,
    )


def tail_rows(driver, text: str) -> int:
    """How many rows of the live tail contain ``text``."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#tail-rows tr.tail-row')]"
        ".filter(r => r.textContent.includes(arguments[0])).length;",
        text,
    )


def event(status: int, n: int, marker: str = "") -> bytes:
    ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    line = {"ts": ts, "status": status, "path": f"/p/{n}", "ip": "10.0.0.1", "marker": marker}
    return json.dumps(line).encode()


def produce(cluster, topic: str, values: list[bytes]) -> None:
    with Producer(bootstrap_servers=cluster.bootstrap, linger_ms=5) as producer:
        futures = [producer.send(topic, v, key=b"k%d" % i) for i, v in enumerate(values)]
    for future in futures:
        future.result(timeout=30)


def new_topic(cluster, name: str, partitions: int = 3) -> str:
    create_topic(cluster.brokers[0].port, name, partitions, replication_factor=3)
    return name


def test_topic_rates_move_while_producing_and_settle_when_it_stops(cluster3, page):
    topic = new_topic(cluster3, "rates")
    driver = page()
    row = f'tr.topic-row[data-topic="{topic}"]'
    until(driver, lambda d: field(d, row, "partitions") == "3", what="the topic's row")
    until(
        driver,
        lambda d: (
            d.execute_script("return document.querySelectorAll('tr[data-broker]').length") == 3
        ),
        what="three brokers in the Cluster panel",
    )
    assert driver.execute_script(
        "return [...document.querySelectorAll('tr[data-broker]')]"
        ".every(r => r.dataset.up === 'true')"
    )

    stop = threading.Event()

    def keep_producing():
        with Producer(bootstrap_servers=cluster3.bootstrap, linger_ms=5) as producer:
            n = 0
            while not stop.is_set() and n < 20_000:
                for _ in range(50):
                    producer.send(topic, event(200, n), key=b"%d" % n)
                    n += 1
                producer.flush()
                time.sleep(0.05)

    producing = threading.Thread(target=keep_producing, daemon=True)
    producing.start()
    try:
        until(
            driver,
            lambda d: float(field(d, row, "messages_per_s") or 0) > 0,
            what="messages/s above zero while producing",
        )
        driver.find_element("css selector", row).click()  # opens the partitions
        partition_rates = until(
            driver,
            lambda d: [
                float(v or 0)
                for v in d.execute_script(
                    "return [...document.querySelectorAll("
                    "'tr[data-topic=\"' + arguments[0] + '\"][data-partition] "
                    "[data-field=messages_per_s]')].map(c => c.dataset.value)",
                    topic,
                )
                if float(v or 0) > 0
            ],
            what="per-partition rates above zero",
        )
        assert partition_rates
        assert float(field(driver, row, "bytes_per_s") or 0) > 0
    finally:
        stop.set()
        producing.join(30)
    until(
        driver,
        lambda d: float(field(d, row, "messages_per_s") or 1) == 0,
        what="messages/s back to zero once producing stopped",
    )
    assert int(field(driver, row, "end_offset_total")) > 0


def test_a_loaders_lag_goes_to_zero_after_a_load_run(cluster3, page, tmp_path):
    topic = new_topic(cluster3, "loaded")
    group = "dash-loader"
    warehouse = str(tmp_path / "warehouse")

    def load():
        subprocess.run(
            load_cmd(cluster3, topic, group, warehouse, "--until-caught-up"),
            cwd=ROOT,
            check=True,
            timeout=120,
            capture_output=True,
        )

    produce(cluster3, topic, [event(200, n) for n in range(50)])
    load()
    produce(cluster3, topic, [event(200, n) for n in range(30)])
    driver = page()
    row = f'tr.group-row[data-group="{group}"]'
    until(driver, lambda d: field(d, row, "lag") == "30", what="the loader's lag of 30")
    assert field(driver, row, "kind") == "loader"
    load()
    until(driver, lambda d: field(d, row, "lag") == "0", what="the loader's lag at zero")
    driver.find_element("css selector", row).click()
    detail = f'tr[data-detail-group="{group}"]'
    until(driver, lambda d: field(d, detail, "rows") == "30", what="the last run's 30 rows")
    assert field(driver, row, "last_run")  # when it finished
    lags = driver.execute_script(
        "return [...document.querySelectorAll('tr[data-group=\"' + arguments[0] + '\"]"
        "[data-partition] [data-field=lag]')].map(c => c.dataset.value)",
        group,
    )
    assert lags == ["0", "0", "0"]


def _follow(driver, topic: str, filter_text: str = "", start: str = "latest", at: str = ""):
    """Start the tail on ``topic`` (from ``start``: latest, earliest, offset or time, ``at``
    being the offset or time) and wait until its stream has placed every partition."""
    until(
        driver,
        lambda d: d.execute_script(
            "return [...document.querySelectorAll('#tail-topic option')]"
            ".some(o => o.value === arguments[0])",
            topic,
        ),
        what="the topic offered in the tail's picker",
    )
    driver.execute_script(
        "document.querySelector('#tail-topic').value = arguments[0];"
        "document.querySelector('#tail-filter').value = arguments[1];"
        "document.querySelector('#tail-from').value = arguments[2];"
        "document.querySelector('#tail-from-value').value = arguments[3];"
        "document.querySelector('#tail-start').click();",
        topic,
        filter_text,
        start,
        at,
    )
    until(
        driver,
        lambda d: d.find_element("css selector", "#tail-counts").text,
        what="the tail's first status",
    )


def test_a_fresh_message_appears_in_the_live_tail_within_2_seconds(cluster3, page):
    topic = new_topic(cluster3, "tailed")
    driver = page()
    _follow(driver, topic)
    marker = f"fresh-{time.monotonic_ns()}"
    produce(cluster3, topic, [event(200, 1, marker)])
    until(driver, lambda d: tail_rows(d, marker) == 1, timeout=2, what="the message in the tail")
    pretty = driver.execute_script(
        "return [...document.querySelectorAll('#tail-rows tr.tail-row')]"
        ".find(r => r.textContent.includes(arguments[0])).querySelector('pre').textContent",
        marker,
    )
    assert json.loads(pretty)["marker"] == marker
    assert "\n  " in pretty  # pretty-printed, one field a line


def test_the_tail_starts_from_the_earliest_an_offset_or_a_time(cluster3, page):
    topic = new_topic(cluster3, "replayed", partitions=1)
    produce(cluster3, topic, [event(200, n, f"old-{n}") for n in range(5)])
    time.sleep(0.05)
    cut = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    time.sleep(0.05)
    produce(cluster3, topic, [event(200, n, f"new-{n}") for n in range(2)])
    driver = page()

    def offsets(d):
        return sorted(
            int(o)
            for o in d.execute_script(
                "return [...document.querySelectorAll('#tail-rows tr.tail-row')]"
                ".map(r => r.dataset.offset)"
            )
        )

    for start, at, expected in (
        ("earliest", "", list(range(7))),
        ("offset", "3", [3, 4, 5, 6]),
        ("time", cut, [5, 6]),
    ):
        _follow(driver, topic, start=start, at=at)
        until(driver, lambda d, e=expected: offsets(d) == e, what=f"offsets {expected}")


def test_the_tail_filter_keeps_only_matching_messages(cluster3, page):
    topic = new_topic(cluster3, "filtered")
    driver = page()
    _follow(driver, topic, "needle")
    produce(cluster3, topic, [event(200, 1, "hay-1"), event(200, 2, "needle-2")])
    until(driver, lambda d: tail_rows(d, "needle-2") == 1, what="the matching message")
    assert tail_rows(driver, "hay-1") == 0
    assert driver.execute_script("return document.querySelectorAll('#tail-rows mark').length") > 0


def test_pause_stops_new_rows_and_resume_brings_them(cluster3, page):
    topic = new_topic(cluster3, "paused")
    driver = page(f"#tail={topic}")  # the fragment starts the tail
    until(driver, lambda d: d.find_element("css selector", "#tail-counts").text, what="status")
    produce(cluster3, topic, [event(200, n, f"before-{n}") for n in range(5)])
    until(driver, lambda d: tail_rows(d, "before-") == 5, what="the first messages")

    driver.find_element("css selector", "#tail-pause").click()
    until(
        driver,
        lambda d: d.find_element("css selector", "#tail").get_attribute("data-state") == "paused",
        what="the paused state",
    )
    produce(cluster3, topic, [event(200, n, f"during-{n}") for n in range(7)])
    time.sleep(1.5)  # the page would have shown them by now if it were still following
    assert tail_rows(driver, "during-") == 0

    driver.find_element("css selector", "#tail-pause").click()
    until(driver, lambda d: tail_rows(d, "during-") == 7, what="the messages sent while paused")
    assert tail_rows(driver, "before-") == 5  # nothing shown twice
    offsets = driver.execute_script(
        "return [...document.querySelectorAll('#tail-rows tr.tail-row')]"
        ".map(r => r.dataset.partition + '/' + r.dataset.offset)"
    )
    assert len(offsets) == len(set(offsets)) == 12


def test_the_windowed_chart_shows_an_injected_burst_of_500s(cluster3, page):
    topic = new_topic(cluster3, "burst")
    produce(cluster3, topic, [event(200, n) for n in range(60)])
    produce(cluster3, topic, [event(500 if n % 3 else 503, n) for n in range(45)])
    produce(cluster3, topic, [event(404, n) for n in range(5)])
    driver = page(f"#aggregate={topic}:status:300::classes")

    def legend(d):
        return d.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('#agg-legend li')]"
            ".map(li => [li.dataset.series, Number(li.dataset.total)]))"
        )

    until(driver, lambda d: legend(d).get("5xx") == 45, what="45 events of class 5xx")
    assert legend(driver) == {"2xx": 60, "4xx": 5, "5xx": 45}

    def drawn(d, series):
        return d.execute_script(
            "return [...document.querySelectorAll("
            "'#agg-chart g.series[data-series=\"' + arguments[0] + '\"] [data-count]')]"
            ".map(r => Number(r.dataset.count))",
            series,
        )

    counts = drawn(driver, "5xx")
    assert sum(counts) == 45 and max(counts) > 0
    assert driver.find_element("css selector", "#aggregate").get_attribute("data-events") == "110"
    # The same counts as one line per series; the fragment follows the choices.
    driver.find_element("css selector", '#agg-mode button[data-mode="lines"]').click()
    until(driver, lambda d: sum(drawn(d, "5xx")) == 45, what="the 5xx line")
    assert driver.find_elements("css selector", '#agg-chart g.series[data-series="5xx"] polyline')
    assert re.search(rf"aggregate={topic}:status:300::classes", driver.current_url)


def test_the_audit_table_shows_what_an_audited_producer_counted(cluster3, page):
    topic = new_topic(cluster3, "audited-page", 2)
    with Producer(bootstrap_servers=cluster3.bootstrap, linger_ms=5, audit=True) as producer:
        futures = [producer.send(topic, event(200, n)) for n in range(40)]
    for future in futures:  # acknowledged, and the audit records published on close
        future.result(timeout=30)
    driver = page(f"#audit={topic}")

    def counted(d):
        cells = d.execute_script(
            "return [...document.querySelectorAll('#audit-body tr[data-window]')].map(r =>"
            " ['produced', 'brokered', 'missing', 'duplicated'].map(f =>"
            " Number(r.querySelector('[data-field=\"' + f + '\"]').dataset.value)));"
        )
        totals = [sum(column) for column in zip(*cells)] if cells else None
        return totals if totals and totals[:2] == [40, 40] else None

    _, _, missing, duplicated = until(driver, counted, 30, "the audit's counts")  # 40 and 40
    assert (missing, duplicated) == (0, 0)
    state = driver.execute_script("return document.querySelector('#audit').dataset.state")
    assert state not in ("unavailable", "error")


def test_leaving_the_page_closes_its_streams(cluster3, page, dashboard):
    """A browser opens six connections to one server at most: a page that kept its event
    streams open after being left (back/forward cache) would stop the seventh visit."""
    topic = new_topic(cluster3, "revisited")
    driver = page()
    for _ in range(8):
        driver.get(f"{dashboard}#tail={topic}&aggregate={topic}:status:60")
        until(
            driver,
            lambda d: (
                d.find_element("css selector", "#tail-counts").text
                and d.find_element("css selector", "#aggregate").get_attribute("data-state")
                == "live"
            ),
            what="the tail and the counts streaming",
        )
        driver.get("about:blank")


def test_the_page_shows_a_broker_die_and_return(make_cluster, chromium, tmp_path, request):
    cluster = make_cluster(3)
    create_topic(cluster.brokers[0].port, "held", 3, replication_factor=3)
    port = free_port()
    command = [*HEADRACE, "dashboard", "--zookeeper", cluster.zookeeper_connect]
    process = start_dashboard([*command, "--port", str(port)], port, tmp_path / "log", ROOT)

    def brokers(d):
        return d.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('tr[data-broker]')]"
            ".map(r => [r.dataset.broker, r.dataset.up]))"
        )

    every_one_up = {"1": "true", "2": "true", "3": "true"}
    try:
        chromium.get(f"http://127.0.0.1:{port}/")
        until(chromium, lambda d: brokers(d) == every_one_up, what="three brokers up")
        cluster.broker(3).kill()
        until(chromium, lambda d: brokers(d).get("3") == "false", what="broker 3 down")
        figure = chromium.find_element("css selector", "#cluster-brokers-up")
        assert figure.get_attribute("data-value") == "2"
        cluster.broker(3).start()
        until(chromium, lambda d: brokers(d) == every_one_up, what="broker 3 back")
        assert chromium.find_element("css selector", "#live").get_attribute("data-state") == "live"
        assert page_errors(chromium) == []
    finally:
        full_page_screenshot(chromium, SCREENSHOTS / f"{request.node.name}.png")
        chromium.get("about:blank")
        stop_process(process)
