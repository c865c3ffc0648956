"""The agent desktop in headless Chromium: log in, change state, see it live."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser]

DEMO_PASSWORD = "parley-demo"


@pytest.fixture
def demo_data(transactional_db):
    call_command("seed_demo", allow_production=True, stdout=io.StringIO())


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/desktop/")


def test_demo_agent_sets_ready_and_sees_state_and_timer_change_without_reload(demo_data, live_server_url, browser):
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, live_server_url, "agent1")

    state = page.locator("#agent-state")
    expect(page.locator("#connection-status")).to_have_attribute("data-connected", "true")
    expect(state).to_have_attribute("data-state", "ready")

    # A marker on window survives only if the page is never reloaded.
    page.evaluate("window.__noReload = true")
    page.select_option("#state-choice", "not_ready.break")
    expect(state).to_have_attribute("data-state", "not_ready")
    expect(state.locator(".state-label")).to_have_text("Not Ready: Break")
    timer = state.locator(".state-timer")
    expect(timer).to_have_text(re.compile(r"^0:0[0-2]$"))
    expect(timer).to_have_text(re.compile(r"^0:0[2-9]$"), timeout=5000)

    page.select_option("#state-choice", "ready")
    expect(state).to_have_attribute("data-state", "ready")
    expect(state.locator(".state-label")).to_have_text("Ready")
    expect(timer).to_have_text(re.compile(r"^0:0[0-2]$"))
    assert page.evaluate("window.__noReload") is True
    assert errors == []
    context.close()


def test_state_change_in_one_tab_is_pushed_to_the_other(demo_data, live_server_url, browser):
    context = browser.new_context(locale="en-US")
    first = context.new_page()
    log_in(first, live_server_url, "agent2")
    second = context.new_page()
    second.goto(f"{live_server_url}/desktop/")
    expect(first.locator("#connection-status")).to_have_attribute("data-connected", "true")
    expect(second.locator("#connection-status")).to_have_attribute("data-connected", "true")

    second.select_option("#state-choice", "not_ready.training")

    expect(first.locator("#agent-state")).to_have_attribute("data-state", "not_ready")
    expect(first.locator("#agent-state .state-label")).to_have_text("Not Ready: Training")
    expect(first.locator("#state-choice")).to_have_value("not_ready.training")
    context.close()


def test_desktop_shows_in_german_after_switching_language(demo_data, live_server_url, browser):
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    log_in(page, live_server_url, "agent3")
    page.select_option("#language-select", "de")
    page.wait_for_load_state()
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_role("heading", name="Aktive Konversationen")).to_be_visible()
    expect(page.locator("#agent-state .state-label")).to_have_text("Bereit")
    page.select_option("#state-choice", "not_ready.break")
    expect(page.locator("#agent-state .state-label")).to_have_text(re.compile(r"^Nicht bereit: "))
    context.close()


def test_logging_out_through_the_state_selector_ends_the_session(demo_data, live_server_url, browser):
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    log_in(page, live_server_url, "agent1")
    page.select_option("#state-choice", "logged_out")
    page.wait_for_url(f"{live_server_url}/login/")
    page.goto(f"{live_server_url}/desktop/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/desktop/$"))
    context.close()
