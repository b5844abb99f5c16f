"""The dashboard's login when security is on: pure checks of the credentials (SCRAM as the
brokers keep it, a users file), the failure throttle and the sessions; then a real
``headrace dashboard`` process on a real ZooKeeper, asked over HTTP: 401 without a login, 200
with one, a wrong password refused, the cookie HttpOnly and SameSite=Strict, failures
refused for a while, and (SCRAM) a user deleted from ZooKeeper refused at once."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
import time
import urllib.parse

import pytest
import scramp
from command_lines import HEADRACE

from headrace.dashboard.credentials import (
    CredentialsError,
    PasswordFile,
    ScramUsers,
    Sessions,
    Throttle,
    parse_scram_credential,
    verify_scram,
)
from headrace.devcluster import free_port

# --- pure ------------------------------------------------------------------------------------


def kafka_credential(mechanism: str, password: str, iterations: int = 4096) -> str:
    """Kafka's text of a SCRAM credential, made by another implementation (scramp)."""
    salt, stored, server, n = scramp.ScramMechanism(mechanism).make_auth_info(
        password, iteration_count=iterations
    )
    b64 = base64.b64encode
    return (
        f"salt={b64(salt).decode()},stored_key={b64(stored).decode()},"
        f"server_key={b64(server).decode()},iterations={n}"
    )


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_password_is_checked_against_a_scram_credential(mechanism):
    salt, stored_key, iterations = parse_scram_credential(kafka_credential(mechanism, "pencil"))
    assert verify_scram("pencil", mechanism, salt, stored_key, iterations)
    assert not verify_scram("pencil ", mechanism, salt, stored_key, iterations)
    assert not verify_scram("Pencil", mechanism, salt, stored_key, iterations)


def test_scram_users_take_any_stored_mechanism_and_refuse_unknown_users():
    configs = {
        "alice": {"SCRAM-SHA-512": kafka_credential("SCRAM-SHA-512", "a-pw")},
        "bob": {"SCRAM-SHA-256": kafka_credential("SCRAM-SHA-256", "b-pw"), "quota": "1"},
        "eve": {"SCRAM-SHA-512": "salt=AAAA,stored_key=AAAA,server_key=AAAA,iterations=4"},
    }
    check = ScramUsers(lambda user: configs.get(user, {}), ["SCRAM-SHA-512"]).check
    assert check("alice", "a-pw") and check("bob", "b-pw")
    assert not check("alice", "b-pw")
    assert not check("carol", "a-pw")
    assert not check("eve", "")  # a malformed (too few iterations) credential opens nothing
    assert not check("../alice", "a-pw")


def test_too_few_iterations_or_a_broken_text_is_not_a_credential():
    with pytest.raises(CredentialsError, match="below 4096"):
        parse_scram_credential("salt=AAAA,stored_key=AAAA,server_key=AAAA,iterations=1000")
    with pytest.raises(CredentialsError):
        parse_scram_credential("salt=!!,stored_key=AA==,iterations=4096")


def test_a_users_file_takes_both_separators(tmp_path):
    path = tmp_path / "users"
    path.write_text("# PLAIN users\nalice=secret\nbob: hunter2\n")
    check = PasswordFile.read(str(path)).check
    assert check("alice", "secret") and check("bob", "hunter2")
    assert not check("alice", "hunter2") and not check("carol", "secret")
    assert not check("alice", "")
    (tmp_path / "empty").write_text("# nobody\n")
    with pytest.raises(CredentialsError, match="names no user"):
        PasswordFile.read(str(tmp_path / "empty"))
    with pytest.raises(CredentialsError, match="cannot read"):
        PasswordFile.read(str(tmp_path / "absent"))


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_refuses_an_address_after_five_failures_for_a_minute():
    clock = FakeClock()
    throttle = Throttle(clock, max_failures=5, window=60.0)
    for _ in range(4):
        throttle.failed("10.0.0.7")
        clock.now += 1
    assert throttle.retry_after("10.0.0.7") == 0.0
    throttle.failed("10.0.0.7")
    assert throttle.retry_after("10.0.0.7") == pytest.approx(56.0)
    assert throttle.retry_after("10.0.0.8") == 0.0  # others are not held back
    clock.now += 56.5  # the first failure is a minute old
    assert throttle.retry_after("10.0.0.7") == 0.0
    throttle.failed("10.0.0.7")
    throttle.succeeded("10.0.0.7")
    assert throttle.retry_after("10.0.0.7") == 0.0


def test_sessions_are_random_tokens_that_expire_and_end():
    clock = FakeClock()
    sessions = Sessions(clock, ttl=60)
    a, b = sessions.new("alice"), sessions.new("alice")
    assert a != b and len(a) >= 40
    assert sessions.user(a) == "alice" and sessions.user("forged") is None
    assert sessions.user(None) is None
    sessions.drop(a)
    assert sessions.user(a) is None and sessions.user(b) == "alice"
    clock.now += 60
    assert sessions.user(b) is None


# --- a dashboard process ----------------------------------------------------------------------


def request(port, method, path, headers=None, body=None):
    """(status, headers as a dict of lists, body) of one HTTP request, redirects not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        found: dict[str, list[str]] = {}
        for name, value in response.getheaders():
            found.setdefault(name.lower(), []).append(value)
        streaming = "text/event-stream" in (response.getheader("content-type") or "")
        # a stream: its first lines (``retry:``, then the first event)
        data = b"".join(response.readline() for _ in range(3)) if streaming else response.read()
        return response.status, found, data
    finally:
        conn.close()


def basic(user, password) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def login(port, user, password):
    form = urllib.parse.urlencode({"user": user, "password": password})
    return request(
        port,
        "POST",
        "/login",
        {"Content-Type": "application/x-www-form-urlencoded"},
        form,
    )


@pytest.fixture
def start_dashboard(tmp_path):
    """``start(zookeeper, *options)``: a dashboard process whose login form answers; its port."""
    processes = []

    def start(zookeeper, *options):
        port = free_port()
        command = [sys.executable, "-m", "headrace.cli", "dashboard", "--zookeeper", zookeeper]
        with open(tmp_path / f"dashboard-{port}.log", "wb") as log:
            process = subprocess.Popen(
                [*command, "--port", str(port), *options], stdout=log, stderr=subprocess.STDOUT
            )
        processes.append(process)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / f"dashboard-{port}.log").read_text()
            try:
                if request(port, "GET", "/login")[0] == 200:
                    return port
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the dashboard did not answer")

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def users_file(tmp_path):
    path = tmp_path / "users.properties"
    path.write_text("alice=wonderland\n")
    return str(path)


def test_without_a_login_the_api_and_its_streams_answer_401(zk_chroot, start_dashboard, users_file):
    port = start_dashboard(zk_chroot, "--users-file", users_file)
    for path in ("/api/cluster", "/api/topics", "/api/events", "/api/tail?topic=t", "/api/x"):
        status, headers, body = request(port, "GET", path)
        assert status == 401, path
        assert headers["www-authenticate"][0].startswith("Basic ")
        assert "log in" in json.loads(body)["error"]
    for path in ("/", "/static/dashboard.css"):
        status, headers, _ = request(port, "GET", path)
        assert (status, headers["location"]) == (303, ["/login"])
    status, _, body = request(port, "GET", "/login")
    assert status == 200 and b'name="password"' in body


def test_basic_credentials_open_the_api_and_a_wrong_password_does_not(
    zk_chroot, start_dashboard, users_file
):
    port = start_dashboard(zk_chroot, "--users-file", users_file)
    status, _, body = request(port, "GET", "/api/cluster", basic("alice", "wonderland"))
    assert status == 200 and "brokers" in json.loads(body)
    status, _, body = request(port, "GET", "/api/cluster", basic("alice", "wonder"))
    assert status == 401 and json.loads(body) == {"error": "wrong user or password"}
    assert request(port, "GET", "/api/cluster", basic("mallory", "wonderland"))[0] == 401
    status, headers, first = request(port, "GET", "/api/events", basic("alice", "wonderland"))
    assert status == 200 and headers["content-type"][0].startswith("text/event-stream")
    assert b"\nevent: " in first


def test_the_login_form_gives_an_httponly_strict_cookie_until_logout(
    zk_chroot, start_dashboard, users_file
):
    port = start_dashboard(zk_chroot, "--users-file", users_file)
    status, headers, body = login(port, "alice", "nope")
    assert status == 401 and b"Wrong user or password" in body and "set-cookie" not in headers
    status, headers, _ = login(port, "alice", "wonderland")
    assert (status, headers["location"]) == (303, ["/"])
    [cookie] = headers["set-cookie"]
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/" in attributes
    session = {"Cookie": cookie.split(";")[0]}
    status, headers, first = request(port, "GET", "/api/events", session)
    assert status == 200 and b"\nevent: " in first
    status, _, page = request(port, "GET", "/", session)
    assert status == 200 and b"<html" in page.lower()
    assert request(port, "GET", "/api/cluster", {"Cookie": "headrace_session=forged"})[0] == 401
    assert request(port, "POST", "/logout", session)[0] == 303
    assert request(port, "GET", "/api/cluster", session)[0] == 401


def test_an_address_with_five_failures_is_refused_even_the_right_password(
    zk_chroot, start_dashboard, users_file
):
    port = start_dashboard(zk_chroot, "--users-file", users_file)
    for attempt in range(5):
        assert login(port, "alice", f"guess-{attempt}")[0] == 401
    status, headers, body = login(port, "alice", "wonderland")
    assert status == 429 and int(headers["retry-after"][0]) > 0
    assert "too many failed logins" in json.loads(body)["error"]
    assert request(port, "GET", "/api/cluster", basic("alice", "wonderland"))[0] == 429


def test_scram_logins_are_checked_against_zookeeper_as_the_brokers_do(zk_chroot, start_dashboard):
    from kazoo.client import KazooClient

    zk = KazooClient(hosts=zk_chroot, timeout=10)
    zk.start(timeout=15)
    try:
        node = {"version": 1, "config": {"SCRAM-SHA-512": kafka_credential("SCRAM-SHA-512", "pw")}}
        zk.create("/config/users/alice", json.dumps(node).encode(), makepath=True)
        port = start_dashboard(
            zk_chroot,
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanism=SCRAM-SHA-512",
            "-X",
            "sasl.username=dashboard",
            "-X",
            "sasl.password=unused-here",
        )
        assert request(port, "GET", "/api/cluster")[0] == 401
        assert request(port, "GET", "/api/cluster", basic("alice", "pw"))[0] == 200
        assert request(port, "GET", "/api/cluster", basic("alice", "pW"))[0] == 401
        assert login(port, "bob", "pw")[0] == 401
        zk.delete("/config/users/alice")  # deleted: refused at once, no restart
        assert login(port, "alice", "pw")[0] == 401
    finally:
        zk.stop()
        zk.close()


def test_a_plain_cluster_needs_a_users_file(zk_chroot):
    plain = ["-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanism=PLAIN"]
    plain += ["-X", "sasl.username=dashboard", "-X", "sasl.password=secret"]
    result = subprocess.run(
        [*HEADRACE, "dashboard", "--zookeeper", zk_chroot, "--port", "0", *plain],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "headrace dashboard: sasl.mechanism PLAIN: the dashboard checks logins against SCRAM "
        "credentials in ZooKeeper; give --users-file for other mechanisms"
    )


def test_chromium_logs_in_through_the_form_and_the_page_goes_live(
    zk_chroot, start_dashboard, users_file, request
):
    """Debian's chromium: the page sends it to the form; a wrong password shows the error; the
    right one brings the page, whose event stream goes live; the cookie is out of scripts'
    reach (HttpOnly)."""
    from browser import full_page_screenshot, missing_browser, page_errors, start_chromium
    from command_lines import ROOT

    why = missing_browser()
    if why:
        pytest.fail(why, pytrace=False)
    port = start_dashboard(zk_chroot, "--users-file", users_file)
    driver = start_chromium()
    try:
        from selenium.webdriver.common.by import By

        driver.get(f"http://127.0.0.1:{port}/")
        assert driver.current_url.endswith("/login")
        driver.find_element(By.ID, "user").send_keys("alice")
        driver.find_element(By.ID, "password").send_keys("not-it")
        driver.find_element(By.ID, "login-submit").click()
        wait_until(lambda: "Wrong user" in driver.find_element(By.ID, "login-error").text)
        driver.find_element(By.ID, "user").send_keys("alice")
        driver.find_element(By.ID, "password").send_keys("wonderland")
        driver.find_element(By.ID, "login-submit").click()
        wait_until(lambda: driver.current_url == f"http://127.0.0.1:{port}/")
        live = "return document.querySelector('#live').dataset.state"
        wait_until(lambda: driver.execute_script(live) == "live")
        assert "headrace_session" not in driver.execute_script("return document.cookie")
        assert [c["name"] for c in driver.get_cookies()] == ["headrace_session"]
        full_page_screenshot(
            driver, ROOT / "test-output" / "screenshots" / f"{request.node.name}.png"
        )
        assert page_errors(driver) == []
    finally:
        driver.quit()


def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)
