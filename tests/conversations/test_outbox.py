# ruff: noqa: F811 (pytest fixtures imported from tests/sms/conftest.py are used as parameters)
"""The outbox core (conversations.outbox): exclusive claims, duplicate tasks, transient retries with a cap,
permanent failures, the sweep of lost tasks and dead claims, rollbacks, and statuses that never go back.

Most tests use the real SMS transport against the local Twilio-speaking server; a few register a transport
that records calls (a provider double) to script exact outcomes.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from channels_app.sms.services import sms_send
from conversations import outbox
from conversations.models import Medium, Message, Outbox
from conversations.outbox import (
    PermanentSendError,
    SendResult,
    TransientSendError,
    message_delivery_update,
    outbox_claim,
    outbox_deliver,
    outbox_enqueue,
    outbox_retry,
    outbox_sweep,
)

# The SMS fixtures (the local Twilio server, an account pointed at it, a conversation with a live chat).
from tests.sms.conftest import (  # noqa: F401
    chat_conversation,
    contact,
    fake_twilio,
    ready_agent,
    service,
    sms_account,
    sms_number,
)

pytestmark = pytest.mark.django_db


class Recorder:
    """A transport that records each call and answers from a script (a provider double)."""

    def __init__(self, *outcomes) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[int, str]] = []

    def __call__(self, message: Message, key: str) -> SendResult:
        self.calls.append((message.pk, key))
        outcome = self.outcomes.pop(0) if self.outcomes else SendResult(provider_message_id=f"P{len(self.calls)}")
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


@pytest.fixture
def recorder(monkeypatch):
    record = Recorder()
    monkeypatch.setitem(outbox.TRANSPORTS, Medium.SMS, record)
    return record


@pytest.fixture
def queued(chat_conversation, ready_agent, sms_number):
    message = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="hello")
    return message, Outbox.objects.get(message=message)


@pytest.mark.django_db(transaction=True)
def test_enqueue_outside_the_messages_transaction_is_refused(chat_conversation, ready_agent, sms_number):
    message = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="x")
    Outbox.objects.filter(message=message).delete()
    with pytest.raises(RuntimeError):
        outbox_enqueue(message=message)


def make_due(row: Outbox) -> None:
    Outbox.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_claim_is_exclusive(queued):
    _message, row = queued
    first = outbox_claim(outbox_id=row.pk)
    second = outbox_claim(outbox_id=row.pk)
    assert first is not None and second is None
    assert first.attempts == 1 and first.state == Outbox.State.SENDING


def test_duplicate_task_is_harmless(queued, fake_twilio):
    _message, row = queued
    assert outbox_deliver(outbox_id=row.pk) == "sent"
    assert outbox_deliver(outbox_id=row.pk) == "not-claimed"
    assert fake_twilio.bodies() == {"hello": 1}


@pytest.mark.django_db(transaction=True)
def test_concurrent_tasks_send_once(chat_conversation, ready_agent, sms_number, fake_twilio):
    from django.db import connection

    message = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="race")
    row = Outbox.objects.get(message=message)
    fake_twilio.delay = 0.3
    results = []
    barrier = threading.Barrier(4)

    def run() -> None:
        try:
            barrier.wait()
            results.append(outbox_deliver(outbox_id=row.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["not-claimed"] * 3 + ["sent"]
    assert fake_twilio.bodies() == {"race": 1}


def test_transient_error_is_retried_with_backoff_and_the_key_kept(queued, recorder, settings):
    settings.OUTBOX_BACKOFF_SECONDS = 5
    message, row = queued
    recorder.outcomes = [TransientSendError("busy"), TransientSendError("busy")]
    before = timezone.now()
    assert outbox_deliver(outbox_id=row.pk) == "retry"
    row.refresh_from_db()
    assert row.state == Outbox.State.PENDING and row.next_attempt_at >= before + timedelta(seconds=5)
    make_due(row)
    assert outbox_deliver(outbox_id=row.pk) == "retry"
    row.refresh_from_db()
    assert row.next_attempt_at >= timezone.now() + timedelta(seconds=9)  # doubled
    make_due(row)
    assert outbox_deliver(outbox_id=row.pk) == "sent"
    assert len({key for _pk, key in recorder.calls}) == 1
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.SENT and message.provider_message_id == "P3"


def test_not_due_row_is_not_claimed(queued, recorder):
    _message, row = queued
    recorder.outcomes = [TransientSendError("busy")]
    outbox_deliver(outbox_id=row.pk)
    assert outbox_deliver(outbox_id=row.pk) == "not-claimed"
    assert len(recorder.calls) == 1


def test_transient_errors_stop_at_the_cap_and_show_failed(queued, recorder, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 3
    message, row = queued
    recorder.outcomes = [TransientSendError("busy")] * 10
    results = []
    for _attempt in range(5):
        make_due(row)
        results.append(outbox_deliver(outbox_id=row.pk))
    assert results == ["retry", "retry", "failed", "not-claimed", "not-claimed"]
    assert len(recorder.calls) == 3
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.FAILED
    assert "3 attempts" in message.status_reason


def test_permanent_error_fails_at_once_with_the_reason(queued, recorder):
    message, row = queued
    recorder.outcomes = [PermanentSendError("Number blocked")]
    assert outbox_deliver(outbox_id=row.pk) == "failed"
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.FAILED and message.status_reason == "Number blocked"
    assert Outbox.objects.get(pk=row.pk).state == Outbox.State.FAILED


def test_unexpected_error_is_not_retried_blindly(queued, recorder):
    message, row = queued
    recorder.outcomes = [KeyError("bug")]
    assert outbox_deliver(outbox_id=row.pk) == "failed"
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.FAILED and "KeyError" in message.status_reason


def test_retry_starts_over_with_a_new_key(queued, recorder):
    message, row = queued
    recorder.outcomes = [PermanentSendError("no")]
    outbox_deliver(outbox_id=row.pk)
    old_key = row.idempotency_key
    outbox_retry(message=message, actor=None)
    row.refresh_from_db()
    assert row.idempotency_key != old_key and row.attempts == 0 and row.state == Outbox.State.PENDING
    assert outbox_deliver(outbox_id=row.pk) == "sent"


def test_retry_of_a_message_that_did_not_fail_is_refused(queued):
    message, _row = queued
    with pytest.raises(ValidationError):
        outbox_retry(message=message, actor=None)


def test_sweep_requeues_rows_whose_task_was_lost(queued, settings, monkeypatch):
    settings.OUTBOX_SWEEP_GRACE_SECONDS = 15
    _message, row = queued
    queued_ids = []
    monkeypatch.setattr(outbox, "_queue", lambda pk, countdown=0: queued_ids.append(pk))
    assert outbox_sweep() == {"reclaimed": 0, "requeued": 0}  # too fresh: its own task may still come
    Outbox.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=60))
    assert outbox_sweep() == {"reclaimed": 0, "requeued": 1}
    assert queued_ids == [row.pk]


def test_sweep_reclaims_a_dead_workers_claim_and_the_dead_worker_cannot_record(
    queued, settings, monkeypatch, fake_twilio
):
    settings.OUTBOX_LEASE_SECONDS = 60
    message, row = queued
    monkeypatch.setattr(outbox, "_queue", lambda pk, countdown=0: None)
    dead = outbox_claim(outbox_id=row.pk)
    Outbox.objects.filter(pk=row.pk).update(claimed_at=timezone.now() - timedelta(seconds=120))
    assert outbox_sweep()["reclaimed"] == 1
    assert outbox_deliver(outbox_id=row.pk) == "sent"
    # The "dead" worker wakes up and tries to record a failure: its claim is gone, nothing changes.
    assert outbox._record(dead, state=Outbox.State.FAILED, status=Message.Status.FAILED, reason="zombie") is False
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.SENT
    assert fake_twilio.bodies() == {"hello": 1}


def test_live_claim_is_left_alone_by_the_sweep(queued, monkeypatch):
    _message, row = queued
    monkeypatch.setattr(outbox, "_queue", lambda pk, countdown=0: None)
    outbox_claim(outbox_id=row.pk)
    assert outbox_sweep()["reclaimed"] == 0


def test_rollback_after_the_send_was_requested_sends_nothing(
    chat_conversation, ready_agent, sms_number, fake_twilio, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks(execute=True)
    with capture as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="never")
        raise RuntimeError
    assert callbacks == []
    assert not Outbox.objects.exists() and not Message.objects.filter(body="never").exists()
    assert outbox_sweep()["requeued"] == 0
    assert fake_twilio.messages == []


def test_status_never_moves_backwards(queued, fake_twilio):
    message, row = queued
    outbox_deliver(outbox_id=row.pk)
    assert message_delivery_update(message=message, status=Message.Status.DELIVERED) is True
    assert message_delivery_update(message=message, status=Message.Status.SENT) is False
    assert message_delivery_update(message=message, status=Message.Status.DELIVERED) is False
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.DELIVERED
    assert message_delivery_update(message=message, status=Message.Status.UNDELIVERED, reason="30003") is True
    assert message_delivery_update(message=message, status=Message.Status.DELIVERED) is False
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.UNDELIVERED


def test_a_late_attempt_result_does_not_move_a_callback_status_back(queued, recorder):
    message, row = queued
    claimed = outbox_claim(outbox_id=row.pk)
    message_delivery_update(message=message, status=Message.Status.DELIVERED)
    outbox._record(claimed, state=Outbox.State.SENT, status=Message.Status.SENT, provider_id="SMlate")
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.DELIVERED and message.provider_message_id == "SMlate"


def test_status_update_announces_the_entry_on_commit(queued, django_capture_on_commit_callbacks, monkeypatch):
    message, _row = queued
    published = []
    monkeypatch.setattr("core.realtime._send", lambda group, event: published.append((group, event)))
    with django_capture_on_commit_callbacks(execute=True):
        message_delivery_update(message=message, status=Message.Status.SENT)
    assert {
        "type": "conversation.timeline",
        "conversation": str(message.conversation.uuid),
        "entry_id": message.entry.pk,
    } in [event for _group, event in published]
