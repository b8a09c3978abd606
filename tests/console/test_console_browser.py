"""The console in headless Chromium (Debian's, driven by Playwright) over the synthetic store:
log in, every page's counts and names, an alert followed to its evidence and acknowledged, a
new alert arriving live while the page is open, hostile workload text shown as text and never
run. Saves a screenshot of each page into docs/console/."""

from __future__ import annotations

from typing import Any

import pytest
from console_browser import VIEWPORT, log_in, shot
from console_synthetic import HOSTILE, T0, TRAINER_NAME

from runwatch.alerts.model import Alert, AlertProcess, Workload
from runwatch.console.app import ConsoleConfig
from runwatch.console.serve import ConsoleServer
from runwatch.store.sqlite import SqliteStore

pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency (scripts/install.sh)")

FRESH = Alert(id="al-live", time=T0 + 95_000_000, rule="secret_read_then_new_egress", severity="critical",
              output=f"live: {HOSTILE}", workload=Workload(id="4f3a9c0e5b7d" + "0" * 52, name="agent"),
              process=AlertProcess(pid=101, exe="/bin/sh"))


def texts(page: Any, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_text_contents()]


def test_every_page_in_chromium(served: ConsoleServer, cfg: ConsoleConfig, browser: Any) -> None:
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(page, served.url + "/workloads")
    assert page.url == served.url + "/workloads"
    # The cookie the form set is HttpOnly and strict, and not readable by a script.
    cookie = next(c for c in ctx.cookies() if c["name"] == "runwatch_console")
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    assert page.evaluate("document.cookie") == ""

    # Workloads
    assert (page.text_content("#workload-count"), page.text_content("#overdue-count")) == ("3", "1")
    assert texts(page, "a.wname") == ["ml/agent-7", "ml/bystander-0", TRAINER_NAME]
    assert texts(page, "a.alert-count") == ["2", "1", "1"]
    assert texts(page, "tr.overdue a.wname") == [TRAINER_NAME]
    assert texts(page, "li.sibling") == ["log-shipper (sidecar, no events)"]
    shot(page, "workloads")

    # Alerts, live: a new alert written to the store arrives while the page is open.
    page.click("nav >> text=Alerts")
    assert page.text_content("#alert-count") == "5"
    assert page.locator("tr.alert").count() == 5
    page.wait_for_selector("#live.on")
    with SqliteStore(cfg.db) as store:
        store.write_alerts([FRESH])
        store.flush()
    page.wait_for_selector('tr.alert[data-id="al-live"]', timeout=10_000)
    assert (page.text_content("#alert-count"), page.text_content("#alert-total")) == ("6", "6")
    assert texts(page, "tr.alert >> nth=0 >> td") [:4] == ["2025-12-06T05:46:40.095Z", "critical",
                                                         "secret_read_then_new_egress", "ml/agent-7"]
    assert HOSTILE in page.text_content('tr[data-id="al-live"]')
    shot(page, "alerts")
    # Filters: severity at least high, then a framework id.
    page.select_option("select[name=severity]", "high")
    page.click("form.filters button")
    assert page.text_content("#alert-count") == "4"
    page.goto(served.url + "/alerts?framework=ASI02")
    assert [page.get_attribute(x, "data-id") for x in ["tr.alert"]] == ["al-3"]

    # Follow an alert to its evidence; acknowledge it there.
    page.click('tr[data-id="al-3"] a.evidence')
    page.wait_for_url("**/alerts/al-3")
    assert page.text_content("#evidence-count") == "3"
    assert texts(page, "tr.event td:nth-child(2)") == ["process.exec"] * 3
    assert texts(page, "tr.event td:nth-child(4)") == ["101", "102", "102"]
    page.click("form.ack-form button")
    page.wait_for_url("**/alerts/al-3")
    assert page.locator("form.ack-form").count() == 0 and "console at 20" in page.text_content("table.kv")
    shot(page, "evidence")

    # Timeline, tree and investigation of the agent's pod.
    page.click("text=ml/agent-7")
    page.wait_for_url("**/timeline?w=ml%2Fagent-7")
    assert page.locator("details.span").count() == 3
    assert texts(page, "details.span strong.tool") == ["read_file", "run_shell", "http_post"]
    assert page.locator("svg.timeline g.mark.call").count() == 3
    assert page.locator("table.decisions tr.decision").count() == 1
    shot(page, "timeline")
    page.click("p.wnav >> text=Process tree")
    assert page.text_content("#count-processes") == "6"
    assert page.locator("svg.proctree g.proc.alerting").count() == 1
    assert page.get_attribute("svg.proctree g.proc.alerting", "data-pid") == "101"
    shot(page, "tree")
    # Zoom to the second tool call: the other views keep the window.
    page.go_back()
    page.click('details.span[data-call="c-2"] a.zoomto')
    assert texts(page, "details.span strong.tool") == ["run_shell"]
    page.click("p.wnav >> text=Process tree")
    assert page.text_content("#count-processes") == "3"  # the processes the second call started
    page.click("p.wnav >> text=Investigation")
    frame = page.frame_locator("iframe.report")
    frame.locator("svg.proctree").wait_for()
    assert frame.locator("svg.proctree g.proc").count() == 3
    assert frame.locator("div.verdict strong").inner_text() == "No connection to another host followed a secret read."
    with page.expect_download() as dl:
        page.click("a.dl >> text=Markdown")
    assert dl.value.suggested_filename == "runwatch-report-ml_agent-7.md"
    shot(page, "investigate")

    # Health
    page.click("nav >> text=Health")
    assert (page.text_content("#run-count"), page.text_content("td.drops"), page.text_content("td.source")) == (
        "1", "7", "kernel")
    shot(page, "health")

    # Nothing the workloads wrote ran: no script error, no dialog, no marker set.
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert (errors, dialogs) == ([], [])
    ctx.close()


def test_a_wrong_token_stays_on_the_login_form(served: ConsoleServer, browser: Any) -> None:
    page = browser.new_page()
    log_in(page, served.url + "/health", token="not-the-token-at-all")
    assert "/login" in page.url and page.text_content("p.problem") == "wrong token"
    page.close()
