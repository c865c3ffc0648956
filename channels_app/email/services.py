"""Every write of the email channel: sending from the composer, receiving, bounces, postponing, transcripts."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from email.utils import formataddr, parseaddr

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.services import agent_work_started
from channels_app.email.models import EmailMeta, EmailSignature, EmailThread, Mailbox, ParkedEmail, TranscriptRequest
from channels_app.email.parsing import ParsedMail, parse_mail, split_quoted
from channels_app.email.sanitize import html_from_text, remote_image_count, sanitize_html
from contacts.models import ContactPoint
from contacts.services import contact_identify
from conversations import events
from conversations.models import (
    Attachment,
    Conversation,
    Direction,
    Interaction,
    Medium,
    Message,
    Offer,
    Service,
    TimelineEntry,
)
from conversations.outbox import FAILED_STATUSES, message_delivery_update, outbox_enqueue
from conversations.services import (
    DuplicateMessage,
    _entry,
    inbound_contact_receive,
    interaction_answer,
    interaction_end,
    interaction_start,
    message_record,
)

logger = logging.getLogger(__name__)


def new_message_id() -> str:
    return f"<{uuid.uuid4().hex}@{settings.EMAIL_MESSAGE_ID_DOMAIN}>"


def thread_for(*, conversation: Conversation) -> EmailThread:
    thread = EmailThread.objects.filter(conversation=conversation).first()
    if thread is not None:
        return thread
    try:
        with transaction.atomic():
            return EmailThread.objects.create(conversation=conversation)
    except IntegrityError:  # a concurrent send created it first
        return EmailThread.objects.get(conversation=conversation)


def subject_with_token(subject: str, token: str) -> str:
    marker = f"[#{token}]"
    return subject if marker in subject else f"{subject} {marker}".strip()


def contact_email_addresses(*, conversation: Conversation) -> list[str]:
    from contacts.selectors import contact_addresses

    return contact_addresses(contact=conversation.contact, kind=ContactPoint.Kind.EMAIL)


def email_unavailable_reason(conversation: Conversation, user) -> str:
    """Why the agent cannot write an email in ``conversation`` now ("" when they can)."""
    if not conversation.is_open:
        return _("The conversation is closed.")
    if conversation.assigned_agent_id != user.pk:
        return _("Only the agent who holds the conversation can write to the customer.")
    if not contact_email_addresses(conversation=conversation):
        return _("The contact has no email address.")
    return ""


def _live_email(conversation: Conversation) -> Interaction | None:
    return conversation.interactions.live().filter(medium=Medium.EMAIL).order_by("-created_at", "-id").first()


def _last_email(conversation: Conversation) -> EmailMeta | None:
    return (
        EmailMeta.objects.filter(message__conversation=conversation)
        .select_related("message", "mailbox")
        .order_by("-message__created_at", "-message_id")
        .first()
    )


def email_reply_defaults(*, conversation: Conversation) -> dict[str, str]:
    """What the composer's fields start with: the customer's address and the subject to answer."""
    addresses = contact_email_addresses(conversation=conversation)
    last = _last_email(conversation)
    subject = ""
    if last is not None and last.message.subject:
        subject = last.message.subject
        if not subject.lower().startswith(("re:", "aw:")):
            subject = f"Re: {subject}"
    to = addresses[0] if addresses else ""
    if last is not None and last.message.direction == Direction.INBOUND and last.from_address in addresses:
        to = last.from_address
    return {"to": to, "subject": subject}


def _from_address(conversation: Conversation) -> str:
    last_inbound = (
        EmailMeta.objects.filter(message__conversation=conversation, mailbox__isnull=False)
        .select_related("mailbox")
        .order_by("-message_id")
        .first()
    )
    if last_inbound is not None:
        name, _address = parseaddr(settings.DEFAULT_FROM_EMAIL)
        return formataddr((name, last_inbound.mailbox.address))
    return settings.DEFAULT_FROM_EMAIL


def _check_uploads(files: list) -> None:
    if len(files) > settings.EMAIL_MAX_ATTACHMENTS:
        raise ValidationError(_("Attach at most %(n)d files.") % {"n": settings.EMAIL_MAX_ATTACHMENTS})
    total = sum(upload.size for upload in files)
    if total > settings.EMAIL_MAX_ATTACHMENT_BYTES:
        raise ValidationError(
            _("The attachments are too large (at most %(mb)d MB together).")
            % {"mb": settings.EMAIL_MAX_ATTACHMENT_BYTES // (1024 * 1024)}
        )


@transaction.atomic
def email_send(
    *, conversation: Conversation, agent_user, to: str, subject: str, text: str, files: list | tuple = ()
) -> Message:
    """The agent writes an email in ``conversation``: stored, threaded and queued in one transaction.

    The Message-ID is fixed here, before the outbox hands the mail to the
    server, so every attempt of one send (a retry after a worker died mid-send)
    carries the same Message-ID and receivers de-duplicate it.
    """
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    reason = email_unavailable_reason(conversation, agent_user)
    if reason:
        raise ValidationError(reason)
    to = to.strip().lower()
    try:
        validate_email(to)
    except ValidationError:
        raise ValidationError(_("“%(address)s” is not a valid email address.") % {"address": to}) from None
    text = text.strip()
    if not text:
        raise ValidationError(_("Write a message first."))
    subject = " ".join(subject.split())[:200] or _("Your request")
    _check_uploads(list(files))
    interaction = _live_email(conversation)
    if interaction is None or interaction.state not in (Interaction.State.ACTIVE, Interaction.State.ON_HOLD):
        interaction = interaction_start(
            conversation=conversation,
            medium=Medium.EMAIL,
            direction=Direction.OUTBOUND,
            agent=agent_user,
            state=Interaction.State.ACTIVE,
        )
        agent_work_started(user=agent_user)
        events.agent_conversations_changed(user_id=agent_user.pk)
    thread = thread_for(conversation=conversation)
    previous = _last_email(conversation)
    references: list[str] = []
    in_reply_to = ""
    if previous is not None:
        references = [*previous.references.split(), previous.rfc_message_id][-20:]
        in_reply_to = previous.rfc_message_id
    message = message_record(
        interaction=interaction,
        direction=Direction.OUTBOUND,
        author_kind=Message.Author.AGENT,
        author_agent=agent_user,
        subject=subject_with_token(subject, thread.token)[:255],
        body=text,
        delivery_status=Message.Status.QUEUED,
    )
    EmailMeta.objects.create(
        message=message,
        rfc_message_id=new_message_id(),
        in_reply_to=in_reply_to,
        references=" ".join(references),
        from_address=_from_address(conversation),
        to_addresses=[to],
        html=html_from_text(text),
    )
    for upload in files:
        Attachment.objects.create(
            message=message,
            file=upload,
            filename=(upload.name or "attachment")[:255],
            content_type=(getattr(upload, "content_type", "") or "application/octet-stream")[:100],
            size=upload.size,
        )
    outbox_enqueue(message=message)
    return message


def email_compose_send(*, conversation: Conversation, agent_user, data, files) -> Message:
    """The workspace composer's email channel (``conversations.channels``)."""
    defaults = email_reply_defaults(conversation=conversation)
    text = (data.get("text") or "").strip()
    if text and data.get("email_signature"):
        signature = EmailSignature.objects.filter(user=agent_user).values_list("body", flat=True).first()
        if signature and signature.strip():
            text = f"{text}\n\n-- \n{signature.strip()}"
    return email_send(
        conversation=conversation,
        agent_user=agent_user,
        to=(data.get("email_to") or defaults["to"]),
        subject=(data.get("email_subject") or defaults["subject"]),
        text=text,
        files=files.getlist("email_attachments") if files else [],
    )


@transaction.atomic
def email_interaction_end(*, conversation: Conversation, agent_user) -> Interaction | None:
    """The agent is done with email in this conversation (so wrap-up can start)."""
    interaction = _live_email(conversation)
    if interaction is None or interaction.agent_id != agent_user.pk:
        return None
    return interaction_end(interaction=interaction, reason="agent_ended", actor=agent_user)


def signature_save(*, user, body: str) -> EmailSignature:
    signature, _created = EmailSignature.objects.update_or_create(user=user, defaults={"body": body.strip()[:2000]})
    return signature


# --- inbound -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    outcome: str  # "message", "duplicate", "bounce", "auto_reply", "ignored"
    message: Message | None = None


def _threaded_conversation(parsed: ParsedMail) -> Conversation | None:
    """The open conversation this mail answers: by its headers first, then by the subject token."""
    if parsed.thread_ids:
        meta = (
            EmailMeta.objects.filter(rfc_message_id__in=parsed.thread_ids[:50])
            .select_related("message__conversation")
            .order_by("-message_id")
        )
        for candidate in meta:
            if candidate.message.conversation.is_open:
                return candidate.message.conversation
    token = parsed.subject_token
    if token:
        thread = EmailThread.objects.filter(token=token).select_related("conversation").first()
        if thread is not None and thread.conversation.is_open:
            return thread.conversation
    return None


def _inbound_service(mailbox: Mailbox | None) -> Service | None:
    if mailbox is not None and mailbox.service_id:
        return mailbox.service
    slug = settings.EMAIL_INBOUND_SERVICE
    services = Service.objects.filter(is_active=True)
    if slug:
        return services.filter(slug=slug).first()
    return next((s for s in services.order_by("pk") if Medium.EMAIL in s.media), None)


def _reply_interaction(conversation: Conversation, service: Service | None) -> Interaction:
    """The interaction a reply joins: the live email thread, or a new one for whoever holds the conversation."""
    live = _live_email(conversation)
    if live is not None:
        return live
    agent_id = conversation.assigned_agent_id
    if agent_id is not None and conversation.interactions.live().filter(agent_id=agent_id).exists():
        # The agent is working the conversation right now (a call, a chat): the reply is theirs at once.
        interaction = interaction_start(
            conversation=conversation,
            medium=Medium.EMAIL,
            direction=Direction.INBOUND,
            agent=conversation.assigned_agent,
            state=Interaction.State.ACTIVE,
        )
        events.agent_conversations_changed(user_id=agent_id)
        return interaction
    _entry(conversation, TimelineEntry.Kind.JOINED, data={"medium": Medium.EMAIL})
    return interaction_start(
        conversation=conversation,
        medium=Medium.EMAIL,
        direction=Direction.INBOUND,
        service=conversation.service or service,
    )


def _bounce_record(parsed: ParsedMail) -> Received:
    meta = (
        EmailMeta.objects.filter(
            rfc_message_id=parsed.bounce.original_message_id, message__direction=Direction.OUTBOUND
        )
        .select_related("message")
        .first()
    )
    if meta is None:
        logger.info("bounce for unknown message %s ignored", parsed.bounce.original_message_id)
        return Received("bounce")
    reason = _("Bounced: %(reason)s") % {"reason": parsed.bounce.reason}
    message_delivery_update(message=meta.message, status=Message.Status.FAILED, reason=reason)
    return Received("bounce", meta.message)


def _plain_from_html(html: str) -> str:
    import nh3

    text = nh3.clean(html.replace("<br", "\n<br").replace("</p>", "</p>\n"), tags=set())
    import html as html_lib

    return "\n".join(line.strip() for line in html_lib.unescape(text).splitlines()).strip()


def email_receive(*, raw: bytes, mailbox: Mailbox | None = None) -> Received:
    """One inbound mail, from IMAP or a provider's webhook; safe to call twice with the same mail.

    Bounces mark our original failed; auto-replies never open conversations
    (they show on the thread they answer); anything else joins the
    conversation it answers (headers, then subject token) or goes to the
    sender's contact under the open-or-join rule.
    """
    parsed = parse_mail(raw)
    if parsed.bounce is not None:
        return _bounce_record(parsed)
    if EmailMeta.objects.filter(rfc_message_id=parsed.message_id).exists():
        return Received("duplicate")
    if not parsed.from_address or "@" not in parsed.from_address:
        return Received("ignored")
    try:
        with transaction.atomic():
            return _receive(parsed, mailbox)
    except DuplicateMessage as exc:
        return Received("duplicate", exc.message)
    except ValidationError:
        # A sender address our normalisation refuses: nothing to thread it to or reply to.
        logger.info("inbound mail %s from an unusable address ignored", parsed.message_id)
        return Received("ignored")
    except IntegrityError:
        # The EmailMeta unique index: the same mail stored by a concurrent poll or webhook.
        if EmailMeta.objects.filter(rfc_message_id=parsed.message_id).exists():
            return Received("duplicate")
        raise


def _receive(parsed: ParsedMail, mailbox: Mailbox | None) -> Received:
    from conversations.routing import route_on_commit

    conversation = _threaded_conversation(parsed)
    if parsed.auto_reply:
        if conversation is not None:
            _entry(
                conversation,
                TimelineEntry.Kind.CHANNEL_EVENT,
                data={"medium": Medium.EMAIL, "event": "auto_reply", "subject": parsed.subject[:200]},
            )
        return Received("auto_reply")
    service = _inbound_service(mailbox)
    first, _sep, last = (parsed.from_name or "").strip().partition(" ")
    if conversation is None:
        contact, _created = contact_identify(
            kind=ContactPoint.Kind.EMAIL, value=parsed.from_address, first_name=first[:100], last_name=last[:100]
        )
        conversation = Conversation.objects.open().filter(contact=contact).first()
    if conversation is not None:
        interaction = _reply_interaction(conversation, service)
    else:
        interaction = inbound_contact_receive(
            point_kind=ContactPoint.Kind.EMAIL,
            address=parsed.from_address,
            medium=Medium.EMAIL,
            service=service,
            first_name=first[:100],
            last_name=last[:100],
        )
    text = parsed.text or _plain_from_html(parsed.html)
    body, quoted = split_quoted(text)
    message = message_record(
        interaction=interaction,
        direction=Direction.INBOUND,
        author_kind=Message.Author.CUSTOMER,
        subject=parsed.subject,
        body=body[: settings.EMAIL_MAX_BODY_CHARS],
        provider_message_id=parsed.message_id,
    )
    clean = sanitize_html(parsed.html, quote_label=_("Show quoted text")) if parsed.html.strip() else ""
    EmailMeta.objects.create(
        message=message,
        rfc_message_id=parsed.message_id,
        in_reply_to=parsed.in_reply_to,
        references=" ".join(parsed.references)[:10000],
        from_address=parsed.from_address,
        to_addresses=parsed.to,
        cc_addresses=parsed.cc,
        html=clean,
        remote_images=remote_image_count(clean),
        quoted_text=quoted[: settings.EMAIL_MAX_BODY_CHARS],
        raw_headers=parsed.raw_headers,
        mailbox=mailbox,
    )
    for part in parsed.attachments[: settings.EMAIL_MAX_ATTACHMENTS]:
        Attachment.objects.create(
            message=message,
            file=ContentFile(part.content, name=part.filename),
            filename=part.filename,
            content_type=part.content_type[:100],
            size=len(part.content),
        )
    conversation = interaction.conversation
    if conversation.customer_waiting_since is None:
        Conversation.objects.filter(pk=conversation.pk, customer_waiting_since__isnull=True).update(
            customer_waiting_since=message.created_at
        )
    if interaction.state == Interaction.State.QUEUED and interaction.service_id:
        events.service_queue_changed(service_id=interaction.service_id)
        route_on_commit(service_id=interaction.service_id)
    return Received("message", message)


def email_retry_check(message: Message) -> str:
    """A retry after a bounce needs a different address; the same one would bounce again."""
    meta = getattr(message, "email", None)
    if meta is None:
        return ""
    if message.status_reason.startswith(_("Bounced:")) and message.delivery_status in FAILED_STATUSES:
        return _("This address bounced; write a new email to another address instead.")
    return ""


# --- offers: postponing into a personal queue ------------------------------------------------------------------------


@transaction.atomic
def email_offer_postpone(*, offer_id: int, agent_user) -> ParkedEmail:
    """The agent keeps an offered email for later: it leaves the team queue for their personal one."""
    from conversations.routing import _pending_offer_for, route_all_on_commit

    offer = _pending_offer_for(offer_id=offer_id, agent_user=agent_user)
    interaction = offer.interaction
    if interaction.medium != Medium.EMAIL:
        raise ValidationError(_("Only email can be postponed."))
    now = timezone.now()
    offer.state = Offer.State.REJECTED
    offer.responded_at = now
    offer.save(update_fields=["state", "responded_at"])
    service_id = interaction.service_id
    # Without a service the interaction is in no team queue, so routing leaves it alone while parked.
    Interaction.objects.filter(pk=interaction.pk).update(state=Interaction.State.QUEUED, agent=None, service=None)
    parked = ParkedEmail.objects.create(interaction=interaction, agent=agent_user, service_id=service_id)
    events.agent_offers_changed(user_id=agent_user.pk)
    events.conversation_changed(conversation_uuid=interaction.conversation.uuid, agent_id=None)
    if service_id:
        events.service_queue_changed(service_id=service_id)
    route_all_on_commit(user_id=agent_user.pk)
    return parked


@transaction.atomic
def email_parked_take(*, parked_id: int, agent_user) -> Interaction:
    """The agent takes a postponed email from their personal queue."""
    parked = ParkedEmail.objects.select_for_update().filter(pk=parked_id, agent=agent_user).first()
    if parked is None:
        raise ValidationError(_("This email is not in your queue."))
    interaction = Interaction.objects.select_for_update().get(pk=parked.interaction_id)
    if interaction.state != Interaction.State.QUEUED:
        parked.delete()
        raise ValidationError(_("This email has been dealt with already."))
    Interaction.objects.filter(pk=interaction.pk).update(service_id=parked.service_id)
    parked.delete()
    interaction = interaction_answer(interaction=interaction, agent=agent_user)
    agent_work_started(user=agent_user)
    events.agent_conversations_changed(user_id=agent_user.pk)
    return interaction


# --- chat transcripts ----------------------------------------------------------------------------------------------


def transcript_request(*, session, address: str) -> TranscriptRequest:
    """The customer asks for their chat by email; sent by a task after commit."""
    address = address.strip().lower()
    try:
        validate_email(address)
    except ValidationError:
        raise ValidationError(_("Enter a valid email address.")) from None
    try:
        with transaction.atomic():
            request = TranscriptRequest.objects.create(
                chat_session=session, address=address, rfc_message_id=new_message_id()
            )
            _entry(
                session.conversation,
                TimelineEntry.Kind.CHANNEL_EVENT,
                interaction=session.interaction,
                data={"medium": Medium.EMAIL, "event": "transcript_requested", "address": address},
            )
    except IntegrityError:
        raise ValidationError(_("A transcript of this chat has already been sent.")) from None

    def queue() -> None:
        from channels_app.email.tasks import transcript_send_task

        try:
            transcript_send_task.delay(request.pk)
        except Exception:  # broker down: the sweep in imap_poll_all sends it later
            logger.warning("transcript %s: broker unavailable", request.pk, exc_info=True)

    transaction.on_commit(queue)
    return request
