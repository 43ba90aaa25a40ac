"""The console in a real browser (headless Chromium via Playwright), desk and phone widths."""

from __future__ import annotations

from api.config import DEMO_PASSWORD
from tests.conftest import HQ_EMAIL, NORTH

PHONE = {"width": 390, "height": 844}


def _sign_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/console/")
    assert "/console/login" in page.url
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console/")


def _images_loaded(page, selector: str) -> list[int]:
    """naturalWidth of each matching image once loaded (0 = broken)."""
    page.wait_for_load_state("networkidle")
    return page.eval_on_selector_all(
        selector, "els => els.map(e => e.complete ? e.naturalWidth : 0)"
    )


def test_manager_reviews_a_synced_inspection_and_returns_it(
    browser, live_server, synced, artifacts
):
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in(page, live_server, NORTH)

    row = page.locator(f"tr[data-inspection='{synced['iid']}']")
    assert row.count() == 1
    assert "Critical" in row.inner_text()
    assert page.locator(f"tr[data-inspection='{synced['south']}']").count() == 0
    row.get_by_role("link", name="Open").click()
    page.wait_for_url(f"**/console/inspections/{synced['iid']}")

    widths = _images_loaded(page, f"img[data-attachment='{synced['att']}']")
    assert widths and all(w > 0 for w in widths), widths  # the thumbnail really loaded
    first_item = page.locator("li.item").first
    assert "failed" in (first_item.get_attribute("class") or "")  # failed items first
    assert "North Grand Hotel" in page.locator("#inspection-header").inner_text()
    page.screenshot(path=str(artifacts / "console-inspection.png"), full_page=True)

    page.fill("#return-comment", "Clean under the sink and send a new photo")
    page.click("#return")
    page.wait_for_selector(".flash.ok")
    assert "Returned" in page.locator("#status").inner_text()
    assert "send a new photo" in page.locator("#review-comment").inner_text()

    phone = synced["phone"]
    phone.sync()
    record = phone.get("inspections", synced["iid"])
    assert record["status"] == "returned"
    assert record["review_comment"] == "Clean under the sink and send a new photo"

    response = page.goto(f"{live_server}/console/inspections/{synced['south']}")
    assert response.status == 404
    assert "South Bay" not in page.content()
    context.close()


def test_hq_dashboard_in_chinese_by_default(browser, live_server, synced, artifacts):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in(page, live_server, HQ_EMAIL)
    assert "审核队列" in page.inner_text("h1")
    page.click("a[data-nav=dashboard]")
    page.check("input[name=group_by][value=region]")
    page.uncheck("input[name=group_by][value=site]")
    page.click("#report-form button[type=submit]")
    page.wait_for_selector("#summary")
    assert "North" in page.locator("#summary").inner_text()
    assert "地面清洁" in page.locator("#failing").inner_text()
    assert all(w > 0 for w in _images_loaded(page, "#chart"))
    with page.expect_download() as download:
        page.click("#csv")
    assert download.value.suggested_filename == "compliance.csv"
    page.screenshot(path=str(artifacts / "console-dashboard.png"), full_page=True)
    page.click("text=EN")
    assert "Compliance dashboard" in page.inner_text("h1")
    context.close()


def test_pages_fit_a_phone(browser, live_server, synced, artifacts):
    context = browser.new_context(locale="en-GB", viewport=PHONE, is_mobile=True)
    page = context.new_page()
    _sign_in(page, live_server, NORTH)
    for path, shot in (
        ("/console/", None),
        (f"/console/inspections/{synced['iid']}", "console-inspection-phone.png"),
        ("/console/actions", None),
        ("/console/dashboard", None),
    ):
        page.goto(f"{live_server}{path}")
        page.wait_for_load_state("networkidle")
        # Wide tables scroll inside their own box; the page itself never scrolls sideways.
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= PHONE["width"], (path, overflow)
        if shot:
            page.screenshot(path=str(artifacts / shot), full_page=True)
    assert page.locator("#report-form button[type=submit]").is_visible()
    context.close()
