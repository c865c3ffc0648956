"""Realtime events of the email channel: published after commit, none after a rollback."""

from __future__ import annotations

import pytest
from django.db import transaction

from channels_app.email.services import email_receive
from conversations.models import Message, TimelineEntry
from conversations.outbox import message_delivery_update
from tests.conversations.test_events import published  # noqa: F401 (fixture)
from tests.email.mail import mail

pytestmark = pytest.mark.django_db


def test_reply_is_pushed_to_the_conversation_after_commit(
    chat_conversation,
    published,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        result = email_receive(raw=mail(text="Any news?"))
        assert published == []
    entry = result.message.entry
    group = f"conversation.{chat_conversation.uuid}"
    timeline = [m for g, m in published if g == group and m["type"] == "conversation.timeline"]
    assert {
        "type": "conversation.timeline",
        "conversation": str(chat_conversation.uuid),
        "entry_id": entry.pk,
    } in timeline


def test_nothing_is_published_when_the_receiving_transaction_rolls_back(
    chat_conversation,
    published,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                email_receive(raw=mail(text="Lost"))
                raise RuntimeError("the poller died before commit")
        except RuntimeError:
            pass
    assert published == []
    assert not Message.objects.filter(body="Lost").exists()


def test_bounce_re_renders_the_sent_entry(
    chat_conversation,
    published,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    from tests.email.mail import bounce

    sent = email_receive(raw=mail(message_id="<x@example.com>")).message  # stands in for our own mail below
    Message.objects.filter(pk=sent.pk).update(direction="outbound", delivery_status=Message.Status.SENT)
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert email_receive(raw=bounce(original_message_id="<x@example.com>")).outcome == "bounce"
    assert any(m["type"] == "conversation.timeline" and m.get("entry_id") == sent.entry.pk for _g, m in published), (
        published
    )
    assert not message_delivery_update(message=sent, status=Message.Status.DELIVERED)
    assert TimelineEntry.objects.filter(message=sent).count() == 1
