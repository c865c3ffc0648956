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
- The inbound webhook only stores Twilio's raw payload (``sms_inbound_store``, unique on MessageSid) and
  acknowledges; a task processes each sender's rows in receipt order (``sms_inbound_process``), claiming the
  oldest unprocessed row of that sender with a conditional UPDATE, so a duplicate task does nothing and two
  SMS of one customer never overtake each other. A poison row is tried a bounded number of times, then
  marked failed, and the sender's later SMS go on. ``sms_inbound_sweep`` queues what a lost task left.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F, Min
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.models import AgentProfile, AgentState
from agents.services import agent_work_started
from channels_app.sms import provider
from channels_app.sms.models import DevelopmentSms, SmsAccount, SmsInbound, SmsNumber, SmsOptOut
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
from core.broker import task_enqueue

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


MAX_MEDIA = 10


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


# --- inbound webhook: store, acknowledge, process in a task ----------------------------------------

# Rows one task processes before it hands the rest to a new task.
INBOUND_BATCH = 50
# Waiting rows a task looks at to find a sender whose queue is free (the others' heads are being processed).
INBOUND_SCAN = 20
INBOUND_SWEEP_BATCH = 500


def sms_inbound_store(*, account: SmsAccount, params: Mapping[str, str]) -> SmsInbound | None:
    """Keep a verified inbound-SMS webhook's payload; ``None`` when its MessageSid is stored already.

    The unique MessageSid decides duplicates, also concurrent ones (the second INSERT waits for the first and
    then fails), and the processing task is queued on commit. Nothing else happens before the acknowledgement.
    """
    # PostgreSQL cannot store NUL in text or jsonb; no SMS needs one.
    payload = {key: value.replace("\x00", "") for key, value in params.items()}
    sid = payload.get("MessageSid") or payload.get("SmsSid", "")
    try:
        with transaction.atomic():
            row = SmsInbound.objects.create(
                message_sid=sid,
                account=account,
                sender=_phone_or_raw(payload.get("From", ""))[:64],
                to_number=payload.get("To", "")[:32],
                payload=payload,
            )
    except IntegrityError:
        if not SmsInbound.objects.filter(message_sid=sid).exists():
            raise
        return None
    transaction.on_commit(lambda: _queue_inbound(row.pk))
    return row


def _queue_inbound(inbound_id: int, *, countdown: float = 0) -> None:
    from channels_app.sms.tasks import sms_inbound_process

    task_enqueue(sms_inbound_process, args=(inbound_id,), countdown=countdown, what=f"inbound SMS {inbound_id}")


def sms_inbound_claim(*, sender: str) -> SmsInbound | None:
    """Take the oldest unprocessed row of ``sender`` for one attempt; ``None`` if it is not free and due.

    Only the head of the sender's queue is ever claimed, so a later SMS never overtakes an earlier one that
    is being processed or waits for a retry. The conditional UPDATE makes a duplicate task harmless: of two
    tasks aiming at one row, one claims it and the other finds nothing. Rows leave the queue (done, ignored,
    failed) for good, so a head read just before the UPDATE can only have been claimed or finished since.
    """
    head = (
        SmsInbound.objects.filter(sender=sender, state__in=(SmsInbound.State.PENDING, SmsInbound.State.PROCESSING))
        .order_by("id")
        .values("pk", "state", "next_attempt_at")
        .first()
    )
    now = timezone.now()
    if head is None or head["state"] != SmsInbound.State.PENDING or head["next_attempt_at"] > now:
        return None
    token = uuid.uuid4()
    claimed = SmsInbound.objects.filter(pk=head["pk"], state=SmsInbound.State.PENDING, next_attempt_at__lte=now).update(
        state=SmsInbound.State.PROCESSING, claimed_at=now, claim_token=token, attempts=F("attempts") + 1
    )
    if not claimed:
        return None
    return SmsInbound.objects.select_related("account").get(pk=head["pk"])


class _ClaimLost(Exception):
    """The lease ran out and the sweep gave the row to another worker: this attempt records nothing."""


def _inbound_finish(row: SmsInbound, *, state: str, message: Message | None = None, error: str = "") -> None:
    updated = SmsInbound.objects.filter(
        pk=row.pk, state=SmsInbound.State.PROCESSING, claim_token=row.claim_token
    ).update(
        state=state,
        message=message,
        last_error=error[:500],
        processed_at=timezone.now(),
        claimed_at=None,
        claim_token=None,
    )
    if not updated:
        raise _ClaimLost(row.pk)


def _inbound_sms(row: SmsInbound, number: SmsNumber) -> InboundSms:
    data = row.payload
    try:
        count = min(int(data.get("NumMedia", "0") or 0), MAX_MEDIA)
    except ValueError:
        count = 0
    media = tuple(
        (data[f"MediaUrl{i}"], data.get(f"MediaContentType{i}", "")) for i in range(count) if data.get(f"MediaUrl{i}")
    )
    return InboundSms(
        sid=row.message_sid, from_=data["From"], to=number.phone_number, body=data.get("Body", ""), media=media
    )


@transaction.atomic
def _inbound_apply(row: SmsInbound) -> str:
    # Lock our claimed row first: the sweep cannot take it back while this transaction writes the message.
    if not SmsInbound.objects.select_for_update().filter(pk=row.pk, claim_token=row.claim_token).exists():
        raise _ClaimLost(row.pk)
    number = (
        SmsNumber.objects.select_related("service")
        .filter(account_id=row.account_id, phone_number=row.to_number)
        .first()
    )
    if number is None:
        # Not one of our configured numbers: it was acknowledged so Twilio stops retrying; say so in the log.
        logger.warning("SMS %s to unconfigured number %s ignored", row.message_sid, row.to_number)
        _inbound_finish(row, state=SmsInbound.State.IGNORED, error="not a configured number")
        return SmsInbound.State.IGNORED
    try:
        message = sms_inbound_receive(number=number, sms=_inbound_sms(row, number))
    except SmsAlreadyReceived:
        # The message table's unique provider id is the last guard (a row re-processed after a lost claim).
        message = Message.objects.filter(medium=Medium.SMS, provider_message_id=row.message_sid).first()
    _inbound_finish(row, state=SmsInbound.State.DONE, message=message)
    return SmsInbound.State.DONE


def _inbound_attempt_failed(row: SmsInbound, exc: Exception) -> str:
    error = f"{exc.__class__.__name__}: {exc}"
    if row.attempts >= settings.SMS_INBOUND_MAX_ATTEMPTS:
        logger.error(
            "inbound SMS %s (row %s) from %s failed %d times; marked failed, the sender's later SMS go on",
            row.message_sid,
            row.pk,
            row.sender,
            row.attempts,
            exc_info=exc,
        )
        with contextlib.suppress(_ClaimLost):
            _inbound_finish(row, state=SmsInbound.State.FAILED, error=error)
        return SmsInbound.State.FAILED
    delay = settings.SMS_INBOUND_RETRY_SECONDS * 2 ** (row.attempts - 1)
    logger.warning(
        "inbound SMS %s (row %s) failed (attempt %d), retrying in %.0f s: %s",
        row.message_sid,
        row.pk,
        row.attempts,
        delay,
        error,
        exc_info=exc,
    )
    released = SmsInbound.objects.filter(
        pk=row.pk, state=SmsInbound.State.PROCESSING, claim_token=row.claim_token
    ).update(
        state=SmsInbound.State.PENDING,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        last_error=error[:500],
        claimed_at=None,
        claim_token=None,
    )
    if released:
        transaction.on_commit(lambda: _queue_inbound(row.pk, countdown=delay))
    return "retry"


def _inbound_handle(row: SmsInbound) -> str:
    if row.attempts > settings.SMS_INBOUND_MAX_ATTEMPTS:
        # Claimed once too often: a worker died on each try (killed by this very payload, perhaps).
        return _inbound_attempt_failed(row, RuntimeError("worker lost while processing"))
    try:
        return _inbound_apply(row)
    except _ClaimLost:
        return "claim-lost"
    except Exception as exc:
        return _inbound_attempt_failed(row, exc)


def _inbound_next(*, sender: str | None) -> SmsInbound | None:
    """Claim the next row: ``sender``'s own first, else the oldest waiting row of any sender that is free."""
    if sender is not None:
        row = sms_inbound_claim(sender=sender)
        if row is not None:
            return row
    waiting = (
        SmsInbound.objects.filter(state=SmsInbound.State.PENDING, next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at", "id")
        .values_list("sender", flat=True)[:INBOUND_SCAN]
    )
    for other in dict.fromkeys(waiting):
        row = sms_inbound_claim(sender=other) if other != sender else None
        if row is not None:
            return row
    return None


def sms_inbound_process(*, inbound_id: int) -> list[str]:
    """File the stored SMS of ``inbound_id``'s sender, oldest first, then other senders' waiting ones.

    Any row of the sender may name the queue: when the head is claimed by another worker, or waits for a
    retry, that worker (or the retry's task) carries on with the sender's rest. Helping with other senders'
    rows means a task never has to wait for its own turn in the broker: with the filesystem broker a prefork
    worker takes a task per slot only every 2 s (synloop), far below 20 SMS/s. Returns each outcome.
    """
    sender = SmsInbound.objects.filter(pk=inbound_id).values_list("sender", flat=True).first()
    outcomes: list[str] = []
    while len(outcomes) < INBOUND_BATCH:
        row = _inbound_next(sender=sender)
        if row is None:
            return outcomes
        outcomes.append(_inbound_handle(row))
    # A long backlog: hand the rest to a new task rather than keep this worker slot for minutes.
    _queue_inbound(inbound_id)
    return outcomes


def sms_inbound_sweep() -> dict[str, int]:
    """Queue the senders whose rows a dead broker or worker left behind; returns counts for the log."""
    now = timezone.now()
    lease = timedelta(seconds=settings.SMS_INBOUND_LEASE_SECONDS)
    abandoned = list(
        SmsInbound.objects.filter(state=SmsInbound.State.PROCESSING, claimed_at__lt=now - lease).values_list(
            "pk", flat=True
        )
    )
    reclaimed = 0
    for pk in abandoned:
        reclaimed += SmsInbound.objects.filter(
            pk=pk, state=SmsInbound.State.PROCESSING, claimed_at__lt=now - lease
        ).update(state=SmsInbound.State.PENDING, claimed_at=None, claim_token=None, next_attempt_at=now)
    grace = timedelta(seconds=settings.SMS_INBOUND_SWEEP_GRACE_SECONDS)
    # One task per sender is enough: it works through that sender's queue in order.
    heads = list(
        SmsInbound.objects.filter(state=SmsInbound.State.PENDING)
        .filter(next_attempt_at__lte=now - grace)
        .values("sender")
        .annotate(head=Min("id"))
        .order_by("head")
        .values_list("head", flat=True)[:INBOUND_SWEEP_BATCH]
    )
    heads += [pk for pk in abandoned if pk not in heads]
    for pk in heads:
        _queue_inbound(pk)
    return {"reclaimed": reclaimed, "requeued": len(heads)}


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
