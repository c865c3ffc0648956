"""A web chat from the agent's side, in headless Chromium against daphne.

The customer uses the real chat page in a second browser context; the agent
works the desktop with the keyboard: offer, accept, reply, canned response,
internal note, a dropped connection with back-fill, end chat, wrap-up.
"""

from __future__ import annotations

import io
import json
import re
import threading
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser]

DEMO_PASSWORD = "parley-demo"
AXE = Path(__file__).resolve().parent.parent / "assets" / "axe.min.js"


@pytest.fixture
def demo_data(transactional_db):
    call_command("seed_demo", allow_production=True, stdout=io.StringIO())


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/desktop/")


def serious_axe_violations(page) -> list[str]:
    assert AXE.exists(), f"axe-core is committed at {AXE}"
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => JSON.stringify(await axe.run(document))")
    violations = json.loads(result)["violations"]
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


def customer_starts_chat(browser, base_url: str, name: str, question: str):
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.goto(f"{base_url}/chat/bookings/")
    page.locator("#prechat-name").fill(name)
    page.locator("#prechat-question").fill(question)
    page.locator("#prechat-submit").click()
    expect(page.locator("#chat-log")).to_contain_text(question)
    return context, page


def customer_says(page, text: str) -> None:
    page.locator("#composer-text").fill(text)
    page.locator("#composer-text").press("Enter")
    expect(page.locator("#chat-log")).to_contain_text(text)


def test_agent_takes_a_chat_from_offer_to_wrapup_with_the_keyboard(demo_data, live_server_url, browser):
    # axe is injected as a script tag, which the page's CSP would refuse.
    agent_context = browser.new_context(locale="en-US", bypass_csp=True)
    agent = agent_context.new_page()
    errors: list[str] = []
    agent.on("pageerror", lambda exc: errors.append(str(exc)))
    agent.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    agent.on("dialog", lambda dialog: dialog.accept())
    log_in(agent, live_server_url, "agent2")
    expect(agent.locator("#connection-status")).to_have_attribute("data-connected", "true")

    customer_context, customer = customer_starts_chat(
        browser, live_server_url, "Tom Tester", "Can I move my booking to Friday?"
    )

    # The offer arrives live: contact, service, waiting timer, chime, announcement.
    offer = agent.locator("#offers .offer")
    expect(offer).to_have_count(1)
    expect(offer).to_contain_text("Tom Tester")
    expect(offer).to_contain_text("Bookings")
    expect(agent.locator("body")).to_have_attribute("data-offer-chimes", re.compile(r"[1-9]"))
    expect(agent.locator("#sr-assertive")).to_contain_text("Tom Tester")
    assert serious_axe_violations(agent) == []

    # Alt+A accepts the newest offer; the workspace opens with the composer focused.
    agent.keyboard.press("Alt+a")
    expect(agent).to_have_url(re.compile(r"/desktop/c/[0-9a-f-]{36}/$"))
    uuid = agent.url.rstrip("/").rsplit("/", 1)[-1]
    timeline = agent.locator(f"#timeline-{uuid}")
    expect(timeline).to_contain_text("Can I move my booking to Friday?")
    expect(agent.locator("#offers .offer")).to_have_count(0)
    row = agent.locator(f"#acl-{uuid}")
    expect(row).to_contain_text("Tom Tester")
    expect(row.locator(".acl-link")).to_have_attribute("aria-current", "true")
    composer = agent.locator(f"#composer-text-{uuid}")
    expect(composer).to_be_focused()
    contact = agent.locator("#contact-panel")
    expect(contact).to_contain_text("Tom Tester")
    expect(contact).to_contain_text("Previous conversations")

    # The customer writes: it appears live, once.
    customer_says(customer, "It is booking HX-1234.")
    expect(timeline.locator(".entry", has_text="It is booking HX-1234.")).to_have_count(1)

    # The open conversation is read as it arrives: no unread count stays behind.
    expect(row).to_have_attribute("data-unread", "0")

    # The "waiting for your reply" timer turns red after a minute.
    waiting = row.locator(".acl-waiting time")
    expect(waiting).to_be_visible()
    agent.evaluate(
        "uuid => document.querySelector('#acl-' + uuid + ' .acl-waiting time')"
        ".setAttribute('data-since', new Date(Date.now() - 61000).toISOString())",
        uuid,
    )
    expect(waiting).to_have_class(re.compile(r"\bis-overdue\b"))

    # Enter sends, once on the agent's side, and the customer receives it: over the desktop's socket, not by POST.
    posts: list[str] = []
    agent.on("request", lambda r: posts.append(r.url) if r.method == "POST" and r.url.endswith("/send/") else None)
    composer.press_sequentially("Friday works")
    composer.press("Shift+Enter")
    composer.press_sequentially("for us.")
    composer.press("Enter")
    expect(composer).to_have_value("")
    expect(timeline.locator(".entry.from-agent")).to_have_count(1)
    expect(timeline.locator(".entry.from-agent")).to_contain_text("Friday works")
    expect(customer.locator("#chat-log")).to_contain_text("Friday works")
    expect(row.locator(".acl-waiting")).to_have_count(0)

    # Typing on at once after Enter loses nothing: each message is sent once, in order.
    composer.press_sequentially("First quick one")
    composer.press("Enter")
    composer.press_sequentially("Second quick one")
    composer.press("Enter")
    expect(timeline.locator(".entry.from-agent")).to_have_count(3)
    expect(timeline.locator(".entry.from-agent").nth(2)).to_contain_text("Second quick one")
    expect(composer).to_have_value("")
    assert posts == []

    # A reply frame lost on the way is sent again with the same id; one sent twice is stored once.
    wrap_send = """mode => {
        const ws = document.body["htmx-internal-data"].webSocket.socket;
        const send = WebSocket.prototype.send.bind(ws);
        let done = false;
        ws.send = data => {
            const reply = !done && String(data).includes('"action":"send"');
            if (reply) { done = true; }
            if (!(reply && mode === "lose")) { send(data); }
            if (reply && mode === "twice") { send(data); }
        };
    }"""
    agent.evaluate(wrap_send, "lose")
    composer.press_sequentially("Lost on the way")
    composer.press("Enter")
    expect(composer).to_have_value("")
    expect(timeline.locator(".entry.from-agent", has_text="Lost on the way")).to_have_count(1, timeout=15000)
    agent.evaluate(wrap_send, "twice")
    composer.press_sequentially("Sent twice")
    composer.press("Enter")
    expect(customer.locator("#chat-log")).to_contain_text("Sent twice")
    agent.wait_for_timeout(1000)
    expect(timeline.locator(".entry.from-agent", has_text="Sent twice")).to_have_count(1)
    expect(customer.locator("#chat-log .chat-entry", has_text="Sent twice")).to_have_count(1)
    expect(timeline.locator(".entry.from-agent")).to_have_count(5)
    assert posts == []

    # "/" suggests canned responses with the customer's name filled in.
    composer.press_sequentially("/hel")
    option = agent.locator(f"#canned-{uuid} [role='option']", has_text="/hello")
    expect(option).to_be_visible()
    expect(option).to_contain_text("Hello Tom,")
    composer.press("Enter")
    expect(composer).to_have_value(re.compile(r"^Hello Tom, thank you for contacting us"))
    composer.fill("")

    # An internal note is on the timeline, never in the customer's chat.
    agent.get_by_label("Internal note").check()
    composer.fill("VIP: offer a free seat upgrade")
    composer.press("Enter")
    expect(timeline.locator(".entry-note")).to_contain_text("VIP: offer a free seat upgrade")
    assert serious_axe_violations(agent) == []

    # The connection drops; what the customer writes meanwhile is back-filled on reconnect.
    assert errors == []
    agent.evaluate(
        """() => {
            window.__hold = true;
            const original = htmx.createWebSocket;
            htmx.createWebSocket = (url) => window.__hold ? new WebSocket("ws://127.0.0.1:9/") : original(url);
            document.body["htmx-internal-data"].webSocket.socket.close();
        }"""
    )
    expect(agent.locator("#connection-status")).to_have_attribute("data-connected", "false")
    customer_says(customer, "Written while you were away")
    agent.wait_for_timeout(500)
    expect(timeline).not_to_contain_text("Written while you were away")
    agent.evaluate("() => { window.__hold = false; }")
    expect(agent.locator("#connection-status")).to_have_attribute("data-connected", "true", timeout=20000)
    errors.clear()  # the connection this test broke on purpose complained meanwhile
    expect(timeline.locator(".entry", has_text="Written while you were away")).to_have_count(1)
    customer_says(customer, "And after reconnecting")
    expect(timeline.locator(".entry", has_text="And after reconnecting")).to_have_count(1)

    # End chat, wrap up: the conversation closes and leaves the list.
    agent.get_by_role("button", name="End chat").click()
    wrapup = agent.locator(".wrapup-form")
    expect(wrapup).to_be_visible()
    expect(row.locator(".badge-wrapup")).to_be_visible()
    wrapup.get_by_label("Disposition").select_option(label="Booking changed")
    wrapup.get_by_label("Wrap-up notes").fill("Moved to Friday.")
    wrapup.get_by_role("button", name="Close conversation").click()
    expect(agent).to_have_url(f"{live_server_url}/desktop/")
    expect(agent.locator("#active-conversations .acl-row")).to_have_count(0)
    expect(agent.locator("#workspace .notice")).to_contain_text("Tom Tester")

    assert errors == []
    customer_context.close()
    agent_context.close()


def test_agent_moves_between_conversations_with_the_keyboard(demo_data, live_server_url, browser):
    agent_context = browser.new_context(locale="en-US")
    agent = agent_context.new_page()
    log_in(agent, live_server_url, "agent2")
    expect(agent.locator("#connection-status")).to_have_attribute("data-connected", "true")
    customers = []
    for name in ("Ada First", "Bob Second"):
        context, _page = customer_starts_chat(browser, live_server_url, name, f"Question from {name}")
        customers.append(context)
        accept = agent.locator("#offers [data-offer-accept]")
        expect(accept).to_have_count(1)
        accept.click()
        expect(agent.locator("#workspace")).to_contain_text(f"Question from {name}")

    rows = agent.locator("#active-conversations .acl-row")
    expect(rows).to_have_count(2)
    agent.keyboard.press("Alt+ArrowUp")
    expect(agent.locator("#workspace")).to_contain_text("Question from Ada First")
    expect(rows.nth(0).locator(".acl-link")).to_be_focused()
    agent.keyboard.press("Alt+ArrowDown")
    expect(agent.locator("#workspace")).to_contain_text("Question from Bob Second")
    agent.keyboard.press("Alt+c")
    expect(agent.locator("#workspace [data-composer-text]")).to_be_focused()
    agent.go_back()
    expect(agent.locator("#workspace")).to_contain_text("Question from Ada First")
    for context in customers:
        context.close()
    agent_context.close()


# Installed in the agent's tab before the desktop's script: while window.__holdReplies is set, a reply
# the desktop sends over its socket is kept back; window.__releaseReplies() sends what was kept.
REPLY_HOLDER = """
(() => {
  const send = WebSocket.prototype.send;
  window.__holdReplies = false;
  window.__heldReplies = [];
  WebSocket.prototype.send = function (data) {
    if (window.__holdReplies && String(data).includes('"action":"send"')) {
      window.__heldReplies.push([this, data]);
      return;
    }
    return send.call(this, data);
  };
  window.__releaseReplies = () => {
    window.__holdReplies = false;
    window.__heldReplies.splice(0).forEach(([socket, data]) => send.call(socket, data));
  };
})();
"""


def _agent_with_chats_from_ada_and_bob(browser, live_server_url, init_script):
    """agent2's desktop (with ``init_script``) after accepting a chat from Ada, then one from Bob (open)."""
    agent_context = browser.new_context(locale="en-US")
    agent_context.add_init_script(init_script)
    agent = agent_context.new_page()
    log_in(agent, live_server_url, "agent2")
    expect(agent.locator("#connection-status")).to_have_attribute("data-connected", "true")
    customers = {}
    for name in ("Ada First", "Bob Second"):
        customers[name] = customer_starts_chat(browser, live_server_url, name, f"Question from {name}")
        accept = agent.locator("#offers [data-offer-accept]")
        expect(accept).to_have_count(1)
        accept.click()
        expect(agent.locator("#workspace")).to_contain_text(f"Question from {name}")
    return agent_context, agent, customers


def _expect_adas_refused_reply_back_in_her_composer(agent, ada) -> None:
    """Back in Ada's conversation: the refused text is in the composer, with the server's reason."""
    agent.keyboard.press("Alt+ArrowUp")
    expect(agent.locator("#workspace")).to_contain_text("Question from Ada First")
    expect(agent.locator("#workspace [data-composer-text]")).to_have_value("Ada, your refund is on its way")
    expect(agent.locator("#workspace .composer .form-error")).to_have_text(
        "There is no live chat in this conversation."
    )
    expect(ada.locator("#chat-log")).not_to_contain_text("your refund")


def test_a_draft_stays_with_its_conversation_and_a_late_refusal_goes_back_to_it(demo_data, live_server_url, browser):
    agent_context, agent, customers = _agent_with_chats_from_ada_and_bob(browser, live_server_url, REPLY_HOLDER)
    ada = customers["Ada First"][1]
    bob = customers["Bob Second"][1]
    workspace = agent.locator("#workspace")
    composer = agent.locator("#workspace [data-composer-text]")

    # Bob's conversation is open. Half a reply to Bob, then one to Ada: each stays with its conversation.
    composer.fill("Bob, your seat is 14C")
    agent.keyboard.press("Alt+ArrowUp")
    expect(workspace).to_contain_text("Question from Ada First")
    expect(composer).to_have_value("")
    composer.fill("Ada, your refund is on its way")
    agent.keyboard.press("Alt+ArrowDown")
    expect(workspace).to_contain_text("Question from Bob Second")
    expect(composer).to_have_value("Bob, your seat is 14C")
    # A reload of the desktop keeps it too.
    agent.reload()
    expect(agent.locator("#connection-status")).to_have_attribute("data-connected", "true")
    expect(composer).to_have_value("Bob, your seat is 14C")
    # Sent, the draft is gone.
    composer.press("Enter")
    expect(bob.locator("#chat-log")).to_contain_text("Bob, your seat is 14C")
    agent.keyboard.press("Alt+ArrowUp")
    expect(composer).to_have_value("Ada, your refund is on its way")
    agent.keyboard.press("Alt+ArrowDown")
    expect(workspace).to_contain_text("Question from Bob Second")
    expect(composer).to_have_value("")

    # Ada's reply leaves the composer but not yet the tab; the agent moves on, Ada ends the chat, and
    # then the server refuses the reply.
    agent.keyboard.press("Alt+ArrowUp")
    expect(workspace).to_contain_text("Question from Ada First")
    agent.evaluate("() => { window.__holdReplies = true; }")
    composer.press("Enter")
    expect(composer).to_have_value("")
    agent.wait_for_function("() => window.__heldReplies.length > 0")
    agent.keyboard.press("Alt+ArrowDown")
    expect(workspace).to_contain_text("Question from Bob Second")
    ada.locator("#end-chat").click()
    expect(agent.locator("#active-conversations .acl-row").first).to_contain_text("Wrap-up")
    agent.evaluate("() => window.__releaseReplies()")
    agent.wait_for_function(
        "() => Object.keys(window.sessionStorage).some((key) => key.startsWith('parley.draft-refused.'))"
    )
    expect(composer).to_have_value("")

    _expect_adas_refused_reply_back_in_her_composer(agent, ada)
    for context, _page in customers.values():
        context.close()
    agent_context.close()


SOCKET_RECORDER = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = function (...args) {
    const socket = new Native(...args);
    window.__sockets.push(socket);
    return socket;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})();
"""


def test_a_reply_posted_without_the_socket_and_refused_after_the_agent_moved_on_goes_back_to_its_draft(
    demo_data, live_server_url, browser
):
    """The HTTP path of a late refusal: the desktop's socket is down, so the composer posts its reply."""
    agent_context, agent, customers = _agent_with_chats_from_ada_and_bob(browser, live_server_url, SOCKET_RECORDER)
    ada = customers["Ada First"][1]
    workspace = agent.locator("#workspace")
    composer = agent.locator("#workspace [data-composer-text]")

    # The desktop's socket goes down and stays down: every new attempt is closed at once.
    agent.route_web_socket("**/ws/agent/", lambda socket: socket.close())
    agent.evaluate("() => window.__sockets.forEach((socket) => socket.close())")
    expect(agent.locator("#connection-status")).not_to_have_attribute("data-connected", "true")

    # Ada's reply is posted; the post is held on its way while the agent moves on and Ada ends the chat.
    held = []
    agent.route("**/send/", lambda route: held.append(route))
    agent.keyboard.press("Alt+ArrowUp")
    expect(workspace).to_contain_text("Question from Ada First")
    composer.fill("Ada, your refund is on its way")
    composer.press("Enter")
    expect(composer).to_have_value("")
    for _ in range(100):
        if held:
            break
        agent.wait_for_timeout(50)
    assert len(held) == 1, "the reply was not posted"
    assert held[0].request.method == "POST"
    agent.keyboard.press("Alt+ArrowDown")
    expect(workspace).to_contain_text("Question from Bob Second")
    ada.locator("#end-chat").click()
    expect(ada.locator("#chat-log")).to_contain_text("ended")
    held[0].continue_()
    agent.wait_for_function(
        "() => Object.keys(window.sessionStorage).some((key) => key.startsWith('parley.draft-refused.'))"
    )
    expect(composer).to_have_value("")

    _expect_adas_refused_reply_back_in_her_composer(agent, ada)
    for context, _page in customers.values():
        context.close()
    agent_context.close()


def test_transfer_through_the_workspace_hands_the_chat_to_a_service(demo_data, live_server_url, browser):
    agent_context = browser.new_context(locale="en-US")
    agent = agent_context.new_page()
    log_in(agent, live_server_url, "agent2")
    expect(agent.locator("#connection-status")).to_have_attribute("data-connected", "true")
    customer_context, _customer = customer_starts_chat(browser, live_server_url, "Cleo Third", "Wrong department?")
    agent.locator("#offers [data-offer-accept]").click()
    expect(agent.locator("#workspace")).to_contain_text("Wrong department?")

    agent.get_by_text("Transfer", exact=True).click()
    form = agent.locator(".transfer-form")
    form.get_by_label("Transfer to").select_option(label="Support")
    form.get_by_label("Note for the receiving agent").fill("Luggage question")
    form.get_by_role("button", name="Transfer").click()

    expect(agent).to_have_url(f"{live_server_url}/desktop/")
    expect(agent.locator("#workspace .notice")).to_contain_text("Support")
    expect(agent.locator("#active-conversations .acl-row")).to_have_count(0)
    customer_context.close()
    agent_context.close()


def write_in_own_thread(read, write):
    """ORM work from a test driving Playwright, on a connection of its own that is closed afterwards.

    Playwright's sync API runs in greenlets, and Django's connections are
    context-local: a query made between browser steps would leave a
    connection pytest-django never closes (PostgreSQL then refuses to drop
    the test database).
    """
    from django.db import connections

    result = {}

    def work():
        try:
            result["value"] = read()
            write(result["value"])
        except Exception as exc:
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_desktop_reconnects_and_backfills_after_a_server_restart(demo_data, browser, tmp_path):
    from channels_app.webchat.services import chat_customer_message
    from conversations.models import Conversation
    from tests.live import free_port, stop, subprocess_env, wait_for_http

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"

    def start_daphne(log_name: str):
        import subprocess
        import sys

        log = open(tmp_path / log_name, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "daphne"),
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "config.asgi:application",
            ],
            cwd=Path(__file__).resolve().parent.parent.parent,
            env=subprocess_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for_http(f"{base_url}/healthz", proc=proc)
        return proc, log

    server, log = start_daphne("daphne-1.log")
    try:
        agent_context = browser.new_context(locale="en-US")
        agent = agent_context.new_page()
        log_in(agent, base_url, "agent2")
        expect(agent.locator("#connection-status")).to_have_attribute("data-connected", "true")
        customer_context, _customer = customer_starts_chat(browser, base_url, "Dora Restart", "Before the restart")
        agent.locator("#offers [data-offer-accept]").click()
        expect(agent.locator("#workspace")).to_contain_text("Before the restart")
        customer_context.close()

        stop(server)
        log.close()
        expect(agent.locator("#connection-status")).to_have_attribute("data-connected", "false")
        # Written while the server is down: no event can reach the desktop.
        conversation = write_in_own_thread(
            lambda: Conversation.objects.open().get(contact__first_name="Dora"),
            lambda found: chat_customer_message(session=found.chat_sessions.get(), text="While you were restarting"),
        )

        server, log = start_daphne("daphne-2.log")
        expect(agent.locator("#connection-status")).to_have_attribute("data-connected", "true", timeout=30000)
        timeline = agent.locator(f"#timeline-{conversation.uuid}")
        expect(timeline.locator(".entry", has_text="While you were restarting")).to_have_count(1)
        expect(agent.locator(f"#acl-{conversation.uuid}")).to_contain_text("While you were restarting")
        agent_context.close()
    finally:
        stop(server)
        log.close()
