"""SMS: sending from the workspace through the outbox, receiving, delivery status, opt-out, MMS media.

Rules decided here (docs/SMS.md explains them):
- An outbound SMS continues the conversation's live SMS interaction; without one it starts an outbound
  SMS interaction held by the agent (a thread the customer's replies join). In wrap-up (no live
  interaction) the SMS goes out in a one-off interaction that ends at once, so the conversation stays in
  wrap-up and the agent's capacity and wrap-up time are untouched.
- Closed conversations have no composer; the contact's "Follow up" → SMS opens a follow-up conversation.
- An inbound SMS joins the contact's open conversation (its live SMS interaction, or a new one given to
  the agent who holds the conversation), else opens one that is queued and routed like a chat.
- STOP and the like opt the number out: nothing is sent to it until START; the agent sees why.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.models import AgentProfile, AgentState
from agents.services import agent_work_started
from channels_app.sms import provider
from channels_app.sms.models import DevelopmentSms, SmsAccount, SmsNumber, SmsOptOut
from contacts.models import ContactPoint
from contacts.normalize import normalize_phone
from contacts.selectors import contact_addresses
from conversations import events
from conversations.models import Attachment, Conversation, Direction, Interaction, Medium, Message, TimelineEntry
from conversations.outbox import (
    PermanentSendError,
    SendResult,
    message_delivery_update,
    outbox_enqueue,
)
from conversations.routing import route_on_commit
from conversations.services import (
    _entry,
    inbound_contact_receive,
    interaction_answer,
    interaction_end,
    interaction_start,
    message_record,
)

logger = logging.getLogger(__name__)

# Twilio's default opt-out and opt-in keywords (Advanced Opt-Out off); matched on the whole trimmed text.
OPT_OUT_KEYWORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
OPT_IN_KEYWORDS = {"START", "YES", "UNSTOP"}

# GSM 03.38: the basic set costs one septet, the extension set two (escape + character).
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class Segments:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


def sms_segments(text: str) -> Segments:
    """How many SMS ``text`` takes: 160/153 GSM-7 septets or 70/67 UCS-2 units per (concatenated) part."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    if units == 0:
        return Segments(encoding, 0, 0)
    segments = 1 if units <= single else -(-units // multi)
    return Segments(encoding, units, segments)


# --- addresses and opt-out ---------------------------------------------------------------------


def sms_opted_out(*, phone: str) -> SmsOptOut | None:
    return SmsOptOut.objects.filter(phone_number=phone).first()


def _opted_out_reason(opt_out: SmsOptOut) -> str:
    return _("The customer opted out of SMS (replied “%(keyword)s” on %(date)s).") % {
        "keyword": opt_out.keyword or "STOP",
        "date": timezone.localtime(opt_out.created_at).strftime("%Y-%m-%d"),
    }


def sms_recipient(*, conversation: Conversation) -> str | None:
    """The customer's number: the one this conversation's SMS thread uses, else the contact's phone."""
    interaction = None
    for candidate in conversation.interactions.filter(medium=Medium.SMS).order_by("-created_at")[:5]:
        if candidate.details.get("phone"):
            interaction = candidate
            break
    if interaction is not None:
        return interaction.details["phone"]
    phones = contact_addresses(contact=conversation.contact, kind=ContactPoint.Kind.PHONE)
    return phones[0] if phones else None


def sms_number_for(*, conversation: Conversation) -> SmsNumber | None:
    """Our number to write from: the one the customer wrote to, else the service's, else any."""
    numbers = SmsNumber.objects.filter(account__is_active=True).select_related("account")
    for interaction in conversation.interactions.filter(medium=Medium.SMS).order_by("-created_at")[:5]:
        if interaction.details.get("number"):
            number = numbers.filter(phone_number=interaction.details["number"]).first()
            if number is not None:
                return number
    if conversation.service_id is not None:
        number = numbers.filter(service_id=conversation.service_id).order_by("id").first()
        if number is not None:
            return number
    return numbers.order_by("id").first()


def sms_unavailable_reason(conversation: Conversation, user) -> str:
    """ "" when the agent may send an SMS in ``conversation`` now, else why not (shown in the composer)."""
    if conversation.assigned_agent_id != user.pk:
        return _("This conversation is not yours.")
    # The workspace asks on every render: the contact's numbers come from the addresses it has loaded
    # anyway, and one query looks them all up in the opt-out list. Sending checks the exact recipient.
    phones = contact_addresses(contact=conversation.contact, kind=ContactPoint.Kind.PHONE)
    if not phones:
        return _("The contact has no phone number.")
    opt_outs = {row.phone_number: row for row in SmsOptOut.objects.filter(phone_number__in=phones)}
    if len(opt_outs) == len(set(phones)):
        return _opted_out_reason(opt_outs[phones[0]])
    return ""


def sms_retry_check(message: Message) -> str:
    phone = message.interaction.details.get("phone") or ""
    opt_out = sms_opted_out(phone=phone) if phone else None
    return _opted_out_reason(opt_out) if opt_out else ""


# --- sending ---------------------------------------------------------------------------------------


def _clean_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationError(_("The message is empty."))
    if len(text) > settings.SMS_MAX_CHARS:
        raise ValidationError(_("An SMS can have at most %(limit)s characters.") % {"limit": settings.SMS_MAX_CHARS})
    return text


@transaction.atomic
def sms_send(*, conversation: Conversation, agent_user, text: str) -> Message:
    """The agent writes to the customer by SMS; the outbox sends it after commit."""
    text = _clean_text(text)
    conversation = Conversation.objects.select_for_update().select_related("contact").get(pk=conversation.pk)
    if not conversation.is_open:
        raise ValidationError(_("The conversation is closed."))
    reason = sms_unavailable_reason(conversation, agent_user)
    if reason:
        raise ValidationError(reason)
    phone = sms_recipient(conversation=conversation)
    number = sms_number_for(conversation=conversation)
    details = {"phone": phone, "number": number.phone_number if number else ""}
    live = list(conversation.interactions.live())
    thread = next((i for i in reversed(live) if i.medium == Medium.SMS), None)
    one_off = False
    if thread is not None and thread.state in (Interaction.State.QUEUED, Interaction.State.OFFERED):
        if thread.state == Interaction.State.OFFERED and thread.agent_id not in (None, agent_user.pk):
            raise ValidationError(_("The customer's SMS is being offered to another agent."))
        thread = interaction_answer(interaction=thread, agent=agent_user)
        agent_work_started(user=agent_user)
        events.agent_conversations_changed(user_id=agent_user.pk)
    elif thread is None:
        # In wrap-up nothing is live: a one-off SMS that ends at once keeps the conversation in wrap-up.
        one_off = not live
        thread = interaction_start(
            conversation=conversation,
            medium=Medium.SMS,
            direction=Direction.OUTBOUND,
            agent=None if one_off else agent_user,
            state=Interaction.State.ACTIVE,
        )
        if not one_off:
            agent_work_started(user=agent_user)
            events.agent_conversations_changed(user_id=agent_user.pk)
    if thread.details.get("phone") != phone or not thread.details.get("number"):
        thread.details = {**thread.details, **{k: v for k, v in details.items() if v}}
        Interaction.objects.filter(pk=thread.pk).update(details=thread.details)
    message = message_record(
        interaction=thread,
        direction=Direction.OUTBOUND,
        author_kind=Message.Author.AGENT,
        author_agent=agent_user,
        body=text,
        delivery_status=Message.Status.QUEUED,
    )
    outbox_enqueue(message=message)
    Conversation.objects.filter(pk=conversation.pk).update(customer_waiting_since=None)
    if one_off:
        interaction_end(interaction=thread, reason="sent_in_wrapup", actor=agent_user)
    return message


def sms_composer_send(*, conversation: Conversation, agent_user, data, files) -> Message:
    """The composer's entry point (``conversations.channels``)."""
    return sms_send(conversation=conversation, agent_user=agent_user, text=data.get("text", ""))


@transaction.atomic
def sms_thread_end(*, conversation: Conversation, agent_user) -> Interaction:
    """The agent ends the SMS thread; a later SMS from the customer starts a new one."""
    thread = conversation.interactions.live().filter(medium=Medium.SMS).order_by("-created_at").first()
    if thread is None or thread.agent_id != agent_user.pk:
        raise ValidationError(_("There is no SMS thread of yours in this conversation."))
    return interaction_end(interaction=thread, reason="agent_ended", actor=agent_user)


def status_callback_url(*, idempotency_key: str) -> str:
    # The key names this send attempt: a late callback for an attempt the agent has since retried is ignored.
    return f"{settings.PUBLIC_BASE_URL}{reverse('sms:twilio-status')}?{urlencode({'k': idempotency_key})}"


def sms_transport(message: Message, idempotency_key: str) -> SendResult:
    """The outbox's transport for SMS: runs outside any transaction, once per attempt."""
    interaction = message.interaction
    phone = interaction.details.get("phone") or sms_recipient(conversation=message.conversation)
    if not phone:
        raise PermanentSendError(_("The contact has no phone number."))
    opt_out = sms_opted_out(phone=phone)
    if opt_out is not None:
        raise PermanentSendError(_opted_out_reason(opt_out))
    number = None
    if interaction.details.get("number"):
        number = (
            SmsNumber.objects.select_related("account")
            .filter(phone_number=interaction.details["number"], account__is_active=True)
            .first()
        )
    number = number or sms_number_for(conversation=message.conversation)
    if number is None:
        return _development_send(message, idempotency_key, phone)
    sent = provider.provider_send(
        account=number.account,
        from_number=number.phone_number,
        to=phone,
        body=message.body,
        status_callback=status_callback_url(idempotency_key=idempotency_key),
        idempotency_key=idempotency_key,
    )
    # Accepted by the provider is "sent" for the agent; the callbacks take it on to delivered.
    status = sent.status if sent.status != Message.Status.QUEUED else Message.Status.SENT
    return SendResult(provider_message_id=sent.sid, status=status)


def _development_send(message: Message, idempotency_key: str, phone: str) -> SendResult:
    """No SMS account configured: record the SMS for the admin's "development SMS" list instead."""
    sid = "SMdev" + idempotency_key.replace("-", "")
    # A concurrent repeat of the same attempt may have recorded it: that is the one record.
    with contextlib.suppress(IntegrityError):
        DevelopmentSms.objects.get_or_create(
            idempotency_key=idempotency_key,
            defaults={"sid": sid, "to": phone, "body": message.body, "message": message},
        )
    return SendResult(provider_message_id=sid, status=Message.Status.SENT)


# --- status callbacks -------------------------------------------------------------------------------


def sms_status_update(*, idempotency_key: str, message_sid: str, status: str, error_code: str = "") -> bool:
    """A Twilio status callback; returns whether the message changed. Twice or out of order is harmless."""
    from conversations.models import Outbox

    ours = provider.STATUS_MAP.get(status)
    if ours is None or not idempotency_key:
        return False
    row = Outbox.objects.select_related("message").filter(idempotency_key=_uuid_or_none(idempotency_key)).first()
    if row is None or row.medium != Medium.SMS:
        return False
    message = row.message
    if message.provider_message_id and message_sid and message.provider_message_id != message_sid:
        return False
    reason = ""
    if ours in (Message.Status.FAILED, Message.Status.UNDELIVERED):
        reason = _("The carrier reported error %(code)s.") % {"code": error_code} if error_code else status
    return message_delivery_update(message=message, status=ours, reason=reason)


def _uuid_or_none(value: str):
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# --- receiving -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundSms:
    sid: str
    from_: str
    to: str
    body: str
    media: tuple[tuple[str, str], ...] = ()  # (url, content type)


class SmsAlreadyReceived(Exception):
    """The provider delivered this message SID before (a retry, or a concurrent duplicate)."""


def _agent_serving(conversation: Conversation):
    agent = conversation.assigned_agent
    if agent is None:
        return None
    if not AgentProfile.objects.filter(user=agent).exclude(state=AgentState.LOGGED_OUT).exists():
        return None
    return agent


@transaction.atomic
def sms_inbound_receive(*, number: SmsNumber, sms: InboundSms) -> Message:
    """A customer's SMS to one of our numbers: into their open conversation, or a new one that is routed.

    Raises ``SmsAlreadyReceived`` for a message SID we have: the whole transaction (a thread it may have
    started) rolls back, so concurrent duplicates leave exactly one message.
    """
    if Message.objects.filter(medium=Medium.SMS, provider_message_id=sms.sid).exists():
        raise SmsAlreadyReceived(sms.sid)
    phone = _phone_or_raw(sms.from_)
    service = number.service
    interaction = inbound_contact_receive(
        point_kind=ContactPoint.Kind.PHONE, address=phone, medium=Medium.SMS, service=service
    )
    conversation = interaction.conversation
    if interaction.details.get("phone") != phone or interaction.details.get("number") != number.phone_number:
        interaction.details = {**interaction.details, "phone": phone, "number": number.phone_number}
        Interaction.objects.filter(pk=interaction.pk).update(details=interaction.details)
    if interaction.state == Interaction.State.QUEUED:
        agent = _agent_serving(conversation)
        if agent is not None:
            # The agent already serving this contact's conversation gets the reply, as with a chat.
            interaction = interaction_answer(interaction=interaction, agent=agent)
            agent_work_started(user=agent)
            events.agent_conversations_changed(user_id=agent.pk)
        else:
            events.service_queue_changed(service_id=service.pk)
            route_on_commit(service_id=service.pk)
    from conversations.services import DuplicateMessage

    try:
        message = message_record(
            interaction=interaction,
            direction=Direction.INBOUND,
            author_kind=Message.Author.CUSTOMER,
            body=sms.body,
            provider_message_id=sms.sid,
        )
    except DuplicateMessage as exc:
        raise SmsAlreadyReceived(sms.sid) from exc
    Conversation.objects.filter(pk=conversation.pk, customer_waiting_since__isnull=True).update(
        customer_waiting_since=timezone.now()
    )
    keyword = sms.body.strip().upper().rstrip(".!")
    if keyword in OPT_OUT_KEYWORDS:
        _opt_out(conversation, phone, keyword)
    elif keyword in OPT_IN_KEYWORDS:
        _opt_in(conversation, phone, keyword)
    if sms.media:
        account_id = number.account_id
        media = list(sms.media)
        transaction.on_commit(lambda: _queue_media(message.pk, account_id, media))
    return message


def _phone_or_raw(value: str) -> str:
    try:
        return normalize_phone(value)
    except ValidationError:
        # Short codes and alphanumeric senders are not E.164; keep them as they came.
        return value.strip()


def _opt_out(conversation: Conversation, phone: str, keyword: str) -> None:
    _row, created = SmsOptOut.objects.get_or_create(phone_number=phone, defaults={"keyword": keyword})
    if created:
        _entry(
            conversation,
            TimelineEntry.Kind.CHANNEL_EVENT,
            data={"medium": Medium.SMS, "event": "opted_out", "keyword": keyword, "phone": phone},
        )
        events.conversation_changed(conversation_uuid=conversation.uuid, agent_id=conversation.assigned_agent_id)


def _opt_in(conversation: Conversation, phone: str, keyword: str) -> None:
    deleted, _rows = SmsOptOut.objects.filter(phone_number=phone).delete()
    if deleted:
        _entry(
            conversation,
            TimelineEntry.Kind.CHANNEL_EVENT,
            data={"medium": Medium.SMS, "event": "opted_in", "keyword": keyword, "phone": phone},
        )
        events.conversation_changed(conversation_uuid=conversation.uuid, agent_id=conversation.assigned_agent_id)


def _queue_media(message_id: int, account_id: int, media: list[tuple[str, str]]) -> None:
    from channels_app.sms.tasks import sms_media_fetch

    for index, (url, content_type) in enumerate(media):
        try:
            sms_media_fetch.delay(message_id, account_id, url, content_type, index)
        except Exception:  # the broker is down: the picture is lost, the text is not
            logger.warning("could not queue MMS media download for message %s", message_id, exc_info=True)


MEDIA_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}


def sms_media_store(*, message_id: int, account_id: int, url: str, content_type: str, index: int = 0) -> Attachment:
    """Download one MMS picture into an attachment of the message (in a task: the webhook stays fast)."""
    message = Message.objects.select_related("conversation").get(pk=message_id)
    existing = message.attachments.filter(filename__startswith=f"mms-{index + 1}.").first()
    if existing is not None:
        return existing
    account = SmsAccount.objects.get(pk=account_id)
    content, served_type = provider.media_download(account=account, url=url, max_bytes=settings.SMS_MMS_MAX_BYTES)
    kind = (served_type or content_type or "").split(";")[0].strip().lower()
    extension = MEDIA_EXTENSIONS.get(kind, "bin")
    filename = f"mms-{index + 1}.{extension}"
    with transaction.atomic():
        attachment = Attachment(message=message, filename=filename, content_type=kind[:100], size=len(content))
        attachment.file.save(filename, ContentFile(content), save=False)
        attachment.save()
        entry = getattr(message, "entry", None)
        if entry is not None:
            events.conversation_entry_changed(
                conversation_uuid=message.conversation.uuid,
                entry_id=entry.pk,
                agent_id=message.conversation.assigned_agent_id,
            )
    return attachment
