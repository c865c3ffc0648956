"""QUALITY.md OB1 and OB2 with real components: a private Redis as broker and channel layer, daphne serving
the composer, a Celery worker with embedded beat (the outbox sweep), and the local Twilio-speaking server.

OB1: the broker is down while 100 SMS are sent from the composer; after it is back, each reaches the
provider exactly once within 60 s. OB2: the worker is SIGKILLed in the middle of a provider request; a new
worker sends every message, the interrupted one with the same idempotency key, so exactly once; a message
that keeps failing stops after the capped number of tries and shows as failed.
"""

from __future__ import annotations

import shutil
import time
import uuid

import pytest
import requests
from django.urls import reverse

from conversations.models import Medium, Message, Outbox
from tests.conftest import require_component
from tests.live import daphne_server
from tests.sms.conftest import CUSTOMER
from tests.sms.live import kill_worker, private_redis, start_worker, stop_worker, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FAST_SWEEP = {
    "OUTBOX_SWEEP_SECONDS": "1",
    "OUTBOX_SWEEP_GRACE_SECONDS": "1",
    "OUTBOX_LEASE_SECONDS": "4",
    "OUTBOX_BACKOFF_SECONDS": "0.2",
    "OUTBOX_BACKOFF_MAX_SECONDS": "1",
    "OUTBOX_MAX_ATTEMPTS": "3",
    "SMS_PROVIDER_TIMEOUT_SECONDS": "10",
    "ROUTING_SWEEP_SECONDS": "60",
}


@pytest.fixture
def need_redis_server():
    require_component(bool(shutil.which("redis-server")), "redis-server (a private one for broker outages)")


def _log(path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _agent_session(base_url: str, user) -> requests.Session:
    from django.test import Client

    client = Client()
    client.force_login(user)
    session = requests.Session()
    session.cookies.set("sessionid", client.cookies["sessionid"].value)
    session.get(f"{base_url}/", timeout=10)
    return session


@pytest.mark.timeout(150)
def test_ob1_broker_down_while_100_sms_are_sent(
    need_redis_server, chat_conversation, ready_agent, sms_number, fake_twilio, tmp_path
):
    with private_redis(tmp_path / "redis.log") as broker:
        env = {"REDIS_URL": broker.url, **FAST_SWEEP}
        with daphne_server(tmp_path / "daphne.log", **env) as base_url:
            session = _agent_session(base_url, ready_agent.user)
            url = base_url + reverse("conversations:send", args=[chat_conversation.uuid])
            worker = start_worker(tmp_path / "worker-1.log", f"ob1-{uuid.uuid4().hex[:6]}@localhost", **env)
            try:
                broker.stop()
                token = session.cookies.get("csrftoken", "")
                started = time.monotonic()
                for index in range(100):
                    response = session.post(
                        url,
                        data={"channel": "sms", "text": f"OB1 message {index}"},
                        headers={"HX-Request": "true", "X-CSRFToken": token, "Referer": base_url + "/"},
                        timeout=30,
                    )
                    assert response.status_code == 200, response.text[:500]
                sending_took = time.monotonic() - started
                assert Outbox.objects.filter(medium=Medium.SMS).count() == 100
                assert fake_twilio.messages == []
                assert sending_took < 30, f"100 sends with the broker down took {sending_took:.1f} s"
                broker.start()
                restarted = time.monotonic()
                delivered = wait_until(lambda: len(fake_twilio.messages) >= 100, timeout=60)
                assert delivered, f"{len(fake_twilio.messages)} of 100 reached the provider; worker log:\n" + _log(
                    tmp_path / "worker-1.log"
                )
                assert time.monotonic() - restarted <= 60
                wait_until(
                    lambda: not Message.objects.filter(
                        medium=Medium.SMS, delivery_status=Message.Status.QUEUED
                    ).exists(),
                    timeout=15,
                )
            finally:
                stop_worker(worker)
    bodies = fake_twilio.bodies()
    assert len(bodies) == 100 and set(bodies.values()) == {1}, "each SMS exactly once"
    assert all(message["To"] == CUSTOMER for message in fake_twilio.messages)
    assert set(Message.objects.filter(medium=Medium.SMS).values_list("delivery_status", flat=True)) == {
        Message.Status.SENT
    }


@pytest.mark.timeout(150)
def test_ob2_worker_killed_mid_send_then_every_message_exactly_once(
    need_redis_server, chat_conversation, ready_agent, sms_number, fake_twilio, tmp_path
):
    from channels_app.sms.services import sms_send

    messages = [
        sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text=f"OB2 message {index}")
        for index in range(5)
    ]
    with private_redis(tmp_path / "redis.log") as broker:
        env = {"REDIS_URL": broker.url, **FAST_SWEEP}
        fake_twilio.delay = 4  # every request hangs: the kill lands while the worker waits for the provider
        first = start_worker(tmp_path / "worker-1.log", f"ob2a-{uuid.uuid4().hex[:6]}@localhost", **env)
        try:
            in_flight = wait_until(lambda: sum(fake_twilio.requests.values()) >= 1, timeout=40)
            assert in_flight, "no request reached the provider; worker log:\n" + _log(tmp_path / "worker-1.log")
        finally:
            kill_worker(first)
        assert first.returncode is not None
        interrupted = list(Outbox.objects.filter(state=Outbox.State.SENDING).values_list("idempotency_key", flat=True))
        assert len(interrupted) == 1
        # The provider finishes the interrupted request after all (it had it): the resend must not send again.
        fake_twilio.delay = 0
        wait_until(lambda: len(fake_twilio.messages) >= 1, timeout=10)
        # Queued while no worker runs, so it cannot be the request the kill interrupted.
        failing = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="OB2 keeps failing")
        failing_key = str(Outbox.objects.get(message=failing).idempotency_key)
        original = fake_twilio.messages[:]
        # The provider answers 500 to every attempt of "keeps failing" and accepts the others.
        fake_twilio.always_fail_keys = {failing_key}
        second = start_worker(tmp_path / "worker-2.log", f"ob2b-{uuid.uuid4().hex[:6]}@localhost", **env)
        try:
            done = wait_until(
                lambda: Outbox.objects.filter(state__in=(Outbox.State.PENDING, Outbox.State.SENDING)).count() == 0,
                timeout=45,
            )
            assert done, "outbox not drained; worker log:\n" + _log(tmp_path / "worker-2.log")
        finally:
            stop_worker(second)
    assert original, "the interrupted request reached the provider"
    bodies = fake_twilio.bodies()
    assert bodies == {f"OB2 message {index}": 1 for index in range(5)}
    assert fake_twilio.requests[str(interrupted[0])] == 2, "the interrupted message was re-sent with its key"
    for message in messages:
        message.refresh_from_db()
        assert message.delivery_status == Message.Status.SENT
    failing.refresh_from_db()
    assert failing.delivery_status == Message.Status.FAILED
    assert fake_twilio.requests[failing_key] == int(FAST_SWEEP["OUTBOX_MAX_ATTEMPTS"])
    assert "3 attempts" in failing.status_reason
