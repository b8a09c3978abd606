"""The HTML report rendered in headless Chromium (Debian's, driven by Playwright): the drawn
process tree and timeline are there, the hostile command line is text, and nothing ran or
was fetched."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_synthetic import HOSTILE

from runwatch.report.build import build_report
from runwatch.report.render_html import render

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency (scripts/install.sh)")


def test_html_report_draws_the_tree_and_timeline_and_runs_nothing(synthetic_db: Path, tmp_path: Path,
                                                                  browser: sync_api.Browser) -> None:
    page_file = tmp_path / "report.html"
    page_file.write_text(render(build_report(synthetic_db, "agent-7")))
    page = browser.new_page()
    requests: list[str] = []
    console: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: console.append(m.text))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")
    # One self-contained file: the document is the only thing loaded.
    assert requests == [page_file.as_uri()]
    # The process tree: one node per process, drawn (non-empty box), labels in order.
    assert page.locator("svg.proctree g.proc").count() == 5
    box = page.locator("svg.proctree").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] == 5 * 26 + 12
    labels = page.locator("svg.proctree g.proc > text").all_text_contents()
    assert [" ".join(t.split()[:2]) for t in labels] == [
        "100 /usr/bin/python3", "101 /bin/sh", "102 /usr/bin/curl", "103 /usr/bin/id", "104 /usr/bin/python3"]
    assert page.locator("svg.proctree g.proc.in-call").count() == 3
    # The timeline: a bar per tool call, a marker per secret read and per outbound connection.
    assert page.locator("svg.timeline g.mark.call").count() == 3
    assert page.locator("svg.timeline g.mark.secret").count() == 3
    assert page.locator("svg.timeline g.mark.egress").count() == 3
    assert page.locator("svg.timeline g.lane").count() == 9
    # The hostile command line is shown as text; no element came from it and no script ran.
    text = page.evaluate("document.documentElement.textContent")
    assert HOSTILE in text
    assert page.evaluate("document.querySelectorAll('script, img, b').length") == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert (dialogs, console) == ([], [])
    assert "Yes, data may have left." in page.locator("div.verdict").inner_text()
    page.close()
