"""IW1: the inbound-SMS webhook stores Twilio's raw payload and acknowledges; the ``sms_inbound_process`` task
files it into a conversation.

The acknowledgement writes the raw row and nothing else (also with the broker down); duplicates, one after
another or at once, give one row and one message; one sender's SMS are filed in the order received even when
their tasks run out of order or at the same time; the sweep queues rows whose task was lost and takes back
rows of a worker that died; a poison payload is tried a bounded number of times, then marked failed and
logged, and the sender's later SMS still arrive; the admin shows the raw rows read-only.

Tasks run as the worker runs them (``Task.apply``, or Celery's eager mode where a task queues another);
the end-to-end run with a real worker is in ``test_inbound_worker.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from channels_app.sms.models import SmsInbound
from channels_app.sms.services import sms_inbound_claim, sms_inbound_sweep
from channels_app.sms.tasks import sms_inbound_process
from channels_app.sms.views import EMPTY_TWIML
from contacts.models import Contact
from conversations.models import Conversation, Interaction, Medium, Message, TimelineEntry
from tests.live import free_port
from tests.sms.conftest import CUSTOMER, OUR_NUMBER, inbound_params, run_inbound_tasks, signed_post

pytestmark = pytest.mark.django_db

INBOUND = "/sms/twilio/inbound/"


@contextmanager
def tasks_run_eagerly():
    """Celery's eager mode: a task another one queues (the sweep's, a retry's) runs at once, in this process."""
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False


def _bodies(sender: str = CUSTOMER) -> list[str]:
    """The sender's SMS in the order they were filed (message ids are assigned when a message is stored)."""
    return list(
        Message.objects.filter(medium=Medium.SMS, conversation__contact__points__value=sender)
        .order_by("id")
        .values_list("body", flat=True)
    )


def _post_all(client, sids_and_bodies, *, from_: str = CUSTOMER) -> list[SmsInbound]:
    for sid, body in sids_and_bodies:
        assert signed_post(client, INBOUND, inbound_params(sid=sid, body=body, from_=from_)).status_code == 200
    return list(SmsInbound.objects.order_by("id"))


# --- acknowledgement -------------------------------------------------------------------------------------


def test_acknowledgement_stores_the_raw_payload_and_nothing_else(
    client, sms_number, django_capture_on_commit_callbacks
):
    params = inbound_params(sid="SMraw", body="Hello there", from_="0170 1234567")
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks() as callbacks:
        response = signed_post(client, INBOUND, params)

    assert response.status_code == 200 and response.content.decode() == EMPTY_TWIML
    row = SmsInbound.objects.get()
    assert (row.message_sid, row.state, row.attempts) == ("SMraw", SmsInbound.State.PENDING, 0)
    assert row.payload == params
    assert (row.sender, row.to_number, row.account_id) == (CUSTOMER, OUR_NUMBER, sms_number.account_id)
    assert not Contact.objects.exists() and not Conversation.objects.exists() and not Message.objects.exists()
    statements = [q["sql"] for q in queries if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) == 2, statements  # the account (signature), the row
    assert all("channel_sms_" in sql and "conversations_" not in sql for sql in statements), statements
    # One thing happens after commit: the processing task is queued. Run it as the worker would.
    assert len(callbacks) == 1
    with tasks_run_eagerly():
        callbacks[0]()
    row.refresh_from_db()
    assert row.state == SmsInbound.State.DONE
    assert row.message == Message.objects.get(provider_message_id="SMraw", body="Hello there")


def test_a_payload_without_sid_or_sender_is_refused_and_not_stored(client, sms_number):
    params = inbound_params(sid="SMx", body="Hi")
    del params["From"]
    assert signed_post(client, INBOUND, params).status_code == 400
    assert not SmsInbound.objects.exists()


def test_nul_characters_are_dropped_so_postgresql_can_store_the_payload(client, sms_number):
    assert signed_post(client, INBOUND, inbound_params(sid="SMnul", body="a\x00b")).status_code == 200
    assert SmsInbound.objects.get().payload["Body"] == "ab"
    run_inbound_tasks()
    assert _bodies() == ["ab"]


@pytest.mark.django_db(transaction=True)
def test_acknowledgement_is_quick_with_the_broker_down_and_the_sweep_files_it_later(sms_number, monkeypatch):
    from config.celery import app

    # Nothing listens there: the broker is down for the acknowledgement's attempt to queue the task.
    monkeypatch.setattr(app.conf, "broker_write_url", f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    response = signed_post(Client(), INBOUND, inbound_params(sid="SMdown", body="Are you there?"))
    took = time.monotonic() - started
    assert response.status_code == 200
    assert took < 2.0, f"acknowledgement took {took:.2f} s with the broker down"
    assert SmsInbound.objects.get().state == SmsInbound.State.PENDING
    monkeypatch.undo()  # the broker is back

    assert sms_inbound_sweep() == {"reclaimed": 0, "requeued": 0}  # too fresh: its own task may still come
    SmsInbound.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=1))
    with tasks_run_eagerly():
        assert sms_inbound_sweep() == {"reclaimed": 0, "requeued": 1}
    assert SmsInbound.objects.get().state == SmsInbound.State.DONE
    assert _bodies() == ["Are you there?"]


# --- duplicates ----------------------------------------------------------------------------------------------


def test_a_duplicate_delivery_after_processing_is_acknowledged_and_changes_nothing(client, sms_number):
    _post_all(client, [("SMd", "Hi")])
    assert run_inbound_tasks() == [SmsInbound.State.DONE]
    assert signed_post(client, INBOUND, inbound_params(sid="SMd", body="Hi")).status_code == 200
    assert SmsInbound.objects.count() == 1
    assert run_inbound_tasks() == [SmsInbound.State.DONE]
    assert Message.objects.filter(provider_message_id="SMd").count() == 1


def test_the_same_task_delivered_twice_files_the_sms_once(client, sms_number):
    [row] = _post_all(client, [("SMt", "Once please")])
    sms_inbound_process.apply(args=(row.pk,), throw=True)
    sms_inbound_process.apply(args=(row.pk,), throw=True)
    assert Message.objects.filter(provider_message_id="SMt").count() == 1
    assert TimelineEntry.objects.filter(kind=TimelineEntry.Kind.MESSAGE).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_tasks_for_one_row_file_it_once(sms_number):
    [row] = _post_all(Client(), [("SMct", "Hi")], from_="+491607777777")
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            sms_inbound_process.apply(args=(row.pk,), throw=True)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Message.objects.filter(provider_message_id="SMct").count() == 1
    assert Interaction.objects.filter(medium=Medium.SMS).count() == 1 and Conversation.objects.count() == 1
    assert SmsInbound.objects.get().state == SmsInbound.State.DONE


# --- order ---------------------------------------------------------------------------------------------------


def test_one_senders_sms_are_filed_in_the_order_received_whatever_order_their_tasks_run(client, sms_number):
    rows = _post_all(client, [(f"SMo{i}", f"part {i}") for i in range(3)])
    # The last SMS's task happens to run first: it files all three, oldest first.
    sms_inbound_process.apply(args=(rows[2].pk,), throw=True)
    assert _bodies() == ["part 0", "part 1", "part 2"]
    conversation = Conversation.objects.get()
    timeline = TimelineEntry.objects.filter(conversation=conversation, kind=TimelineEntry.Kind.MESSAGE)
    assert [entry.message.body for entry in timeline.order_by("id")] == ["part 0", "part 1", "part 2"]
    # The other two tasks arrive afterwards and find nothing left to do.
    sms_inbound_process.apply(args=(rows[0].pk,), throw=True)
    sms_inbound_process.apply(args=(rows[1].pk,), throw=True)
    assert Message.objects.count() == 3


def test_a_later_sms_waits_while_an_earlier_one_of_that_sender_is_being_processed(client, sms_number):
    rows = _post_all(client, [("SMh0", "first"), ("SMh1", "second")])
    other = _post_all(client, [("SMx0", "someone else")], from_="+491605555555")[-1]
    held = sms_inbound_claim(sender=CUSTOMER)  # another worker is filing the first SMS right now
    assert held is not None and held.pk == rows[0].pk

    sms_inbound_process.apply(args=(rows[1].pk,), throw=True)
    assert SmsInbound.objects.get(pk=rows[1].pk).state == SmsInbound.State.PENDING
    assert _bodies() == []
    # Another customer's SMS is not held up by it: the task files it instead.
    assert _bodies("+491605555555") == ["someone else"]
    assert SmsInbound.objects.get(pk=other.pk).state == SmsInbound.State.DONE


@pytest.mark.django_db(transaction=True)
def test_concurrent_tasks_for_one_sender_file_each_sms_once_and_in_order(sms_number):
    rows = _post_all(Client(), [(f"SMq{i}", f"part {i}") for i in range(8)])
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def work(pk: int) -> None:
        try:
            barrier.wait()
            sms_inbound_process.apply(args=(pk,), throw=True)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    # Four workers get the tasks of four different SMS of the same customer at the same moment.
    threads = [threading.Thread(target=work, args=(rows[i].pk,)) for i in (7, 3, 0, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    run_inbound_tasks()  # the tasks of the other four SMS arrive afterwards
    assert _bodies() == [f"part {i}" for i in range(8)]
    assert set(SmsInbound.objects.values_list("state", flat=True)) == {SmsInbound.State.DONE}
    assert Conversation.objects.count() == 1


# --- the sweep -----------------------------------------------------------------------------------------------


def test_sweep_queues_a_row_whose_task_was_lost(client, sms_number, settings):
    settings.SMS_INBOUND_SWEEP_GRACE_SECONDS = 5
    # The acknowledgement's transaction never commits here, so its task is never queued: lost.
    rows = _post_all(client, [("SMl0", "lost 0"), ("SMl1", "lost 1")])
    other = _post_all(client, [("SMl2", "lost too")], from_="+491604444444")[-1]
    assert sms_inbound_sweep() == {"reclaimed": 0, "requeued": 0}
    SmsInbound.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=6))
    with tasks_run_eagerly():
        counts = sms_inbound_sweep()
    assert counts == {"reclaimed": 0, "requeued": 2}  # one task per sender, which files that sender's queue
    assert _bodies() == ["lost 0", "lost 1"] and _bodies("+491604444444") == ["lost too"]
    assert {row.pk for row in SmsInbound.objects.filter(state=SmsInbound.State.DONE)} == {
        rows[0].pk,
        rows[1].pk,
        other.pk,
    }


def test_sweep_takes_back_a_row_whose_worker_died_and_it_is_filed_once(client, sms_number, settings):
    settings.SMS_INBOUND_LEASE_SECONDS = 30
    rows = _post_all(client, [("SMk0", "first"), ("SMk1", "second")])
    held = sms_inbound_claim(sender=CUSTOMER)  # a worker claims the first SMS, then is killed
    assert held.pk == rows[0].pk
    sms_inbound_process.apply(args=(rows[1].pk,), throw=True)  # the second waits behind it
    assert _bodies() == []
    assert sms_inbound_sweep()["reclaimed"] == 0  # a live claim is left alone
    SmsInbound.objects.filter(pk=held.pk).update(claimed_at=timezone.now() - timedelta(seconds=31))
    with tasks_run_eagerly():
        assert sms_inbound_sweep() == {"reclaimed": 1, "requeued": 1}
    assert _bodies() == ["first", "second"]
    assert SmsInbound.objects.get(pk=held.pk).attempts == 2


# --- poison --------------------------------------------------------------------------------------------------


@pytest.fixture
def database_refuses_poison():
    """A trigger makes the database refuse to put an SMS whose text is POISON on a timeline: processing raises."""
    entries, messages = TimelineEntry._meta.db_table, Message._meta.db_table
    poisoned = f"(SELECT body FROM {messages} WHERE id = NEW.message_id) = 'POISON'"  # noqa: S608 (our tables)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION parley_test_poison() RETURNS trigger AS $$ BEGIN "
                f"IF {poisoned} THEN RAISE EXCEPTION 'poison payload'; END IF; RETURN NEW; "
                "END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER parley_test_poison BEFORE INSERT ON {entries} "
                "FOR EACH ROW EXECUTE FUNCTION parley_test_poison()"
            )
        else:
            cursor.execute(
                f"CREATE TRIGGER parley_test_poison BEFORE INSERT ON {entries} "
                f"WHEN {poisoned} BEGIN SELECT RAISE(ABORT, 'poison payload'); END"
            )
    # The test's transaction rolls back, the trigger with it.


def test_poison_sms_is_retried_a_bounded_number_of_times_then_failed_and_the_next_ones_arrive(
    client, sms_number, settings, database_refuses_poison, caplog
):
    settings.SMS_INBOUND_MAX_ATTEMPTS = 3
    settings.SMS_INBOUND_RETRY_SECONDS = 2
    rows = _post_all(client, [("SMp0", "before"), ("SMp1", "POISON"), ("SMp2", "after")])

    with caplog.at_level(logging.WARNING, logger="channels_app.sms.services"):
        run_inbound_tasks()
        # The first is filed; the poison one waits for its retry, and the one after it waits too (order).
        assert _bodies() == ["before"]
        poison = SmsInbound.objects.get(pk=rows[1].pk)
        assert (poison.state, poison.attempts) == (SmsInbound.State.PENDING, 1)
        assert poison.next_attempt_at > timezone.now() + timedelta(seconds=1)
        assert "poison payload" in poison.last_error
        assert SmsInbound.objects.get(pk=rows[2].pk).state == SmsInbound.State.PENDING
        for attempt in (2, 3):
            SmsInbound.objects.filter(pk=poison.pk).update(next_attempt_at=timezone.now())  # its retry is due
            with tasks_run_eagerly():
                sms_inbound_process.apply(args=(poison.pk,), throw=True)
            assert SmsInbound.objects.get(pk=poison.pk).attempts == attempt

    poison.refresh_from_db()
    assert poison.state == SmsInbound.State.FAILED and poison.attempts == 3
    assert "poison payload" in poison.last_error and poison.message is None
    assert _bodies() == ["before", "after"]
    assert SmsInbound.objects.get(pk=rows[2].pk).state == SmsInbound.State.DONE
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failed) == 1 and "SMp1" in failed[0].getMessage() and failed[0].exc_info
    # Nothing re-queues a failed row.
    SmsInbound.objects.filter(pk=poison.pk).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    assert sms_inbound_sweep()["requeued"] == 0


def test_poison_sms_never_holds_back_the_next_ones_once_its_tries_are_used(
    client, sms_number, settings, database_refuses_poison
):
    settings.SMS_INBOUND_MAX_ATTEMPTS = 2
    settings.SMS_INBOUND_RETRY_SECONDS = 0  # retries due at once: one task run does them all
    _post_all(client, [("SMq0", "POISON"), ("SMq1", "one"), ("SMq2", "two")])
    assert run_inbound_tasks() == [SmsInbound.State.FAILED, SmsInbound.State.DONE, SmsInbound.State.DONE]
    assert _bodies() == ["one", "two"]


def test_a_row_whose_worker_died_on_every_try_is_marked_failed(client, sms_number, settings):
    settings.SMS_INBOUND_MAX_ATTEMPTS = 3
    rows = _post_all(client, [("SMw0", "kills workers"), ("SMw1", "fine")])
    # The sweep handed it back after each of three workers died on it.
    SmsInbound.objects.filter(pk=rows[0].pk).update(attempts=3)
    assert run_inbound_tasks() == [SmsInbound.State.FAILED, SmsInbound.State.DONE]
    assert "worker lost" in SmsInbound.objects.get(pk=rows[0].pk).last_error
    assert _bodies() == ["fine"]


# --- admin ---------------------------------------------------------------------------------------------------


def test_supervisor_sees_the_raw_rows_read_only_and_agents_do_not(client, sms_number, supervisor_client, agent_client):
    [row] = _post_all(client, [("SMadm", "Stuck?")])
    changelist = reverse("admin:channel_sms_smsinbound_changelist")
    page = supervisor_client.get(changelist, {"state__exact": "pending"})
    assert page.status_code == 200 and "SMadm" in page.content.decode()
    change = supervisor_client.get(reverse("admin:channel_sms_smsinbound_change", args=[row.pk]))
    assert change.status_code == 200
    content = change.content.decode()
    assert "Stuck?" in content and 'name="_save"' not in content
    assert supervisor_client.get(reverse("admin:channel_sms_smsinbound_add")).status_code == 403
    delete = reverse("admin:channel_sms_smsinbound_delete", args=[row.pk])
    assert supervisor_client.post(delete, {"post": "yes"}).status_code == 403
    assert supervisor_client.post(reverse("admin:channel_sms_smsinbound_change", args=[row.pk]), {}).status_code == 403
    assert agent_client.get(changelist).status_code == 302
    assert SmsInbound.objects.get().state == SmsInbound.State.PENDING
