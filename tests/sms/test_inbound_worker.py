"""IW1 with real components: Twilio's signed inbound webhooks posted over HTTP to daphne are acknowledged at
once, and a Celery worker (with embedded beat, so the inbound sweep runs) files them into conversations, in
order per sender, a triple delivery once; tasks lost with a broker restart are filed by the sweep; queueing
never waits for a broker that went down, and reconnects when it is back."""

from __future__ import annotations

import shutil
import threading
import time
import uuid

import pytest
import redis
import requests
from django.conf import settings

from channels_app.sms.models import SmsInbound
from channels_app.sms.tasks import sms_inbound_sweep
from config.celery import app
from conversations.models import Conversation, Medium, Message, Offer
from core.broker import task_enqueue
from tests.conftest import require_component
from tests.live import daphne_server
from tests.sms.conftest import AUTH_TOKEN, inbound_params
from tests.sms.live import private_redis, start_worker, stop_worker, wait_until
from tests.sms.twilio_server import twilio_signature

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

INBOUND = "/sms/twilio/inbound/"
FAST_SWEEP = {
    "SMS_INBOUND_SWEEP_SECONDS": "1",
    "SMS_INBOUND_SWEEP_GRACE_SECONDS": "1",
    "ROUTING_SWEEP_SECONDS": "60",
}
ANNA, BEN = "+491701110001", "+491701110002"


def _post(base_url: str, params: dict) -> int:
    # Twilio signs the public URL it was configured with; daphne is reached directly (as behind a proxy).
    signature = twilio_signature(auth_token=AUTH_TOKEN, url=settings.PUBLIC_BASE_URL + INBOUND, params=params)
    return requests.post(
        base_url + INBOUND, data=params, headers={"X-Twilio-Signature": signature}, timeout=10
    ).status_code


def _log(path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _bodies(sender: str) -> list[str]:
    return list(
        Message.objects.filter(medium=Medium.SMS, conversation__contact__points__value=sender)
        .order_by("id")
        .values_list("body", flat=True)
    )


@pytest.mark.timeout(150)
def test_a_real_worker_files_webhooks_in_order_and_a_triple_delivery_once(sms_number, ready_agent, tmp_path):
    with daphne_server(tmp_path / "daphne.log", **FAST_SWEEP) as base_url:
        worker = start_worker(tmp_path / "worker.log", f"iw1-{uuid.uuid4().hex[:6]}@localhost", **FAST_SWEEP)
        try:
            for index in range(3):
                for sender in (ANNA, BEN):
                    params = inbound_params(sid=f"SM{uuid.uuid4().hex}", body=f"part {index}", from_=sender)
                    assert _post(base_url, params) == 200
            triple = inbound_params(sid=f"SM{uuid.uuid4().hex}", body="three times", from_=ANNA)
            statuses: list[int] = []
            barrier = threading.Barrier(3)

            def at_once() -> None:
                barrier.wait()
                statuses.append(_post(base_url, triple))

            threads = [threading.Thread(target=at_once) for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert statuses == [200, 200, 200]
            filed = wait_until(
                lambda: SmsInbound.objects.filter(state=SmsInbound.State.DONE).count() == 7, timeout=60, interval=0.3
            )
            assert filed, "not all filed; worker log:\n" + _log(tmp_path / "worker.log")
        finally:
            stop_worker(worker)
    assert SmsInbound.objects.count() == 7
    assert _bodies(ANNA) == ["part 0", "part 1", "part 2", "three times"]
    assert _bodies(BEN) == ["part 0", "part 1", "part 2"]
    assert Message.objects.filter(provider_message_id=triple["MessageSid"]).count() == 1
    assert Conversation.objects.count() == 2
    # Routed as before: a new SMS conversation is offered to the Ready agent of the number's service.
    assert Offer.objects.filter(agent=ready_agent.user).exists()


@pytest.fixture
def need_redis_server():
    require_component(bool(shutil.which("redis-server")), "redis-server (a private one to restart)")


@pytest.mark.timeout(150)
def test_tasks_lost_with_a_broker_restart_are_filed_by_the_sweep(need_redis_server, sms_number, tmp_path):
    with private_redis(tmp_path / "redis.log") as broker:
        env = {"REDIS_URL": broker.url, **FAST_SWEEP}
        with daphne_server(tmp_path / "daphne.log", **env) as base_url:
            for index in range(2):
                for sender in (ANNA, BEN):
                    params = inbound_params(sid=f"SM{uuid.uuid4().hex}", body=f"part {index}", from_=sender)
                    assert _post(base_url, params) == 200
        queue = settings.CELERY_TASK_DEFAULT_QUEUE
        assert redis.Redis.from_url(broker.url).llen(queue) == 4, "each acknowledgement queued its task"
        # The broker keeps nothing on disk: a restart loses the four queued tasks.
        broker.stop()
        broker.start()
        assert redis.Redis.from_url(broker.url).llen(queue) == 0
        assert SmsInbound.objects.filter(state=SmsInbound.State.PENDING).count() == 4
        worker = start_worker(tmp_path / "worker.log", f"iw1s-{uuid.uuid4().hex[:6]}@localhost", **env)
        try:
            filed = wait_until(
                lambda: SmsInbound.objects.filter(state=SmsInbound.State.DONE).count() == 4, timeout=60, interval=0.3
            )
            assert filed, "the sweep did not file them; worker log:\n" + _log(tmp_path / "worker.log")
        finally:
            stop_worker(worker)
    assert _bodies(ANNA) == ["part 0", "part 1"] and _bodies(BEN) == ["part 0", "part 1"]
    assert "inbound SMS sweep" in _log(tmp_path / "worker.log")


@pytest.mark.timeout(60)
def test_queueing_never_waits_for_a_broker_that_went_down_and_reconnects_when_it_is_back(
    need_redis_server, tmp_path, monkeypatch
):
    with private_redis(tmp_path / "redis.log") as broker:
        monkeypatch.setattr(app.conf, "broker_write_url", broker.url)
        queue = settings.CELERY_TASK_DEFAULT_QUEUE
        assert task_enqueue(sms_inbound_sweep) and task_enqueue(sms_inbound_sweep)  # the connection is kept
        assert redis.Redis.from_url(broker.url).llen(queue) == 2
        broker.stop()
        for _attempt in range(3):
            started = time.monotonic()
            assert task_enqueue(sms_inbound_sweep) is False
            assert time.monotonic() - started < 1.0
        broker.start()
        assert task_enqueue(sms_inbound_sweep) is True
        assert redis.Redis.from_url(broker.url).llen(queue) == 1
