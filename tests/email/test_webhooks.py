"""anymail's Mailgun inbound webhook: signature verified (HMAC-SHA256 of timestamp+token) before anything is stored."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from django.urls import reverse

from conversations.models import Message

pytestmark = pytest.mark.django_db

SIGNING_KEY = "key-test-mailgun-signing-0123456789"
RAW = (Path(__file__).parent / "payloads" / "mailgun_inbound_mime.txt").read_text()
RECORDED_ID = "<CAEbRc5i0mgL9aa=recorded@mail.example.com>"


@pytest.fixture(autouse=True)
def signing_key(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY, "WEBHOOK_SECRET": ""}


def _payload(*, key: str = SIGNING_KEY, timestamp: str = "1777832819", token: str = "f1d2a6b0c3e4") -> dict:  # noqa: S107
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {
        "body-mime": RAW,
        "recipient": "support@example.test",
        "sender": "jane@example.com",
        "timestamp": timestamp,
        "token": token,
        "signature": signature,
    }


def _post(client, data):
    return client.post(reverse("email:mailgun-inbound"), data)


def test_valid_signature_stores_the_mail(anonymous_client, email_service):
    response = _post(anonymous_client, _payload())
    assert response.status_code == 200
    message = Message.objects.get(provider_message_id=RECORDED_ID)
    assert message.body == "Thanks, the new date works for me."
    assert message.email.quoted_text.startswith("On Fri, 3 May 2026")
    assert message.conversation.contact.points.get().value == "jane@example.com"


def test_same_mail_delivered_three_times_is_stored_once(anonymous_client, email_service):
    for token in ("a1", "a2", "a3"):
        assert _post(anonymous_client, _payload(token=token)).status_code == 200
    assert Message.objects.filter(provider_message_id=RECORDED_ID).count() == 1


@pytest.mark.parametrize(
    "change",
    [{"signature": "0" * 64}, {"token": "another-token"}, {"timestamp": "1777832820"}],
    ids=["tampered-signature", "other-token", "other-timestamp"],
)
def test_invalid_signature_is_refused(anonymous_client, email_service, change):
    data = _payload()
    data.update(change)
    assert _post(anonymous_client, data).status_code == 400
    assert not Message.objects.exists()


def test_signature_with_another_key_is_refused(anonymous_client, email_service):
    assert _post(anonymous_client, _payload(key="key-of-an-attacker")).status_code == 400
    assert not Message.objects.exists()


def test_missing_signature_fields_are_refused(anonymous_client, email_service):
    data = _payload()
    del data["signature"]
    assert _post(anonymous_client, data).status_code == 400
    assert not Message.objects.exists()


def test_webhook_is_closed_without_a_signing_key(anonymous_client, email_service, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": ""}
    # Even a "signature" computed with the empty key must not get in.
    assert _post(anonymous_client, _payload(key="")).status_code == 404
    assert not Message.objects.exists()
