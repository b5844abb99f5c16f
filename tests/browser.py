"""A real browser for the dashboard's tests and its README screenshot: Debian's headless
chromium driven through /usr/bin/chromedriver by selenium, and the dashboard process it reads."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MISSING = (
    "{path} not found: the dashboard's browser tests need Debian's chromium and "
    "chromium-driver (bash deploy/setup.sh --test installs them)"
)


def missing_browser() -> str | None:
    """Why chromium cannot be started here (a one-line message), or None when it can."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            return MISSING.format(path=path)
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def start_chromium(width: int = 1440, height: int = 1000):
    """A headless chromium (selenium WebDriver) whose console log can be read afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests may run as root, which chromium's sandbox refuses
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def page_errors(driver) -> list[str]:
    """The JavaScript errors the page logged since the last call (network errors left out)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and entry.get("source") != "network"
    ]


def full_page_screenshot(driver, path: Path) -> Path:
    """Save the whole page (not only the window) as a PNG at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return document.documentElement.scrollWidth")
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return path


def get_json(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def start_dashboard(command: list[str], port: int, log: Path, cwd: Path, timeout: float = 30):
    """Start ``headrace dashboard`` (``command``) and wait until its API answers on ``port``;
    the process. A dashboard that exits or never answers fails with the end of its log."""
    out = log.open("wb")
    process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            get_json(f"http://127.0.0.1:{port}/api/cluster", timeout=2)
            return process
        except (OSError, urllib.error.URLError, ValueError):
            time.sleep(0.2)
    stop_process(process)
    tail = log.read_text(errors="replace")[-2000:]
    raise AssertionError(f"the dashboard did not answer on :{port}; its log ends:\n{tail}")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
