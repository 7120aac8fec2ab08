"""The console in a real browser: headless Chromium (Debian's chromium and chromium-driver, driven by Selenium)
against `vendorwatch serve` in a subprocess, on real PostgreSQL and Redis with a real Celery worker. An operator
logs in, acknowledges an alert, silences a vendor, triggers a rerun and sees it recorded and run; then the page is
photographed at 375 and 1280 px and checked for its main elements, nothing sticking out sideways.

Screenshots are kept in the test's tmp folder (console-375.png, console-1280.png) for a person to look at."""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import select

from storage.db import session_scope
from storage.models import Alert, Rerun, Silence
from tests.conftest import stack_env
from tests.support.smtp_capture import CapturingSMTPServer
from tests.support.tls_capture import CapturingHTTPSServer
from tests.test_end_to_end import recent_months, wait_until
from tests.test_status import free_port
from tests.worker_process import BIN, running_worker, stop_group, vendorwatch
from worker.console.users import user_entry

PASSWORD = "a browser's password"
SECTIONS = ("Practices and vendors", "Open alerts", "Recent files", "Outbox", "Reruns")


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "Debian's chromium and chromium-driver are required (apt-get install them)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-background-networking", "--window-size=1280,900"):
        options.add_argument(argument)
    session = webdriver.Chrome(options=options, service=Service(driver))
    session.implicitly_wait(5)
    try:
        yield session
    finally:
        session.quit()


@pytest.fixture
def console_url(tmp_path: Path, postgres_url: str, redis_url: str, teams_server: CapturingHTTPSServer,
                smtp_server: CapturingSMTPServer) -> Iterator[tuple[str, str, list[str]]]:
    """A firing alert (ingested and evaluated through the CLI), a worker, and the console serving on a free port."""
    env = stack_env(tmp_path / "var", postgres_url, redis_url, teams_server, smtp_server)
    env["VENDORWATCH_CONSOLE_USERS"] = user_entry("alice", PASSWORD)
    env["VENDORWATCH_CONSOLE_SECRET_KEY"] = "browser-test-signing-key"
    feed = tmp_path / "claimright.csv"
    feed.write_text(f"practice,vendor,kpi,period,value\nmaple-clinic,claimright,denial_rate,{recent_months(1)[0]},"
                    "10.4\n", encoding="utf-8")
    vendorwatch("ingest", str(feed), env=env)
    port = free_port()
    server = subprocess.Popen([str(BIN / "vendorwatch"), "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{url}/healthz"), message="the console to answer /healthz")
        with running_worker(env) as log:
            yield url, postgres_url, log
    finally:
        stop_group(server)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def submit(browser: WebDriver, button: WebElement) -> None:
    """Click and wait for the next page (a form post redirects back to the page): never read the old one."""
    page = browser.find_element(By.TAG_NAME, "html")
    button.click()
    WebDriverWait(browser, 15).until(expected_conditions.staleness_of(page))


def flash(browser: WebDriver) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, ".flash").text)


def test_an_operator_acts_from_the_console(browser: WebDriver, console_url: tuple[str, str, list[str]],
                                           tmp_path: Path) -> None:
    url, database_url, worker_log = console_url
    browser.get(url + "/")
    assert "/login" in browser.current_url
    browser.find_element(By.ID, "username").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys("not it")
    submit(browser, browser.find_element(By.ID, "login"))
    assert "Wrong user name or password." in browser.page_source
    browser.find_element(By.ID, "username").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    submit(browser, browser.find_element(By.ID, "login"))
    assert browser.find_element(By.CSS_SELECTOR, ".who").text == "alice"

    with session_scope(database_url) as session:
        alert_id = session.scalars(select(Alert.id).where(Alert.state == "firing")).one()
    submit(browser, browser.find_element(By.CSS_SELECTOR, f'tr[data-alert="{alert_id}"] button.acknowledge'))
    assert f"Alert {alert_id} acknowledged by alice" in flash(browser)
    assert "acknowledged by alice" in browser.find_element(By.CSS_SELECTOR, f'tr[data-alert="{alert_id}"]').text

    row = browser.find_element(By.CSS_SELECTOR, 'tr.vendor[data-vendor="claimright"]')
    row.find_element(By.NAME, "reason").send_keys("vendor is migrating systems")
    submit(browser, row.find_element(By.CSS_SELECTOR, "button.silence-vendor"))
    assert "claimright silenced for Maple Street Clinic" in flash(browser)
    assert "silenced" in browser.find_element(By.CSS_SELECTOR, 'tr.vendor[data-vendor="claimright"]').text

    submit(browser, browser.find_element(By.ID, "rerun-evaluate"))
    message = flash(browser)
    assert "Enqueued alerts.evaluate as" in message and "requested by alice" in message
    task_id = message.split(" as ", 1)[1].split(",", 1)[0]
    wait_until(lambda: any(f"alerts.evaluate[{task_id}] succeeded" in line for line in worker_log),
               message="the worker to run the console's rerun")
    browser.refresh()
    rerun_row = browser.find_element(By.CSS_SELECTOR, "tr.rerun").text
    assert "alice" in rerun_row and "alerts.evaluate" in rerun_row

    with session_scope(database_url) as session:
        assert session.get(Alert, alert_id).acknowledged_by == "alice"  # type: ignore[union-attr]
        [silence] = session.scalars(select(Silence)).all()
        [rerun] = session.scalars(select(Rerun)).all()
    assert (silence.vendor_id, silence.created_by) == ("claimright", "alice")
    assert (rerun.task, rerun.requested_by, rerun.task_id) == ("alerts.evaluate", "alice", task_id)

    for width in (375, 1280):
        look_at(browser, width, tmp_path / f"console-{width}.png")


def look_at(browser: WebDriver, width: int, shot: Path) -> None:
    """Lay the page out at `width` CSS px (Chromium's own emulation: headless windows stop at 500 px), check the
    main elements are there and shown and nothing sticks out sideways, and keep a screenshot of it."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": 1400, "deviceScaleFactor": 1, "mobile": width < 600})
    browser.refresh()
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2") if h.is_displayed()]
    assert list(SECTIONS) == headings, headings
    for selector in (".who", "button.acknowledge, tr.alert", "tr.vendor", "tr.file", "tr.message", "#rerun-evaluate"):
        assert browser.find_element(By.CSS_SELECTOR, selector).is_displayed(), selector
    page_width = browser.execute_script("return document.documentElement.scrollWidth")
    assert page_width <= width, f"the page is {page_width} px wide at {width} px"
    browser.save_screenshot(str(shot))
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    shot_width, shot_height = struct.unpack(">II", png[16:24])
    assert shot_width == width and shot_height >= 600
