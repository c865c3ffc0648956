"""IMAP polling against a real dovecot started by the test with a throwaway configuration."""

from __future__ import annotations

import pytest

from channels_app.email.imap import imap_poll_all, mailbox_poll
from channels_app.email.models import Mailbox, ProcessedMail
from conversations.models import Conversation, Message
from tests.email.mail import bounce, mail

pytestmark = pytest.mark.django_db


def _mailbox(dovecot, service, **fields) -> Mailbox:
    values = {
        "name": "Support",
        "address": "support@example.test",
        "service": service,
        "host": "127.0.0.1",
        "port": dovecot.port,
        "security": Mailbox.Security.STARTTLS,
        "verify_certificate": False,
        "username": dovecot.user,
        "password": dovecot.password,
    }
    values.update(fields)
    return Mailbox.objects.create(**values)


def test_poll_stores_new_mail_threads_replies_and_ignores_duplicates_auto_replies_and_bounces(
    dovecot, email_service, django_capture_on_commit_callbacks
):
    mailbox = _mailbox(dovecot, email_service)
    dovecot.deliver(mail(message_id="<first@example.com>", subject="Booking 42", text="Can I change it?"))
    with django_capture_on_commit_callbacks(execute=True):
        assert mailbox_poll(mailbox=mailbox) == {"message": 1}
    first = Message.objects.get(provider_message_id="<first@example.com>")
    assert first.email.mailbox == mailbox
    assert first.conversation.service == email_service
    # Processed mail is flagged on the server: nothing new remains.
    assert dovecot.folder_state()["unseen"] == []

    # A second poll finds nothing; the same mail delivered again (new UID) is a duplicate.
    assert mailbox_poll(mailbox=mailbox) == {}
    dovecot.deliver(mail(message_id="<first@example.com>", subject="Booking 42", text="Can I change it?"))
    assert mailbox_poll(mailbox=mailbox) == {"duplicate": 1}
    assert Message.objects.filter(provider_message_id="<first@example.com>").count() == 1

    # A reply from another address threads by its headers; an auto-reply and a bounce open nothing.
    dovecot.deliver(
        mail(sender="other@example.org", message_id="<second@example.com>", in_reply_to="<first@example.com>")
    )
    dovecot.deliver(mail(subject="Out of office", headers={"Auto-Submitted": "auto-replied"}))
    dovecot.deliver(bounce(original_message_id="<unknown@parley.invalid>"))
    assert mailbox_poll(mailbox=mailbox) == {"message": 1, "auto_reply": 1, "bounce": 1}
    second = Message.objects.get(provider_message_id="<second@example.com>")
    assert second.conversation_id == first.conversation_id
    assert Conversation.objects.count() == 1
    assert ProcessedMail.objects.filter(mailbox=mailbox).count() == 5


def test_uid_recorded_but_not_flagged_is_flagged_without_storing_again(dovecot, email_service):
    """The worker died after commit and before flagging: the next poll only flags."""
    mailbox = _mailbox(dovecot, email_service)
    dovecot.deliver(mail(message_id="<crash@example.com>"))
    client = dovecot.client()
    client.select("INBOX")
    uidvalidity = int(client.response("UIDVALIDITY")[1][0])
    uid = int(client.uid("SEARCH", None, "ALL")[1][0].split()[0])
    client.logout()
    ProcessedMail.objects.create(mailbox=mailbox, uidvalidity=uidvalidity, uid=uid, outcome="message")
    assert mailbox_poll(mailbox=mailbox) == {"already": 1}
    assert not Message.objects.exists()
    assert dovecot.folder_state()["unseen"] == []


def test_processed_mail_can_be_moved_to_another_folder(dovecot, email_service):
    mailbox = _mailbox(dovecot, email_service, after_processing=Mailbox.AfterProcessing.MOVE, move_to="Processed")
    dovecot.deliver(mail(message_id="<move@example.com>"))
    assert mailbox_poll(mailbox=mailbox) == {"message": 1}
    assert dovecot.folder_state("INBOX")["all"] == []
    assert len(dovecot.folder_state("Processed")["all"]) == 1


def test_imaps_tls_mailbox_and_a_wrong_password_is_reported_not_raised(dovecot, email_service):
    _mailbox(dovecot, email_service, name="Wrong", password="not-the-password")
    good = _mailbox(dovecot, email_service, name="Good", security=Mailbox.Security.TLS, port=dovecot.imaps_port)
    dovecot.deliver(mail(message_id="<both@example.com>"))
    results = imap_poll_all()
    assert "AUTHENTICATIONFAILED" in results["Wrong"] or "error" in results["Wrong"].lower()
    assert results["Good"] == {"message": 1}
    wrong = Mailbox.objects.get(name="Wrong")
    assert wrong.last_error and wrong.last_polled_at
    good.refresh_from_db()
    assert good.last_error == ""


def test_beat_task_is_registered_under_its_scheduled_name(settings):
    from config.celery import app

    assert settings.CELERY_BEAT_SCHEDULE["email-imap-poll"]["task"] == "channels_app.email.tasks.imap_poll_all"
    app.loader.import_default_modules()
    assert "channels_app.email.tasks.imap_poll_all" in app.tasks
