"""Web chat flows end to end: customers on the real chat page, agents on the desktop, all in Chromium.

Each test is one complete story a person lives through: the customer in
their own browser context on /chat/<slug>/ (or the embed snippet on the demo
website), one or two agents in theirs, daphne serving everything, and for
the missed offer a real Celery worker running the offer's timer.
"""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser]

DEMO_PASSWORD = "parley-demo"
AXE = Path(__file__).resolve().parent.parent / "assets" / "axe.min.js"
UUID_IN_URL = re.compile(r"/desktop/c/([0-9a-f-]{36})/$")

# Installed before the chat page's own script: remembers every socket the page
# opens and, while window.__holdSockets is set, points new ones at another port,
# so the test can cut the customer's connection and keep it down for a while
# (window.__stallTo: at that address instead). The page's connect-src refuses
# those in the browser, which fires "error" and no "close" (Chromium 156).
# Each socket's events go to window.__socketLog.
SOCKET_CUTTER = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.__holdSockets = false;
  window.__socketLog = [];
  const note = (n, what) => window.__socketLog.push(`${Math.round(performance.now())}ms #${n} ${what}`);
  class Tracked extends Native {
    constructor(url, protocols) {
      super(window.__stallTo || (window.__holdSockets ? "ws://127.0.0.1:65531/" : url), protocols);
      this.meant = url;
      const n = window.__sockets.push(this);
      note(n, `new ${this.url} for ${url}`);
      this.addEventListener("open", () => note(n, "open"));
      this.addEventListener("error", () => note(n, `error in state ${this.readyState}`));
      this.addEventListener("close", (e) => note(n, `close ${e.code}`));
      this.addEventListener("message", (e) => note(n, `frame ${String(e.data).slice(0, 60)}`));
    }
    close(...args) {
      note(window.__sockets.indexOf(this) + 1, `close() in state ${this.readyState}`);
      super.close(...args);
    }
  }
  window.WebSocket = Tracked;
})();
"""


# --- seed data and database access ---------------------------------------------------------------------------


def in_own_thread(work):
    """ORM work between browser steps, on a connection of its own that is closed afterwards.

    Playwright's sync API runs the test in greenlets, and Django's connections
    are context-local: a query made there would leave a connection pytest-django
    never closes (PostgreSQL then refuses to drop the test database).
    """
    from django.db import connections

    result = {}

    def run():
        try:
            result["value"] = work()
        except Exception as exc:
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


@pytest.fixture
def demo_data(transactional_db):
    """The demo contact center: agent1 Anna Becker (Bookings, Support), agent2 Jonas Weber (Bookings), …"""
    from agents.models import NotReadyReason

    call_command("seed_demo", allow_production=True, stdout=io.StringIO())
    # A data migration creates the system reason; an earlier transactional test's flush may have removed it.
    NotReadyReason.objects.get_or_create(
        code=NotReadyReason.MISSED,
        defaults={"name": "Missed offer", "is_system": True, "is_active": True, "position": 999},
    )


# --- people in browsers --------------------------------------------------------------------------------------


class Person:
    """One browser context and page, with the page's uncaught script errors collected."""

    def __init__(self, browser, *, locale: str = "en-US", bypass_csp: bool = False) -> None:
        # axe is injected as an inline script tag, which the pages' CSP would refuse.
        self.context = browser.new_context(locale=locale, bypass_csp=bypass_csp)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        # "End chat" asks for confirmation.
        self.page.on("dialog", lambda dialog: dialog.accept())

    def close(self) -> None:
        self.context.close()


def agent_logs_in(browser, base_url: str, username: str, *, locale: str = "en-US", bypass_csp: bool = False):
    person = Person(browser, locale=locale, bypass_csp=bypass_csp)
    page = person.page
    page.goto(f"{base_url}/login/")
    # By id: the labels are translated.
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(DEMO_PASSWORD)
    page.locator(".login-card button[type='submit']").click()
    page.wait_for_url(f"{base_url}/desktop/")
    expect(page.locator("#connection-status")).to_have_attribute("data-connected", "true")
    return person


def customer_opens_chat(browser, base_url: str, *, locale: str = "en-US", bypass_csp: bool = False):
    person = Person(browser, locale=locale, bypass_csp=bypass_csp)
    person.context.add_init_script(SOCKET_CUTTER)
    person.page.goto(f"{base_url}/chat/bookings/")
    expect(person.page.locator("#prechat-form")).to_be_visible()
    return person


def expect_chat_connected(page, *, timeout: float = 20000) -> None:
    """The chat page says it is connected; failing, the message lists what each of its sockets went through."""
    try:
        expect(page.locator("#chat-connection")).to_have_attribute("data-connected", "true", timeout=timeout)
    except AssertionError as exc:
        sockets = page.evaluate(
            "() => window.__socketLog.concat(window.__sockets.map((s, i) => `#${i + 1} now ${s.readyState}`))"
        )
        raise AssertionError(f"{exc}\nthe page's sockets:\n" + "\n".join(sockets)) from None


def fill_prechat(scope, *, name: str, question: str, email: str = "") -> None:
    """Fill and send the pre-chat form (on the page or inside the widget's frame)."""
    scope.locator("#prechat-name").fill(name)
    if email:
        scope.locator("#prechat-email").fill(email)
    scope.locator("#prechat-question").fill(question)
    scope.locator("#prechat-submit").click()
    expect(scope.locator("#chat-log .chat-entry.is-customer", has_text=question)).to_have_count(1)


def customer_says(page, text: str) -> None:
    page.locator("#composer-text").fill(text)
    page.locator("#composer-text").press("Enter")
    expect(page.locator("#chat-log .chat-entry.is-customer", has_text=text)).to_have_count(1)


def agent_accepts_offer(page) -> str:
    """Accept the one offer shown; returns the conversation's uuid from the workspace URL."""
    page.locator("#offers [data-offer-accept]").click()
    expect(page).to_have_url(UUID_IN_URL)
    expect(page.locator("#offers .offer")).to_have_count(0)
    return UUID_IN_URL.search(page.url).group(1)


def agent_says(page, conversation: str, text: str) -> None:
    composer = page.locator(f"#composer-text-{conversation}")
    composer.fill(text)
    composer.press("Enter")
    expect(composer).to_have_value("")
    expect(page.locator(f"#timeline-{conversation} .entry.from-agent", has_text=text)).to_have_count(1)


def serious_axe_violations(page) -> list[str]:
    assert AXE.exists(), f"axe-core is committed at {AXE}"
    page.add_script_tag(path=str(AXE))
    result = json.loads(page.evaluate("async () => JSON.stringify(await axe.run(document))"))
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']}\n"
        + "\n".join(f"    {node['target']}: {node['failureSummary']}" for node in violation["nodes"])
        for violation in result["violations"]
        if violation["impact"] in ("serious", "critical")
    ]


def assert_no_serious_axe_violations(page, where: str) -> None:
    violations = serious_axe_violations(page)
    assert not violations, f"axe on {where}:\n" + "\n".join(violations)


# --- the flows -------------------------------------------------------------------------------------------


def test_chat_from_offer_through_transfer_to_wrapup_lands_in_history(demo_data, live_server_url, browser):
    base = live_server_url
    # Both in Bookings and Ready; Jonas signed in first, so he has been idle longest and gets the chat.
    jonas = agent_logs_in(browser, base, "agent2")
    anna = agent_logs_in(browser, base, "agent1")
    for agent in (jonas, anna):
        expect(agent.page.locator("#agent-state")).to_have_attribute("data-state", "ready")
    a, b = jonas.page, anna.page

    tom = customer_opens_chat(browser, base)
    customer = tom.page
    log = customer.locator("#chat-log")
    fill_prechat(customer, name="Tom Tester", email="tom.tester@example.com", question="Can I move my flight?")
    question = log.locator(".chat-entry.is-customer", has_text="Can I move my flight?")
    # Nobody has read it yet: a single tick.
    expect(question.locator(".entry-receipt")).to_have_attribute("data-receipt", "delivered")

    # The offer reaches Jonas, not Anna: contact name and service.
    offer = a.locator("#offers .offer")
    expect(offer).to_have_count(1)
    expect(offer.locator(".offer-title")).to_contain_text("Tom Tester")
    expect(offer.locator(".offer-service")).to_have_text("Bookings")
    expect(b.locator("#offers .offer")).to_have_count(0)

    conversation = agent_accepts_offer(a)
    timeline_a = a.locator(f"#timeline-{conversation}")
    expect(timeline_a.locator(".entry.from-customer", has_text="Can I move my flight?")).to_have_count(1)
    expect(customer.locator("#chat-status")).to_have_text("You are chatting with Jonas.")
    # Jonas's screen showed the question: it turns read (✓✓) on Tom's side.
    expect(question.locator(".entry-receipt")).to_have_attribute("data-receipt", "read")
    expect(question.locator(".entry-receipt [aria-hidden='true']")).to_have_text("✓✓")

    # Typing is seen on the other side, both ways.
    customer.locator("#composer-text").press_sequentially("It is booking")
    expect(a.locator(f"#typing-{conversation}")).to_have_text("Tom Tester is typing…")
    customer.locator("#composer-text").press_sequentially(" HX-1234.")
    customer.locator("#composer-text").press("Enter")
    expect(timeline_a.locator(".entry.from-customer", has_text="It is booking HX-1234.")).to_have_count(1)
    own = log.locator(".chat-entry.is-customer", has_text="It is booking HX-1234.")
    expect(own.locator(".entry-receipt")).to_have_attribute("data-receipt", "read")

    composer_a = a.locator(f"#composer-text-{conversation}")
    composer_a.press_sequentially("Let me check")
    expect(customer.locator("#chat-typing")).to_be_visible()
    expect(customer.locator("#chat-typing")).to_have_text("The agent is typing…")
    composer_a.press_sequentially(" Friday for you.")
    composer_a.press("Enter")
    reply = log.locator(".chat-entry.is-agent", has_text="Let me check Friday for you.")
    expect(reply).to_have_count(1)
    expect(customer.locator("#chat-typing")).to_be_hidden()
    # Tom's page showed the reply: Jonas sees it read.
    reply_a = timeline_a.locator(".entry.from-agent", has_text="Let me check Friday for you.")
    expect(reply_a).to_have_count(1)
    expect(reply_a.locator(".delivery")).to_have_class(re.compile(r"\bdelivery-read\b"))
    expect(reply_a.locator(".delivery [aria-hidden='true']")).to_have_text("✓✓")

    # An internal note: on Jonas's timeline only.
    a.get_by_label("Internal note").check()
    composer_a.fill("Frequent flyer, waive the change fee")
    composer_a.press("Enter")
    expect(timeline_a.locator(".entry-note")).to_contain_text("Frequent flyer, waive the change fee")

    # Transfer to Anna with a note.
    a.get_by_text("Transfer", exact=True).click()
    form = a.locator(".transfer-form")
    form.get_by_label("Transfer to").select_option(label="Anna Becker (Ready)")
    form.get_by_label("Note for the receiving agent").fill("Wants Friday, fee waived")
    form.get_by_role("button", name="Transfer").click()
    expect(a).to_have_url(f"{base}/desktop/")
    expect(a.locator("#workspace .notice")).to_contain_text("Anna Becker")
    expect(customer.locator("#chat-log .chat-entry.is-system").last).to_have_text(
        "You are being transferred. Please wait a moment."
    )

    # Anna is offered it as a transfer, with Jonas's note.
    offer_b = b.locator("#offers .offer")
    expect(offer_b).to_have_count(1)
    expect(offer_b.locator(".offer-title")).to_contain_text("Tom Tester")
    expect(offer_b.locator(".offer-transfer")).to_contain_text("Transferred by Jonas Weber")
    expect(offer_b.locator(".offer-transfer")).to_contain_text("Wants Friday, fee waived")
    assert agent_accepts_offer(b) == conversation
    expect(customer.locator("#chat-status")).to_have_text("You are chatting with Anna.")

    # Anna sees everything before her, the transfer note included; Jonas's list no longer has it.
    timeline_b = b.locator(f"#timeline-{conversation}")
    expect(timeline_b.locator(".entry.from-customer")).to_have_count(2)
    expect(timeline_b.locator(".entry.from-agent", has_text="Let me check Friday for you.")).to_have_count(1)
    expect(timeline_b.locator(".entry-note")).to_contain_text("Frequent flyer, waive the change fee")
    transferred = timeline_b.locator(".entry-transferred")
    expect(transferred).to_contain_text("Jonas Weber transferred the conversation to Anna Becker")
    expect(transferred.locator(".transfer-note")).to_have_text("Wants Friday, fee waived")
    expect(a.locator(f"#acl-{conversation}")).to_have_count(0)
    expect(a.locator("#active-conversations .acl-row")).to_have_count(0)
    expect(b.locator(f"#acl-{conversation}")).to_contain_text("Tom Tester")

    agent_says(b, conversation, "Done: you fly on Friday, no fee.")
    expect(log.locator(".chat-entry.is-agent", has_text="Done: you fly on Friday, no fee.")).to_have_count(1)
    customer_says(customer, "Thank you!")
    expect(timeline_b.locator(".entry.from-customer", has_text="Thank you!")).to_have_count(1)
    # The note never reached Tom, though everything around it did.
    expect(log).not_to_contain_text("Frequent flyer")
    expect(log).not_to_contain_text("fee waived")
    expect(log.locator(".chat-entry.is-agent")).to_have_count(2)

    # Anna ends the chat and wraps up.
    b.get_by_role("button", name="End chat").click()
    expect(customer.locator("#chat-status")).to_have_text("The chat has ended.")
    expect(customer.locator("#new-chat")).to_be_visible()
    wrapup = b.locator(".wrapup-form")
    expect(wrapup).to_be_visible()
    wrapup.get_by_label("Disposition").select_option(label="Booking changed")
    wrapup.get_by_label("Wrap-up notes").fill("Moved to Friday, change fee waived.")
    wrapup.get_by_role("button", name="Close conversation").click()
    expect(b).to_have_url(f"{base}/desktop/")
    expect(b.locator("#active-conversations .acl-row")).to_have_count(0)
    expect(b.locator("#workspace .notice")).to_contain_text("Tom Tester")

    # Tom comes back later; the agent serving him finds the first chat under "Previous conversations".
    customer.locator("#new-chat").click()
    fill_prechat(customer, name="Tom Tester", email="tom.tester@example.com", question="One more question")
    expect(a.locator("#offers .offer")).to_have_count(1)
    later = agent_accepts_offer(a)
    assert later != conversation
    previous = a.locator("#contact-panel .history-item")
    expect(previous).to_have_count(1)
    expect(previous.locator(".history-outcome")).to_have_text("Booking changed")
    expect(previous.locator(".history-agent")).to_have_text("Anna Becker")
    previous.get_by_role("link").click()
    expect(a).to_have_url(f"{base}/desktop/history/{conversation}/")

    record = a.locator(".history-page")
    expect(a.get_by_role("heading", name="Conversation with Tom Tester")).to_be_visible()
    expect(record.locator(".record-facts")).to_contain_text("Booking changed")
    expect(record.locator(".record-notes")).to_have_text("Moved to Friday, change fee waived.")
    history = a.locator(f"#timeline-{conversation}")
    for text in ("Can I move my flight?", "It is booking HX-1234.", "Thank you!"):
        expect(history.locator(".entry.from-customer", has_text=text)).to_have_count(1)
    for text in ("Let me check Friday for you.", "Done: you fly on Friday, no fee."):
        expect(history.locator(".entry.from-agent", has_text=text)).to_have_count(1)
    expect(history.locator(".entry-note")).to_contain_text("Frequent flyer, waive the change fee")
    expect(history.locator(".entry-transferred .transfer-note")).to_have_text("Wants Friday, fee waived")
    expect(history.locator(".entry-closed")).to_contain_text("Conversation closed · Booking changed")

    for person in (jonas, anna, tom):
        assert person.errors == []
        person.close()


def test_missed_offer_returns_chat_to_queue_and_sets_agent_not_ready(demo_data, live_server_url, browser, tmp_path):
    from config.celery import app as celery_app
    from conversations.models import Offer, Service
    from tests.conftest import redis_available, require_component
    from tests.live import celery_worker

    if settings.REDIS_URL:
        require_component(redis_available(), f"Redis at {settings.REDIS_URL}")
    # Only Jonas (Bookings) will be signed in; 5 s is the shortest offer timeout a service may have.
    in_own_thread(lambda: Service.objects.filter(slug="bookings").update(offer_timeout_seconds=5))
    celery_app.control.purge()
    hostname = f"parley-chat-flows-{uuid.uuid4().hex[:8]}@localhost"
    with celery_worker(tmp_path / "worker.log", hostname) as worker:
        jonas = agent_logs_in(browser, live_server_url, "agent2")
        a = jonas.page
        expect(a.locator("#agent-state")).to_have_attribute("data-state", "ready")

        tom = customer_opens_chat(browser, live_server_url)
        customer = tom.page
        fill_prechat(customer, name="Mia Missed", question="Is anyone there?")
        offer = a.locator("#offers .offer")
        expect(offer).to_have_count(1)
        expect(offer).to_contain_text("Mia Missed")
        expect(customer.locator("#chat-status")).to_have_text("Connecting you to an agent…")

        # Jonas does nothing. The worker expires the offer when its time is up.
        deadline = time.monotonic() + 30
        while not in_own_thread(lambda: Offer.objects.filter(state=Offer.State.EXPIRED).exists()):
            assert worker.poll() is None, "the Celery worker exited:\n" + (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the offer did not expire; worker log:\n" + (
                tmp_path / "worker.log"
            ).read_text(errors="replace")
            a.wait_for_timeout(250)

        # Without Redis the worker's events reach daphne through the database relay (core.realtime).
        expect(offer).to_have_count(0, timeout=10000)
        state = a.locator("#agent-state")
        expect(state).to_have_attribute("data-state", "not_ready")
        expect(state.locator(".state-label")).to_have_text("Not Ready: Missed offer")
        # Back in the queue: the customer is still waiting, first in line.
        expect(customer.locator("#chat-status")).to_have_text(
            "Waiting for an agent… You are number 1 in the queue.", timeout=10000
        )
        expect(customer.locator("#chat-log .chat-entry.is-customer", has_text="Is anyone there?")).to_have_count(1)

        # Anna signs in (Ready on login) and is offered the waiting chat at once.
        anna = agent_logs_in(browser, live_server_url, "agent1")
        b = anna.page
        offer_b = b.locator("#offers .offer")
        expect(offer_b).to_have_count(1)
        expect(offer_b).to_contain_text("Mia Missed")
        expect(customer.locator("#chat-status")).to_have_text("Connecting you to an agent…")
        conversation = agent_accepts_offer(b)
        expect(b.locator(f"#timeline-{conversation}")).to_contain_text("Is anyone there?")
        expect(customer.locator("#chat-status")).to_have_text("You are chatting with Anna.")
        # Jonas stays Not Ready: nothing more is offered to him.
        expect(a.locator("#offers .offer")).to_have_count(0)
        expect(state).to_have_attribute("data-state", "not_ready")

        for person in (jonas, anna, tom):
            assert person.errors == []
            person.close()


def test_customer_reload_keeps_the_chat_and_backfills(demo_data, live_server_url, browser):
    jonas = agent_logs_in(browser, live_server_url, "agent2")
    a = jonas.page
    tom = customer_opens_chat(browser, live_server_url)
    customer = tom.page
    log = customer.locator("#chat-log")
    fill_prechat(customer, name="Rita Reload", question="Can I bring a bike?")
    conversation = agent_accepts_offer(a)
    agent_says(a, conversation, "Yes, bikes are welcome.")
    agent_says(a, conversation, "Please book a bike slot.")
    agent_texts = log.locator(".chat-entry.is-agent .entry-text")
    expect(agent_texts).to_have_text(["Yes, bikes are welcome.", "Please book a bike slot."])

    # A reload resumes the same chat from the browser's stored session: no form, nothing twice.
    customer.reload()
    expect(customer.locator("#chat")).to_have_attribute("data-view", "chat")
    expect(customer.locator("#prechat")).to_be_hidden()
    expect(customer.locator("#chat-status")).to_have_text("You are chatting with Jonas.")
    expect(log.locator(".chat-entry")).to_have_count(3)
    expect(log.locator(".chat-entry.is-customer .entry-text")).to_have_text(["Can I bring a bike?"])
    expect(agent_texts).to_have_text(["Yes, bikes are welcome.", "Please book a bike slot."])

    # The connection drops and stays down while Jonas writes twice: the chat's socket and the one the
    # call controls keep beside it.
    customer.evaluate(
        "() => { window.__holdSockets = true;"
        " window.__sockets.filter((s) => s.url.includes('/ws/chat/')).at(-1).close();"
        " window.__sockets.filter((s) => s.url.includes('/ws/voice/')).at(-1).close(); }"
    )
    expect(customer.locator("#chat-connection")).to_have_attribute("data-connected", "false")
    expect(customer.locator("#chat-connection")).to_have_text("Connection lost. Reconnecting…")
    agent_says(a, conversation, "The slot costs 10 euros.")
    agent_says(a, conversation, "Shall I add it?")
    expect(log).not_to_contain_text("The slot costs 10 euros.")
    # Both have tried again meanwhile, and failed.
    for path in ("/ws/chat/", "/ws/voice/"):
        customer.wait_for_function(
            f"() => window.__sockets.some((s) => s.url.includes(':65531/') && s.meant.includes('{path}'))",
            timeout=10000,
        )

    # Back online: both arrive, once each, in order.
    customer.evaluate("() => { window.__holdSockets = false; window.dispatchEvent(new Event('online')); }")
    expect_chat_connected(customer)
    expect(agent_texts).to_have_text(
        ["Yes, bikes are welcome.", "Please book a bike slot.", "The slot costs 10 euros.", "Shall I add it?"]
    )
    expect(log.locator(".chat-entry")).to_have_count(5)
    # The call controls' socket is back too (they open a new one for the session the chat resumed).
    customer.wait_for_function(
        "() => window.__sockets.filter((s) => s.url.includes('/ws/voice/')).at(-1).readyState === 1", timeout=20000
    )
    # The live path works again after the back-fill.
    agent_says(a, conversation, "Done.")
    expect(agent_texts.last).to_have_text("Done.")
    expect(log.locator(".chat-entry")).to_have_count(6)

    for person in (jonas, tom):
        assert person.errors == []
        person.close()


def test_customer_socket_whose_handshake_hangs_is_given_up(demo_data, live_server_url, browser):
    jonas = agent_logs_in(browser, live_server_url, "agent2")
    a = jonas.page
    # The page's connect-src would refuse the other port at once: lifted, so the socket reaches it.
    tom = customer_opens_chat(browser, live_server_url, bypass_csp=True)
    customer = tom.page
    log = customer.locator("#chat-log")
    fill_prechat(customer, name="Hana Hang", question="Is the 9:40 ferry on time?")
    conversation = agent_accepts_offer(a)
    agent_says(a, conversation, "Let me check.")
    expect(log.locator(".chat-entry.is-agent .entry-text")).to_have_text(["Let me check."])

    # A server that takes the connection and never answers the handshake: the browser alone would wait
    # for minutes. The chat's socket drops, and the page's next try lands there.
    with socket.create_server(("127.0.0.1", 0), backlog=16) as mute:
        port = mute.getsockname()[1]
        customer.evaluate(
            f"() => {{ window.__stallTo = 'ws://127.0.0.1:{port}/';"
            " window.__sockets.filter((s) => s.url.includes('/ws/chat/')).at(-1).close(); }"
        )
        stalled = f"() => window.__sockets.some((s) => s.url.includes(':{port}/') && s.readyState === 0)"
        customer.wait_for_function(stalled, timeout=10000)
        expect(customer.locator("#chat-connection")).to_have_attribute("data-connected", "connecting")
        customer.evaluate("() => { window.__stallTo = null; }")
        agent_says(a, conversation, "It leaves on time.")

        # Given up after RESUME_TIMEOUT_MS (10 s), then the next try resumes and back-fills.
        expect_chat_connected(customer)
        assert customer.evaluate(f"() => window.__sockets.filter((s) => s.url.includes(':{port}/'))[0].readyState") == 3
    expect(log.locator(".chat-entry.is-agent .entry-text")).to_have_text(["Let me check.", "It leaves on time."])

    for person in (jonas, tom):
        assert person.errors == []
        person.close()


def test_embed_snippet_opens_chat_in_a_frame(demo_data, live_server_url, browser):
    jonas = agent_logs_in(browser, live_server_url, "agent2")
    a = jonas.page
    visitor = Person(browser)
    site = visitor.page
    site.goto(f"{live_server_url}/chat/bookings/demo/")
    expect(site.get_by_role("heading", name="Example Travel")).to_be_visible()

    launcher = site.get_by_role("button", name="Chat with us")
    expect(site.locator("iframe[data-parley-chat-frame]")).to_have_count(0)
    launcher.click()
    expect(site.locator("[data-parley-chat-launcher]")).to_have_attribute("aria-expanded", "true")
    frame_element = site.locator("iframe[data-parley-chat-frame='bookings']")
    expect(frame_element).to_be_visible()
    expect(frame_element).to_have_attribute("title", "Chat with Bookings")
    chat = site.frame_locator("iframe[data-parley-chat-frame='bookings']")
    expect(chat.locator("#prechat-form")).to_be_visible()
    expect(chat.locator("body")).to_have_class(re.compile(r"\bis-embedded\b"))

    fill_prechat(chat, name="Fiona Frame", question="Hello from your website")
    offer = a.locator("#offers .offer")
    expect(offer).to_have_count(1)
    expect(offer).to_contain_text("Fiona Frame")
    expect(offer).to_contain_text("Bookings")
    conversation = agent_accepts_offer(a)
    expect(chat.locator("#chat-status")).to_have_text("You are chatting with Jonas.")
    agent_says(a, conversation, "Hello Fiona, how can I help?")
    expect(chat.locator("#chat-log .chat-entry.is-agent .entry-text")).to_have_text(["Hello Fiona, how can I help?"])

    # Closing the widget hides the frame; the chat goes on behind it.
    launcher = site.locator("[data-parley-chat-launcher]")
    launcher.click()
    expect(frame_element).to_be_hidden()
    expect(launcher).to_have_attribute("aria-expanded", "false")

    for person in (jonas, visitor):
        assert person.errors == []
        person.close()


def test_chat_page_and_desktop_pass_axe_in_german_too(demo_data, live_server_url, browser):
    # Selectors here do not depend on the language: the German catalogue is still growing.
    for locale in ("en-US", "de-DE"):
        language = locale[:2]
        agent = agent_logs_in(browser, live_server_url, "agent2", locale=locale, bypass_csp=True)
        customer = customer_opens_chat(browser, live_server_url, locale=locale, bypass_csp=True)
        page = customer.page
        expect(page.locator("html")).to_have_attribute("lang", language)
        assert_no_serious_axe_violations(page, f"the pre-chat form ({locale})")

        fill_prechat(page, name="Axel Access", question="Barrierefrei?")
        conversation = agent_accepts_offer(agent.page)
        agent_says(agent.page, conversation, "Gern, einen Moment bitte.")
        expect(page.locator("#chat-log .chat-entry.is-agent")).to_have_count(1)
        expect(page.locator("#chat")).to_have_attribute("data-chat-state", "active")
        assert_no_serious_axe_violations(page, f"the live chat ({locale})")

        expect(agent.page.locator("html")).to_have_attribute("lang", language)
        expect(agent.page.locator(f"#timeline-{conversation} .entry.from-customer")).to_have_count(1)
        assert_no_serious_axe_violations(agent.page, f"the desktop with the conversation open ({locale})")

        for person in (agent, customer):
            assert person.errors == []
        # The next round starts from a clean slate: the chat ends and the conversation closes.
        agent.page.locator(f"#workspace-header-{conversation} .ws-actions button.danger").click()
        wrapup = agent.page.locator(".wrapup-form")
        expect(wrapup).to_be_visible()
        wrapup.locator("select[name='disposition']").select_option(index=1)
        wrapup.locator("button[type='submit']").click()
        expect(agent.page.locator("#active-conversations .acl-row")).to_have_count(0)
        agent.close()
        customer.close()


def test_wrapup_entries_survive_a_composer_pushed_while_the_agent_fills_it_in(demo_data, live_server_url, browser):
    """A pushed composer with a new key (here: SMS became available) keeps the disposition, notes and draft.

    The agent adds the customer's number in another tab during wrap-up; the workspace offers SMS at once,
    and what the agent had entered in the wrap-up form and the composer is still there.
    """
    from contacts.models import ContactPoint
    from contacts.services import contact_point_create
    from conversations.models import Conversation
    from core import realtime

    realtime.RELAY_THROUGH_DATABASE = realtime.layer_is_in_memory()
    try:
        agent = agent_logs_in(browser, live_server_url, "agent2", locale="de-DE")
        customer = customer_opens_chat(browser, live_server_url, locale="de-DE")
        fill_prechat(customer.page, name="Wanda Wrapup", question="Bitte um Rückruf")
        a = agent.page
        conversation = agent_accepts_offer(a)
        agent_says(a, conversation, "Ich melde mich per SMS.")
        a.locator(f"#workspace-header-{conversation} .ws-actions button.danger").click()
        wrapup = a.locator(".wrapup-form")
        expect(wrapup).to_be_visible()
        sms = a.locator(f"#composer-{conversation} input[name='channel'][value='sms']")
        expect(sms).to_be_disabled()

        wrapup.locator("select[name='disposition']").select_option(label="Follow-up needed")
        wrapup.locator("textarea[name='notes']").fill("Kunde möchte eine SMS.")
        draft = a.locator(f"#composer-text-{conversation}")
        draft.fill("Entwurf einer Notiz")

        def add_number():
            contact = Conversation.objects.get(uuid=conversation).contact
            user = Conversation.objects.get(uuid=conversation).assigned_agent
            contact_point_create(actor=user, contact=contact, kind=ContactPoint.Kind.PHONE, value="+49 30 1234567")

        in_own_thread(add_number)
        expect(sms).to_be_enabled(timeout=10000)
        expect(a.locator("#contact-panel .point-value", has_text="+49301234567")).to_have_count(1)
        expect(wrapup.locator("select[name='disposition'] option:checked")).to_have_text("Follow-up needed")
        expect(wrapup.locator("textarea[name='notes']")).to_have_value("Kunde möchte eine SMS.")
        expect(draft).to_have_value("Entwurf einer Notiz")

        wrapup.locator("button[type='submit']").click()
        expect(a.locator("#active-conversations .acl-row")).to_have_count(0)
        closed = in_own_thread(lambda: Conversation.objects.select_related("disposition").get(uuid=conversation))
        assert closed.status == Conversation.Status.CLOSED
        assert (closed.disposition.name, closed.notes) == ("Follow-up needed", "Kunde möchte eine SMS.")
        for person in (agent, customer):
            assert person.errors == []
            person.close()
    finally:
        realtime.RELAY_THROUGH_DATABASE = False
