"""SMS fixtures: a local Twilio-speaking server, an account and number pointed at it, a conversation."""

from __future__ import annotations

import pytest
from django.conf import settings

from agents.models import AgentState
from agents.services import agent_state_set
from channels_app.sms.models import SmsAccount, SmsNumber
from contacts.models import ContactPoint
from conversations.models import Direction, Interaction, Medium
from conversations.services import conversation_open, interaction_start
from tests.factories import ContactFactory, ServiceFactory
from tests.sms.twilio_server import FakeTwilio, twilio_signature

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
OUR_NUMBER = "+4930111111"
CUSTOMER = "+491701234567"


@pytest.fixture
def fake_twilio():
    server = FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def service(db):
    return ServiceFactory(name="Support", slug="support")


@pytest.fixture
def sms_account(db, fake_twilio):
    return SmsAccount.objects.create(
        name="Test", account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, api_base_url=fake_twilio.base_url
    )


@pytest.fixture
def sms_number(sms_account, service):
    return SmsNumber.objects.create(account=sms_account, phone_number=OUR_NUMBER, service=service)


@pytest.fixture
def ready_agent(agent, service):
    agent.services.add(service)
    agent_state_set(agent=agent, state=AgentState.READY, changed_by=agent.user)
    agent.refresh_from_db()
    return agent


@pytest.fixture
def contact(db):
    contact = ContactFactory(first_name="Ada", last_name="Lovelace")
    ContactPoint.objects.create(contact=contact, kind=ContactPoint.Kind.PHONE, value=CUSTOMER)
    return contact


@pytest.fixture
def chat_conversation(contact, service, ready_agent):
    """An open conversation of ``ready_agent`` with a live chat (the customer's phone is known)."""
    conversation, _ = conversation_open(contact=contact, service=service, agent=ready_agent.user)
    interaction_start(
        conversation=conversation,
        medium=Medium.CHAT,
        direction=Direction.INBOUND,
        agent=ready_agent.user,
        state=Interaction.State.ACTIVE,
    )
    conversation.refresh_from_db()
    return conversation


def signed_post(client, path: str, params: dict, *, token: str = AUTH_TOKEN, url: str | None = None, **extra):
    """POST ``params`` to ``path`` as Twilio would, signed for PUBLIC_BASE_URL + path (or ``url``)."""
    signature = twilio_signature(auth_token=token, url=url or settings.PUBLIC_BASE_URL + path, params=params)
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature, **extra)


def run_inbound_tasks() -> list[str]:
    """Run, as the worker would, the ``sms_inbound_process`` task the webhook queued for each stored row.

    The acknowledgement only stores the raw payload; a test that expects the message runs the tasks that
    the acknowledgement queued (in the order queued). Returns every row's state afterwards, oldest first.
    """
    from channels_app.sms.models import SmsInbound
    from channels_app.sms.tasks import sms_inbound_process

    pending = SmsInbound.objects.filter(state=SmsInbound.State.PENDING).order_by("id").values_list("pk", flat=True)
    for pk in list(pending):
        sms_inbound_process.apply(args=(pk,), throw=True)
    return list(SmsInbound.objects.order_by("id").values_list("state", flat=True))


def inbound_params(*, sid: str, body: str, from_: str = CUSTOMER, to: str = OUR_NUMBER, media: int = 0) -> dict:
    """A recorded Twilio inbound-SMS webhook payload (fields as Twilio sends them)."""
    params = {
        "ToCountry": "DE",
        "ToState": "",
        "SmsMessageSid": sid,
        "NumMedia": str(media),
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "DE",
        "To": to,
        "MessagingServiceSid": "",
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": from_,
        "ApiVersion": "2010-04-01",
    }
    for index in range(media):
        params[f"MediaContentType{index}"] = "image/png"
        params[f"MediaUrl{index}"] = (
            f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media/ME{index:032d}"
        )
    return params


def status_params(*, sid: str, status: str, error_code: str = "") -> dict:
    """A recorded Twilio status-callback payload."""
    params = {
        "SmsSid": sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": CUSTOMER,
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": OUR_NUMBER,
        "ApiVersion": "2010-04-01",
    }
    if error_code:
        params["ErrorCode"] = error_code
    return params
