"""The authorisation matrix (QUALITY.md security list): every URL the project serves, as anonymous, as
the agent who owns the conversation, as another agent and as a supervisor, and every websocket route
as anonymous and as a logged-in user. A URL without an entry here fails the test, so a new view cannot
ship without saying who may use it.

Outcomes: "ok" (served: 2xx, 3xx elsewhere than the login page, or a 4xx about the input such as 400
or 422), "login" (sent to the login page), "deny" (403 or 404: not theirs, or not for their role).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from config.asgi import application
from conversations.models import Direction, Interaction, Medium, Message, Offer
from conversations.services import conversation_open, interaction_start, message_record
from tests.factories import AgentFactory, ContactFactory, ContactPointFactory, ServiceFactory, SupervisorFactory

pytestmark = pytest.mark.django_db(transaction=True)

OK, LOGIN, DENY = "ok", "login", "deny"
ROLES = ("anonymous", "agent", "other_agent", "supervisor")


@dataclass(frozen=True)
class Rule:
    method: str
    # URL built from the world's objects (names of World attributes in braces).
    url: str
    anonymous: str
    agent: str
    other_agent: str
    supervisor: str


def agent_own(method: str, url: str) -> Rule:
    """The desktop's views of one conversation: only the agent it is assigned to."""
    return Rule(method, url, LOGIN, OK, DENY, DENY)


def agent_only(method: str, url: str) -> Rule:
    return Rule(method, url, LOGIN, OK, OK, DENY)


def worker(method: str, url: str) -> Rule:
    """Agents and supervisors (the Contacts section, the history record)."""
    return Rule(method, url, LOGIN, OK, OK, OK)


def supervisor_only(method: str, url: str) -> Rule:
    return Rule(method, url, LOGIN, DENY, DENY, OK)


def public(method: str, url: str) -> Rule:
    return Rule(method, url, OK, OK, OK, OK)


def signed(method: str, url: str) -> Rule:
    """Provider webhooks and customer endpoints: without their signature or token, refused for everyone."""
    return Rule(method, url, DENY, DENY, DENY, DENY)


RULES: dict[str, Rule] = {
    "set_language": public("POST", "/i18n/setlang/"),
    "home": public("GET", "/"),
    "healthz": public("GET", "/healthz"),
    "login": public("GET", "/login/"),
    # Logging out ends on the login page; the world's agent is mid-interaction, so stays (back to the desktop).
    "logout": Rule("POST", "/logout/", LOGIN, OK, LOGIN, LOGIN),
    "desktop": Rule("GET", "/desktop/", LOGIN, OK, OK, OK),  # a supervisor is sent on to the admin
    "agent-state-set": agent_only("POST", "/desktop/state/"),
    "conversations:page": agent_own("GET", "/desktop/c/{conversation}/"),
    "conversations:timeline": agent_own("GET", "/desktop/c/{conversation}/timeline/"),
    "conversations:send": agent_own("POST", "/desktop/c/{conversation}/send/"),
    "conversations:retry": agent_own("POST", "/desktop/c/{conversation}/messages/{message}/retry/"),
    "conversations:note": agent_own("POST", "/desktop/c/{conversation}/note/"),
    "conversations:attach": agent_own("POST", "/desktop/c/{conversation}/attach/"),
    "conversations:end": agent_own("POST", "/desktop/c/{conversation}/end/"),
    "conversations:wrapup": agent_own("POST", "/desktop/c/{conversation}/wrapup/"),
    "conversations:transfer": agent_own("GET", "/desktop/c/{conversation}/transfer/"),
    "conversations:offer-accept": agent_own("POST", "/desktop/offers/{offer}/accept/"),
    "conversations:offer-reject": agent_own("POST", "/desktop/offers/{offer}/reject/"),
    "conversations:history": worker("GET", "/desktop/history/{conversation}/"),
    "conversations:canned": agent_only("GET", "/desktop/canned/?q=x"),
    "conversations:canned-mine": agent_only("GET", "/desktop/canned/mine/"),
    "conversations:canned-mine-delete": agent_own("POST", "/desktop/canned/mine/{canned}/delete/"),
    # Supervisors read attachments too (monitoring, history); other agents do not.
    "conversations:attachment": Rule("GET", "/desktop/attachments/{attachment}/", LOGIN, OK, DENY, OK),
    "contacts:search": worker("GET", "/contacts/?q=a"),
    "contacts:new": worker("GET", "/contacts/new/"),
    "contacts:address-check": worker("GET", "/contacts/address-check/?kind=email&value=a@example.com"),
    "contacts:duplicates": Rule("GET", "/contacts/duplicates/", LOGIN, DENY, DENY, OK),
    "contacts:merge": Rule("GET", "/contacts/merge/{contact}/{other_contact}/", LOGIN, DENY, DENY, OK),
    "contacts:merge-undo": Rule("POST", "/contacts/merges/999999/undo/", LOGIN, DENY, DENY, DENY),
    "contacts:page": worker("GET", "/contacts/{contact}/"),
    "contacts:edit": worker("GET", "/contacts/{contact}/edit/"),
    "contacts:point-add": worker("POST", "/contacts/{contact}/points/"),
    "contacts:point-remove": Rule("POST", "/contacts/{contact}/points/999999/remove/", LOGIN, DENY, DENY, DENY),
    "contacts:export": Rule("GET", "/contacts/{contact}/export/", LOGIN, DENY, DENY, OK),
    "contacts:erase": Rule("POST", "/contacts/{contact}/erase/", LOGIN, DENY, DENY, OK),
    "contacts:follow-up": Rule("POST", "/contacts/{contact}/follow-up/", LOGIN, OK, OK, DENY),
    "webchat:attachment-upload": signed("POST", "/chat/api/attachments/"),
    "webchat:attachment-download": signed("GET", "/chat/api/attachments/forged/"),
    "webchat:page": public("GET", "/chat/{service}/"),
    "webchat:embed": public("GET", "/chat/{service}/embed.js"),
    "webchat:demo": public("GET", "/chat/{service}/demo/"),
    "voice:ice-servers": agent_only("GET", "/voice/ice-servers/"),
    "sms:twilio-inbound": signed("POST", "/sms/twilio/inbound/"),
    "sms:twilio-status": signed("POST", "/sms/twilio/status/"),
    "sms:end": agent_own("POST", "/sms/c/{conversation}/end/"),
    # The mail's HTML: the conversation's agent (and agents who worked it) and supervisors.
    "email:frame": Rule("GET", "/email/frame/{email_message}/", LOGIN, OK, DENY, OK),
    "email:end": agent_own("POST", "/email/c/{conversation}/end/"),
    "email:composer-fields": agent_own("GET", "/email/c/{conversation}/fields/"),
    "email:offer-postpone": agent_own("POST", "/email/offers/{offer}/postpone/"),
    "email:queue": agent_only("GET", "/email/queue/"),
    "email:parked-take": agent_own("POST", "/email/queue/{parked}/take/"),
    "email:signature": agent_only("GET", "/email/signature/"),
    "email:transcript": signed("POST", "/email/transcript/"),
    "email:mailgun-inbound": signed("POST", "/email/inbound/mailgun/"),
    "supervisor:home": supervisor_only("GET", "/supervisor/"),
    "supervisor:agents": supervisor_only("GET", "/supervisor/agents/"),
    "supervisor:agent-state": supervisor_only("POST", "/supervisor/agents/{agent_profile}/state/"),
    "supervisor:queues": supervisor_only("GET", "/supervisor/queues/"),
    "supervisor:conversations": supervisor_only("GET", "/supervisor/conversations/"),
    "supervisor:conversation": supervisor_only("GET", "/supervisor/conversations/{conversation}/"),
    "supervisor:conversation-reassign": supervisor_only("POST", "/supervisor/conversations/{conversation}/reassign/"),
    "supervisor:reports": supervisor_only("GET", "/supervisor/reports/"),
    "supervisor:reports-csv": supervisor_only("GET", "/supervisor/reports/export.csv"),
    "supervisor:audit": supervisor_only("GET", "/supervisor/audit/"),
}


def _url_names() -> set[str]:
    def walk(patterns, namespace=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(
                    pattern.url_patterns, namespace + (f"{pattern.namespace}:" if pattern.namespace else "")
                )
            elif isinstance(pattern, URLPattern) and not namespace.startswith("admin"):
                yield namespace + (pattern.name or "<unnamed>")

    return set(walk(get_resolver().url_patterns))


def test_every_url_has_a_rule():
    names = _url_names()
    assert names - set(RULES) == set(), "URLs without an authorisation rule"
    assert set(RULES) - names == set(), "rules for URLs that do not exist"


@pytest.fixture
def world():
    service = ServiceFactory(slug="matrix")
    agent = AgentFactory()
    other = AgentFactory()
    supervisor = SupervisorFactory()
    contact = ContactFactory()
    ContactPointFactory(contact=contact, kind="email", value="matrix@example.com")
    other_contact = ContactFactory()
    conversation, _ = conversation_open(contact=contact, service=service, agent=agent.user)
    chat = interaction_start(
        conversation=conversation,
        medium=Medium.CHAT,
        direction=Direction.INBOUND,
        agent=agent.user,
        state=Interaction.State.ACTIVE,
    )
    message = message_record(
        interaction=chat, direction=Direction.OUTBOUND, author_kind=Message.Author.AGENT, body="hello"
    )
    email = interaction_start(
        conversation=conversation,
        medium=Medium.EMAIL,
        direction=Direction.INBOUND,
        agent=agent.user,
        state=Interaction.State.ACTIVE,
    )
    email_message = message_record(
        interaction=email, direction=Direction.INBOUND, author_kind=Message.Author.CUSTOMER, body="mail"
    )
    from django.core.files.base import ContentFile

    from conversations.models import Attachment

    attachment = Attachment(message=message, filename="a.txt", content_type="text/plain", size=2)
    attachment.file.save("a.txt", ContentFile(b"hi"), save=True)
    queued = interaction_start(conversation=conversation, medium=Medium.SMS, direction=Direction.INBOUND)
    from datetime import timedelta

    from django.utils import timezone

    offer = Offer.objects.create(interaction=queued, agent=agent.user, expires_at=timezone.now() + timedelta(minutes=5))
    from channels_app.email.models import EmailMeta, ParkedEmail
    from conversations.models import CannedResponse

    EmailMeta.objects.create(message=email_message, rfc_message_id="<matrix@example.com>", html="<p>Hello</p>")
    parked_mail = interaction_start(conversation=conversation, medium=Medium.EMAIL, direction=Direction.INBOUND)
    parked = ParkedEmail.objects.create(interaction=parked_mail, agent=agent.user, service_id=service.pk)

    canned = CannedResponse.objects.create(owner=agent.user, shortcut="mine", title="Mine", body="Hi")
    values = {
        "canned": canned.pk,
        "parked": parked.pk,
        "conversation": conversation.uuid,
        "message": message.pk,
        "email_message": email_message.pk,
        "attachment": attachment.pk,
        "offer": offer.pk,
        "contact": contact.pk,
        "other_contact": other_contact.pk,
        "service": service.slug,
        "agent_profile": agent.pk,
    }
    users = {"anonymous": None, "agent": agent.user, "other_agent": other.user, "supervisor": supervisor}
    return values, users


def _outcome(response) -> str:
    location = response.headers.get("Location", "")
    if response.status_code in (301, 302) and "/login/" in location:
        return LOGIN
    if response.status_code in (401, 403, 404):
        return DENY
    if response.status_code >= 500:
        return f"error {response.status_code}"
    return OK


@pytest.mark.parametrize("name", sorted(RULES))
def test_each_role_gets_the_answer_the_rule_names(world, name):
    values, users = world
    rule = RULES[name]
    url = rule.url.format(**values)
    got = {}
    for role in ROLES:
        client = Client()
        if users[role] is not None:
            client.force_login(users[role])
        response = client.get(url) if rule.method == "GET" else client.post(url, {})
        got[role] = _outcome(response)
    expected = {role: getattr(rule, role) for role in ROLES}
    assert got == expected, f"{name} {rule.method} {url}"


# --- websockets -------------------------------------------------------------------------------------------

HOST = (b"host", b"127.0.0.1:8000")
ORIGIN = (b"origin", b"http://127.0.0.1:8000")
WS_ROUTES = [
    "/ws/agent/",
    "/ws/chat/",
    "/ws/voice/",
    "/ws/supervisor/agents/",
    "/ws/supervisor/queues/",
    f"/ws/supervisor/conversations/{uuid.UUID(int=1)}/",
]


async def _connect(path: str, headers) -> tuple[bool, object, WebsocketCommunicator]:
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return connected, code, communicator


@pytest.mark.parametrize("path", WS_ROUTES)
async def test_websockets_refuse_a_foreign_or_missing_origin(path):
    for headers in ([HOST], [HOST, (b"origin", b"https://evil.example")]):
        connected, _code, communicator = await _connect(path, headers)
        assert not connected, (path, headers)
        await communicator.disconnect()


@pytest.mark.parametrize(
    "path",
    [
        "/ws/agent/",
        "/ws/supervisor/agents/",
        "/ws/supervisor/queues/",
        f"/ws/supervisor/conversations/{uuid.UUID(int=1)}/",
    ],
)
async def test_staff_sockets_close_an_anonymous_client_before_joining_anything(path):
    connected, _code, communicator = await _connect(path, [HOST, ORIGIN])
    if connected:
        # Accepted only to say why: the next thing is the close.
        output = await communicator.receive_output(timeout=5)
        assert output["type"] == "websocket.close", output
    await communicator.disconnect()
