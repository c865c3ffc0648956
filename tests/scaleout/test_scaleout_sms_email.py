"""Scale-out (issue: prove it), SMS and email: the agent's desktop socket is on daphne B; the agent sends through
daphne A, a Celery worker of the cluster hands the message to a real provider (the local Twilio-speaking server,
aiosmtpd), and the provider's signed callbacks and the customer's replies are posted to daphne A. Every change
reaches the agent's socket on B live, through Redis."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlencode

import pytest

from channels_app.sms.models import SmsAccount, SmsNumber
from contacts.models import ContactPoint
from contacts.services import contact_point_add
from conversations.models import Direction, Medium, Message, TimelineEntry
from tests.email.mail import mail
from tests.email.servers import smtp_server
from tests.scaleout.cluster import Cluster, running_cluster
from tests.scaleout.test_scaleout import _post, _until, _wait_for, _ws, chat_open, chat_setup
from tests.sms.conftest import ACCOUNT_SID, AUTH_TOKEN, CUSTOMER, OUR_NUMBER, inbound_params, status_params
from tests.sms.twilio_server import FakeTwilio, twilio_signature

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

# The address providers call and sign: not the daphne a request happens to reach (as behind a proxy).
PUBLIC_BASE_URL = "https://desk.scaleout.test"
MAILGUN_KEY = "key-scaleout-mailgun-signing-0123456789"


def _webhook(base: str, path: str, data: dict, headers: dict | None = None) -> int:
    request = urllib.request.Request(
        base + path,
        data=urlencode(data).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _twilio_post(base: str, path: str, params: dict) -> int:
    signature = twilio_signature(auth_token=AUTH_TOKEN, url=PUBLIC_BASE_URL + path, params=params)
    return _webhook(base, path, params, {"X-Twilio-Signature": signature})


def _entry(raw: str, entry_id: int) -> str:
    """The HTML of one timeline entry inside a pushed frame ("" when the frame does not carry it)."""
    start = raw.find(f'<li id="entry-{entry_id}"')
    if start < 0:
        return ""
    end = raw.find('<li id="entry-', start + 1)
    return raw[start : end if end >= 0 else len(raw)]


def _customer_entry_with(raw: str, text: str) -> bool:
    """Whether a pushed frame carries a timeline entry from the customer with ``text`` (not only a list preview)."""
    return any(
        'class="entry entry-message from-customer"' in entry and text in entry
        for entry in raw.split('<li id="entry-')[1:]
    )


def _show(agent_socket, conversation) -> None:
    """The desktop tab opens the conversation: its socket then pushes that conversation's entries."""
    agent_socket.send(json.dumps({"action": "resync", "conversation": str(conversation.uuid), "after": 0}))
    _until(agent_socket, lambda raw: f"workspace-header-{conversation.uuid}" in raw, what="the re-sync")


def _outbound_entry(conversation, medium: str) -> tuple[Message, int]:
    message = _wait_for(
        lambda: Message.objects.filter(conversation=conversation, medium=medium, direction=Direction.OUTBOUND).first(),
        what=f"the outbound {medium}",
    )
    return message, TimelineEntry.objects.get(message=message).pk


def _worker_delivered(running: Cluster) -> bool:
    """A worker of the cluster (not this process) ran the outbox task (it logs that after the push went out)."""
    return _wait_for(
        lambda: any(
            "conversations.tasks.outbox_deliver" in log and "succeeded" in log
            for log in (running.log("worker-a"), running.log("worker-b"))
        ),
        what="the outbox task's success in a worker's log",
    )


@pytest.fixture
def fake_twilio():
    server = FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN).start()
    yield server
    server.stop()


def test_sms_status_and_reply_posted_to_one_process_reach_the_agent_on_the_other(tmp_path, fake_twilio):
    with running_cluster(tmp_path, PUBLIC_BASE_URL=PUBLIC_BASE_URL) as running:
        daphne_a, daphne_b = running.web
        service, profile, cookie, csrf = chat_setup("scale-out-sms")
        account = SmsAccount.objects.create(
            name="Scale-out", account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, api_base_url=fake_twilio.base_url
        )
        SmsNumber.objects.create(account=account, phone_number=OUR_NUMBER, service=service)
        with _ws(daphne_b, "/ws/agent/", Cookie=cookie) as agent_socket, _ws(daphne_a, "/ws/chat/") as customer:
            conversation, _token = chat_open(
                running,
                service=service,
                profile=profile,
                cookie=cookie,
                csrf=csrf,
                customer=customer,
                agent_socket=agent_socket,
            )
            contact_point_add(contact=conversation.contact, kind=ContactPoint.Kind.PHONE, value=CUSTOMER)
            _show(agent_socket, conversation)

            # The agent (desktop socket on B) sends an SMS through daphne A; a cluster worker hands it to Twilio.
            text = "Your new flight: Friday 10:05, seat 12A."
            send = f"/desktop/c/{conversation.uuid}/send/"
            assert _post(daphne_a, send, {"channel": "sms", "text": text}, cookie=cookie, csrf=csrf) == 200
            message, entry_id = _outbound_entry(conversation, Medium.SMS)
            _until(
                agent_socket,
                lambda raw: "delivery-sent" in _entry(raw, entry_id),
                timeout=60,
                what="the SMS marked sent by the worker, on B",
            )
            [provider_copy] = fake_twilio.messages
            assert provider_copy["Body"] == text
            assert provider_copy["To"] == CUSTOMER and provider_copy["From"] == OUR_NUMBER
            callback = provider_copy["StatusCallback"]
            assert callback.startswith(f"{PUBLIC_BASE_URL}/sms/twilio/status/?k="), callback
            assert _worker_delivered(running)

            # Twilio reports delivery (signed for the public address) to daphne A: the entry on B turns delivered.
            status = status_params(sid=provider_copy["sid"], status="delivered")
            assert _twilio_post(daphne_a, callback.removeprefix(PUBLIC_BASE_URL), status) == 204
            _until(
                agent_socket,
                lambda raw: "delivery-delivered" in _entry(raw, entry_id),
                what="the delivered status posted to A, on B",
            )

            # The customer answers by SMS, posted to A (processed there or by a worker): it appears live on B.
            reply = "Friday is perfect, thanks!"
            params = inbound_params(sid="SM" + uuid.uuid4().hex, body=reply)
            assert _twilio_post(daphne_a, "/sms/twilio/inbound/", params) == 200
            _until(
                agent_socket,
                lambda raw: _customer_entry_with(raw, reply),
                timeout=60,
                what="the customer's SMS reply posted to A, on B",
            )

    message.refresh_from_db()
    assert message.delivery_status == Message.Status.DELIVERED
    assert fake_twilio.bodies() == {text: 1}
    replies = Message.objects.filter(medium=Medium.SMS, direction=Direction.INBOUND)
    assert [(m.conversation_id, m.body) for m in replies] == [(conversation.pk, reply)]


def _mailgun(raw: bytes) -> dict:
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(MAILGUN_KEY.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {
        "body-mime": raw.decode(),
        "recipient": "support@example.test",
        "sender": "nina@example.com",
        "timestamp": timestamp,
        "token": token,
        "signature": signature,
    }


def test_email_sent_state_and_reply_posted_to_one_process_reach_the_agent_on_the_other(tmp_path):
    with (
        smtp_server() as (smtp, smtp_port),
        running_cluster(
            tmp_path,
            EMAIL_URL=f"smtp://127.0.0.1:{smtp_port}",
            MAILGUN_WEBHOOK_SIGNING_KEY=MAILGUN_KEY,
            PUBLIC_BASE_URL=PUBLIC_BASE_URL,
        ) as running,
    ):
        daphne_a, daphne_b = running.web
        service, profile, cookie, csrf = chat_setup("scale-out-email")
        with _ws(daphne_b, "/ws/agent/", Cookie=cookie) as agent_socket, _ws(daphne_a, "/ws/chat/") as customer:
            conversation, _token = chat_open(
                running,
                service=service,
                profile=profile,
                cookie=cookie,
                csrf=csrf,
                customer=customer,
                agent_socket=agent_socket,
            )
            _show(agent_socket, conversation)

            # The agent (desktop socket on B) emails through daphne A; a cluster worker delivers it over SMTP.
            text = "Your booking is now on Friday."
            data = {"channel": "email", "text": text, "email_subject": "Your updated booking"}
            assert _post(daphne_a, f"/desktop/c/{conversation.uuid}/send/", data, cookie=cookie, csrf=csrf) == 200
            message, entry_id = _outbound_entry(conversation, Medium.EMAIL)
            _until(
                agent_socket,
                lambda raw: "delivery-sent" in _entry(raw, entry_id),
                timeout=60,
                what="the email marked sent by the worker, on B",
            )
            [received] = smtp.received
            sent = received.message
            assert received.rcpt_tos == ["nina@example.com"]
            assert sent.get_body(("plain",)).get_content().strip() == text
            assert _worker_delivered(running)

            # The customer's reply comes in through Mailgun's signed webhook, posted to A: it shows on B live.
            reply = mail(
                sender="Nina Roth <nina@example.com>",
                subject=f"Re: {sent['Subject']}",
                in_reply_to=sent["Message-ID"],
                references=sent["Message-ID"],
                text="Friday works, thank you!\n\nOn Mon, Parley wrote:\n> Your booking is now on Friday.\n",
            )
            assert _webhook(daphne_a, "/email/inbound/mailgun/", _mailgun(reply)) == 200
            _until(
                agent_socket,
                lambda raw: _customer_entry_with(raw, "Friday works, thank you!"),
                timeout=60,
                what="the customer's email reply posted to A, on B",
            )

    message.refresh_from_db()
    assert message.delivery_status == Message.Status.SENT
    assert message.provider_message_id == sent["Message-ID"]
    [inbound] = Message.objects.filter(medium=Medium.EMAIL, direction=Direction.INBOUND)
    assert inbound.conversation_id == conversation.pk
    assert inbound.body == "Friday works, thank you!"
    assert len(smtp.received) == 1
