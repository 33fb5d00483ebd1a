"""The review page in headless Chromium (Debian's, through Playwright): charts render from a review."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from config.policy import Calendar
from review.aggregate import review
from tests.review_data import NOW, SINCE, generate

ASSET_URI = (Path(__file__).resolve().parent.parent / "review" / "assets" / "review.html").as_uri()


async def test_page_renders_a_review_offline(browser: Any, tmp_path: Any) -> None:
    """The page alone (file://, no server, no network): every chart draws from a generated review."""
    tickets, _ = generate(120)
    data = review(
        tickets,
        {"always": Calendar(always_open=True)},
        since=SINCE,
        until=NOW - timedelta(days=1),
        now=NOW,
        group_by="department",
    )
    context = await browser.new_context()
    page = await context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    await page.goto(ASSET_URI)
    await page.evaluate("(r) => render(r)", json.loads(data.model_dump_json()))
    assert await page.locator("#chart-rates polyline.breach_rate").count() == 1
    assert await page.locator("#chart-rates polyline.escalation_rate").count() == 1
    assert await page.locator("#chart-tiers rect.bar").count() == len(data.time_in_tier)
    assert await page.locator("#chart-reasons rect.bar").count() == len(data.reasons) > 0
    assert await page.locator("#groups tr").count() == 1 + len(data.groups)
    links = page.locator("#at-risk a.timeline-link")
    assert await links.count() == len(data.at_risk_tickets) > 0
    first = data.at_risk_tickets[0].ticket_id
    assert await links.first.get_attribute("href") == f"/review/timeline?ticket={first}"
    assert all(u.startswith("file://") for u in requests), requests  # nothing fetched from anywhere else
    await context.close()


async def test_page_renders_an_empty_period(browser: Any) -> None:
    """No tickets at all: the page still draws, says so, and throws nothing."""
    empty = review([], {}, since=SINCE, until=NOW, now=NOW, group_by="tier")
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(ASSET_URI)
    await page.evaluate("(r) => render(r)", json.loads(empty.model_dump_json()))
    assert await page.locator("body[data-loaded=true]").count() == 1
    assert "nothing in this period" in await page.locator("#chart-reasons").inner_text()
    assert await page.locator("#at-risk a").count() == 0
    assert errors == []
    await page.close()
