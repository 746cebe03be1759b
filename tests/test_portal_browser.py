"""The portal in a real headless Chromium (Selenium, the distribution's chromium and
chromium-driver) against `jiebang serve` on the demo ledger (SQLite): an enterprise follows its
invitation, sets a password, signs in and reads its project page (numbers equal `jiebang
balances`), and gets 404 for another party's project; the auditor downloads the audit pack
(bytes equal the CLI's); the bureau's dashboard shows the forecast chart. Each test saves a
screenshot (also copied to $JIEBANG_SCREENSHOTS when set)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from portal_fixtures import DEMAND, PASSWORD

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("JIEBANG_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("JIEBANG_CHROMEDRIVER", "/usr/bin/chromedriver"))


def _skip_reason() -> str | None:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        return (f"browser tests need Chromium and its driver at {CHROMIUM} and {CHROMEDRIVER} "
                "(apt-get install chromium chromium-driver; .ci/run installs them)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "browser tests need Selenium (pip install -e '.[test]')"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, _sqlite_template):
    """`jiebang serve` on a fresh demo ledger, as a separate process."""
    from sqlalchemy.orm import Session

    from ledger.core.db import make_engine
    from ledger.programme.demo import programme

    folder = tmp_path_factory.mktemp("browser")
    path = folder / "jiebang.db"
    shutil.copyfile(_sqlite_template, path)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    with Session(engine) as session, session.begin():
        programme().run(session)
    engine.dispose()
    from reports.forecast_render import DEMO_SCENARIO_TEXT

    scenario = folder / "scenario.toml"  # the demo's scenario: the chart shows a spread
    scenario.write_text(DEMO_SCENARIO_TEXT, encoding="utf-8")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JIEBANG_PORTAL_SECRET": "browser-test"}
    log = (folder / "server.log").open("wb")
    server = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "serve", "--db", str(path), "--port", str(port),
                               "--scenario", str(scenario)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if server.poll() is not None:
                raise AssertionError((folder / "server.log").read_text())
            time.sleep(0.2)
    try:
        yield {"url": url, "base": base, "folder": folder}
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600", "--lang=zh-CN"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


def jiebang(served, *args) -> str:
    """The CLI as a user runs it, in its own process. (In this process a CLI call's pooled
    connection would lose its SQLite locks when the next call opens the file to check it,
    and the server could then delete the WAL under it.)"""
    done = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "--db", served["url"], *args],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _invite(served, *args) -> str:
    link = jiebang(served, "portal", "invite", *args, "--base-url", served["base"]).strip()
    assert link.startswith(served["base"] + "/invite/")
    return link


def _shot(driver, tmp_path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    keep = os.environ.get("JIEBANG_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(keep) / path.name)
    return path


def _accept(driver, link: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.delete_all_cookies()
    driver.get(link)
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "password") or d.find_elements(By.ID, "error"))
    assert driver.find_elements(By.ID, "password"), driver.page_source[:2000]
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "password2").send_keys(PASSWORD)
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, 30).until(lambda d: "/invite/" not in d.current_url and d.find_elements(By.CSS_SELECTOR, "header .who"))


def _grouped(plain: str) -> str:
    sign = "-" if plain.startswith("-") else ""
    whole, part = plain.lstrip("-").split(".")
    return f"{sign}{int(whole):,}.{part}"


def test_an_enterprise_signs_in_and_its_project_page_equals_jiebang_balances(served, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _accept(browser, _invite(served, "--party", DEMAND))
    assert browser.current_url.endswith("/projects")
    # Sign out, then in again through the form.
    browser.find_element(By.CSS_SELECTOR, "header form button").click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("/login"))
    browser.find_element(By.ID, "login").send_keys(DEMAND)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("/projects"))
    browser.find_element(By.LINK_TEXT, "JM2024-001").click()
    WebDriverWait(browser, 10).until(lambda d: "/projects/JM2024-001" in d.current_url)
    as_of = browser.current_url.split("as_of=")[1]
    totals = json.loads(jiebang(served, "balances", "--project", "JM2024-001", "--as-of", as_of, "--format", "json"))
    shown = {cell.get_attribute("data-key"): cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#totals td[data-key]")}
    assert shown == {key: _grouped(value) for key, value in totals.items()}
    lane = json.loads(jiebang(served, "balances", "--project", "JM2024-001", "--lane", "L1", "--as-of", as_of, "--format", "json"))
    lane_cells = {c.get_attribute("data-key"): c.text for c in browser.find_elements(By.CSS_SELECTOR, 'table[data-lane="L1"] td[data-key]')}
    assert lane_cells and all(lane_cells[k] == _grouped(lane[k]) for k in lane_cells)
    assert browser.find_elements(By.CSS_SELECTOR, "svg rect")
    _shot(browser, tmp_path, "enterprise-project")
    # Another party's project: 404, nothing of it on the page.
    browser.get(served["base"] + "/projects/UR2024-001")
    error = browser.find_element(By.ID, "error").text
    assert error.startswith("404") and "大兆瓦" not in browser.page_source
    _shot(browser, tmp_path, "enterprise-other-project-404")


def test_the_auditor_downloads_the_audit_pack_byte_identical_to_the_cli(served, browser, tmp_path):
    from selenium.webdriver.common.by import By

    _accept(browser, _invite(served, "--auditor", "信达会计师事务所", "--project", "JM2025-004"))
    browser.get(served["base"] + "/audit/JM2025-004?as_of=2026-06-30&section=2")
    assert "二、资金到位情况" in browser.find_element(By.ID, "section-heading").text
    _shot(browser, tmp_path, "auditor-audit-pack")
    jiebang(served, "report", "audit", "--project", "JM2025-004", "--as-of", "2026-06-30", "--out", str(tmp_path / "cli"))
    for link_id, name in (("download-pdf", "audit-JM2025-004-2026-06-30.pdf"), ("download-xlsx", "audit-JM2025-004-2026-06-30.xlsx"),
                          ("download-fiscal", "fiscal-JM2025-004.beancount")):
        browser.find_element(By.ID, link_id).click()
        target = browser.downloads / name
        deadline = time.monotonic() + 30
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        expected = tmp_path / "cli" / name if not name.endswith(".beancount") else \
            tmp_path / "cli" / "beancount-JM2025-004-2026-06-30" / name
        assert target.read_bytes() == expected.read_bytes(), name


def test_the_bureau_dashboard_shows_the_forecast_chart(served, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _accept(browser, _invite(served, "--bureau", "江门市科技局"))
    assert browser.current_url.endswith("/dashboard")
    chart = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, "#forecast-chart svg"))
    assert chart.size["width"] > 300 and chart.size["height"] > 150
    assert len(chart.find_elements(By.TAG_NAME, "rect")) >= 4
    assert "P95" in chart.get_attribute("innerHTML")
    assert browser.find_elements(By.CSS_SELECTOR, "#due tr")
    _shot(browser, tmp_path, "bureau-dashboard")
