"""A chat becomes a call and back, in two Chromium contexts with fake media devices.

The customer chats, the agent calls from the workspace header, the customer
accepts in the widget, ICE connects on loopback and audio bytes arrive on both
sides (inbound-rtp ``bytesReceived`` growing, the fake microphone plays a known
tone from a WAV file), hold and mute show on the other side, the customer hangs
up, the chat continues in the same conversation, and after wrap-up the
contact's history record shows the chat and the call.
"""

from __future__ import annotations

import math
import os
import re
import struct
import time
import wave

import pytest
from playwright.sync_api import expect

from tests.browser.test_chat_flows import (
    agent_accepts_offer,
    agent_logs_in,
    customer_opens_chat,
    customer_says,
    fill_prechat,
    in_own_thread,
)
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, require_component

pytestmark = [pytest.mark.browser]

ICE_STATE = "() => window.parleyVoice ? window.parleyVoice.iceState() : ''"


def wait_connected(page, *, timeout: float = 15.0) -> float:
    """Poll from Python: the pages' CSP forbids the eval that wait_for_function needs."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if page.evaluate(ICE_STATE) in ("connected", "completed"):
            return time.monotonic()
        page.wait_for_timeout(50)
    raise AssertionError(f"ICE not connected: {page.evaluate(ICE_STATE)!r}")


def tone_wav(path, *, seconds: float = 2.0, freq: float = 440.0, rate: int = 48000) -> str:
    """A known tone for Chromium's fake microphone (it loops the file)."""
    samples = (int(math.sin(2 * math.pi * freq * i / rate) * 12000) for i in range(int(rate * seconds)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return str(path)


@pytest.fixture
def media_browser(monkeypatch, tmp_path):
    """Headless Chromium whose microphone and camera are fakes that need no permission prompt."""
    require_component(os.path.exists(CHROMIUM), f"Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    args = [
        *CHROMIUM_ARGS,
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={tone_wav(tmp_path / 'tone.wav')}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield chromium
        finally:
            chromium.close()


def inbound_bytes(page) -> int:
    return int(page.evaluate("() => window.parleyVoice.inboundBytes()"))


def assert_audio_flowing(page, who: str) -> None:
    first = inbound_bytes(page)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        page.wait_for_timeout(500)
        later = inbound_bytes(page)
        if later > first > 0:
            return
        first = later if first == 0 else first
    raise AssertionError(f"no audio arriving at the {who}: {first} → {later} bytes")


def test_chat_becomes_a_call_and_back_to_chat_then_history_shows_both(demo_data, live_server_url, media_browser):
    base = live_server_url
    anna = agent_logs_in(media_browser, base, "agent1")
    a = anna.page
    tom = customer_opens_chat(media_browser, base)
    customer = tom.page
    for person in (anna, tom):
        person.context.grant_permissions(["microphone", "camera"], origin=base)
    fill_prechat(customer, name="Tom Tester", email="tom.call@example.com", question="Could you call me?")
    expect(a.locator("#offers .offer")).to_have_count(1)
    conversation = agent_accepts_offer(a)

    # The agent calls from the workspace header; the customer's widget rings.
    controls = a.locator(f"#voice-controls-{conversation}")
    controls.locator("[data-voice-action='call']:not([data-video])").click()
    expect(controls.locator(".voice-state")).to_have_text("Ringing the customer…")
    expect(customer.locator("#voice-status")).to_have_text("The agent is calling you.")
    accept = customer.locator("#voice-accept")
    expect(accept).to_be_visible()
    accept.click()
    accepted_at = time.monotonic()

    # ICE connects on both sides and audio arrives both ways.
    wait_connected(customer)
    wait_connected(a)
    setup = time.monotonic() - accepted_at
    assert setup < 10, f"call setup took {setup:.1f} s"
    assert_audio_flowing(a, "agent")
    assert_audio_flowing(customer, "customer")
    expect(controls.locator(".voice-state")).to_have_text("On call")
    expect(customer.locator("#voice-status")).to_have_text("On call")

    # Hold: the customer sees it; resume.
    controls.locator("[data-voice-action='hold']").click()
    expect(customer.locator("#voice-status")).to_have_text("On hold")
    expect(controls.locator(".voice-state")).to_have_text("On hold")
    expect(a.locator(f"#acl-{conversation} .acl-call-state")).to_have_text("On hold")
    controls.locator("[data-voice-action='resume']").click()
    expect(customer.locator("#voice-status")).to_have_text("On call")

    # Mute, both ways.
    customer.locator("#voice-mute").click()
    expect(customer.locator("#voice-mute")).to_have_attribute("aria-pressed", "true")
    expect(controls.locator("[data-voice-remote-muted]")).to_be_visible()
    controls.locator("[data-voice-action='mute']").click()
    expect(controls.locator("[data-voice-action='mute']")).to_have_attribute("aria-pressed", "true")
    expect(customer.locator("#voice-status")).to_contain_text("The agent has muted their microphone.")

    # The customer hangs up; the chat goes on in the same conversation.
    customer.locator("#voice-hangup").click()
    expect(customer.locator("#voice-status")).to_have_text("The call has ended.")
    expect(controls.locator("[data-voice-action='call']:not([data-video])")).to_be_visible()
    customer_says(customer, "Thanks, I will write instead.")
    timeline = a.locator(f"#timeline-{conversation}")
    expect(timeline.locator(".entry.from-customer", has_text="Thanks, I will write instead.")).to_have_count(1)
    expect(timeline.locator(".voice-event-ended")).to_have_count(1)

    # The agent ends the chat and wraps up; the history record shows the chat and the call.
    a.get_by_role("button", name="End chat").click()
    wrapup = a.locator(".wrapup-form")
    expect(wrapup).to_be_visible()
    wrapup.get_by_label("Disposition").select_option(label="Booking changed")
    wrapup.get_by_role("button", name="Close conversation").click()
    expect(a.locator("#active-conversations .acl-row")).to_have_count(0)
    a.goto(f"{base}/desktop/history/{conversation}/")
    history = a.locator(f"#timeline-{conversation}")
    expect(history.locator(".entry.from-customer", has_text="Could you call me?")).to_have_count(1)
    expect(history.locator(".entry.from-customer", has_text="Thanks, I will write instead.")).to_have_count(1)
    for kind in ("ringing", "answered", "held", "resumed", "ended"):
        expect(history.locator(f".voice-event-{kind}")).to_have_count(1)
    expect(history.locator(".voice-event-ended")).to_have_text(re.compile(r"Call ended · \d+:\d\d"))

    def stored():
        from conversations.models import Interaction

        return Interaction.objects.get(conversation__uuid=conversation, medium__in=["voice", "video"])

    call = in_own_thread(stored)
    assert call.state == "ended" and call.end_reason == "customer_hangup"
    assert call.details["holds"] == 1
    quality = call.details.get("quality", {})
    assert "customer" in quality and quality["customer"]["bytes_received"] > 0
    for person in (anna, tom):
        assert person.errors == []
        person.close()


def test_call_first_is_queued_offered_and_connected(demo_data, live_server_url, media_browser):
    base = live_server_url
    anna = agent_logs_in(media_browser, base, "agent1")
    a = anna.page
    carla = customer_opens_chat(media_browser, base)
    customer = carla.page
    customer.locator("#prechat-name").fill("Carla Caller")
    customer.locator("#prechat-email").fill("carla.caller@example.com")
    customer.locator("#voice-call-first").click()
    expect(customer.locator("#prechat-form")).to_be_hidden()
    # Queued, then offered to the Ready agent at once: the page may already show the ringing state when looked at.
    expect(customer.locator("#voice-status")).to_have_text(
        re.compile(r"^(Waiting for an agent to take your call…|Calling the agent…)$")
    )

    # Offered like a chat: the agent accepts in the offers panel; the call connects.
    offer = a.locator("#offers .offer")
    expect(offer).to_have_count(1)
    expect(offer).to_contain_text("Carla Caller")
    conversation = agent_accepts_offer(a)
    wait_connected(customer)
    wait_connected(a)
    assert_audio_flowing(a, "agent")
    assert_audio_flowing(customer, "customer")
    controls = a.locator(f"#voice-controls-{conversation}")
    expect(controls.locator(".voice-state")).to_have_text("On call")
    expect(a.locator(f"#acl-{conversation} .acl-call time")).to_be_visible()

    # The agent hangs up; the customer may chat or call again.
    controls.locator("[data-voice-action='hangup']").click()
    expect(customer.locator("#voice-status")).to_have_text("The call has ended.")
    expect(customer.locator("#prechat-form")).to_be_visible()
    expect(a.locator(".wrapup-form")).to_be_visible()
    for person in (anna, carla):
        assert person.errors == []
        person.close()
