"""The supervisor's live views in Chromium: watching the agents board while an agent takes a chat, then listening in."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_chat_flows import (
    DEMO_PASSWORD,
    Person,
    agent_accepts_offer,
    agent_logs_in,
    assert_no_serious_axe_violations,
    customer_opens_chat,
    customer_says,
    demo_data,  # noqa: F401 (fixture)
    fill_prechat,
)

pytestmark = [pytest.mark.browser]


def supervisor_logs_in(browser, base_url: str) -> Person:
    person = Person(browser)
    page = person.page
    page.goto(f"{base_url}/login/")
    page.locator("#id_username").fill("supervisor")
    page.locator("#id_password").fill(DEMO_PASSWORD)
    page.locator(".login-card button[type='submit']").click()
    # A supervisor without an agent profile lands in the admin, which links the live views.
    page.wait_for_url(f"{base_url}/admin/")
    return person


def test_supervisor_sees_an_accepted_chat_live_and_listens_in(demo_data, live_server_url, browser):  # noqa: F811
    base = live_server_url
    sara = supervisor_logs_in(browser, base)
    board = sara.page
    board.locator("#supervisor-live").get_by_role("link", name="Agents board").click()
    expect(board.locator("#connection-status")).to_have_attribute("data-connected", "true")

    anna = agent_logs_in(browser, base, "agent1")
    row = board.locator("tr[data-agent='agent1']")
    # Anna's login reaches the open board without a reload.
    expect(row).to_have_attribute("data-state", "ready")
    expect(row.locator("td[data-medium='chat']")).to_have_text("0")

    tom = customer_opens_chat(browser, base)
    fill_prechat(tom.page, name="Tom Tester", question="Can I move my flight?")
    conversation = agent_accepts_offer(anna.page)

    expect(row).to_have_attribute("data-state", "busy")
    expect(row.locator("td[data-medium='chat']")).to_have_text("1")
    expect(row.locator(".capacity")).to_have_text("25 %")
    expect(row).to_contain_text("Mid-interaction")

    # Find the live chat and listen in.
    board.get_by_role("link", name="Conversations").click()
    board.get_by_label("Status").select_option("live")
    board.get_by_role("button", name="Filter").click()
    board.locator(f"tr[data-conversation='{conversation}']").get_by_role("link", name="Listen in").click()
    expect(board.locator("#connection-status")).to_have_attribute("data-connected", "true")
    timeline = board.locator(f"#timeline-{conversation}")
    expect(timeline.locator(".entry.from-customer", has_text="Can I move my flight?")).to_have_count(1)
    expect(board.locator("#monitor-header .monitor-agent")).to_have_text("Anna Becker")
    expect(board.locator("textarea")).to_have_count(0)

    customer_says(tom.page, "It is booking HX-1234.")
    expect(timeline.locator(".entry.from-customer", has_text="It is booking HX-1234.")).to_have_count(1)
    anna.page.locator(f"#composer-text-{conversation}").fill("Let me check Friday for you.")
    anna.page.locator(f"#composer-text-{conversation}").press("Enter")
    expect(timeline.locator(".entry.from-agent", has_text="Let me check Friday for you.")).to_have_count(1)

    for person in (sara, anna, tom):
        assert person.errors == [], person.errors
        person.close()


def test_supervisor_pages_have_no_serious_accessibility_violations(demo_data, live_server_url, browser):  # noqa: F811
    base = live_server_url
    person = Person(browser, bypass_csp=True)
    page = person.page
    page.goto(f"{base}/login/")
    page.locator("#id_username").fill("supervisor")
    page.locator("#id_password").fill(DEMO_PASSWORD)
    page.locator(".login-card button[type='submit']").click()
    page.wait_for_url(f"{base}/admin/")
    for path in ("agents/", "queues/", "conversations/", "reports/", "audit/"):
        page.goto(f"{base}/supervisor/{path}")
        assert_no_serious_axe_violations(page, path)
    page.goto(f"{base}/supervisor/conversations/")
    page.locator(".conversation-row a").first.click()
    expect(page.locator("#monitor-header")).to_be_visible()
    assert_no_serious_axe_violations(page, "monitoring")
    assert person.errors == [], person.errors
    person.close()
