"""Outbound mail through Django's email backend (``EMAIL_URL``: SMTP with TLS options, or an anymail backend).

The outbox (``conversations.outbox``) calls ``email_transport`` outside any
transaction. SMTP failures are sorted the way the outbox needs them: a refused
connection, a timeout or a 4xx reply may succeed later (``TransientSendError``);
a 5xx reply refuses this mail for good (``PermanentSendError``).
"""

from __future__ import annotations

import smtplib
import ssl

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.models import Message
from conversations.outbox import PermanentSendError, SendResult, TransientSendError


def _smtp_code(exc: Exception) -> int | None:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in exc.recipients.values()]
        return min(codes) if codes else None
    return getattr(exc, "smtp_code", None)


def deliver(mail: EmailMultiAlternatives) -> None:
    """Send one mail, translating backend errors into the outbox's two kinds."""
    # Only Django's SMTP backend knows a timeout; anymail's backends would refuse the argument.
    options = {"timeout": settings.EMAIL_SEND_TIMEOUT} if settings.EMAIL_BACKEND.endswith("smtp.EmailBackend") else {}
    connection = get_connection(fail_silently=False, **options)
    mail.connection = connection
    try:
        sent = mail.send(fail_silently=False)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
        code = _smtp_code(exc)
        detail = str(exc)[:200]
        if code is not None and code >= 500:
            raise PermanentSendError(
                _("The mail server refused the message (%(code)s): %(detail)s") % {"code": code, "detail": detail}
            ) from exc
        raise TransientSendError(f"SMTP {code}: {detail}") from exc
    except (smtplib.SMTPException, ConnectionError, TimeoutError, ssl.SSLError, OSError) as exc:
        raise TransientSendError(f"{exc.__class__.__name__}: {exc}"[:200]) from exc
    if not sent:
        raise TransientSendError("the backend sent nothing")


def build_mail(message: Message, idempotency_key: str) -> EmailMultiAlternatives:
    meta = message.email
    headers = {
        "Message-ID": meta.rfc_message_id,
        # Not a standard header; lets a relay or an ESP that honours it drop a repeat.
        "X-Parley-Idempotency-Key": idempotency_key,
    }
    if meta.in_reply_to:
        headers["In-Reply-To"] = meta.in_reply_to
    if meta.references:
        headers["References"] = meta.references
    mail = EmailMultiAlternatives(
        subject=message.subject,
        body=message.body,
        from_email=meta.from_address or settings.DEFAULT_FROM_EMAIL,
        to=list(meta.to_addresses),
        headers=headers,
    )
    if meta.html:
        mail.attach_alternative(meta.html, "text/html")
    for attachment in message.attachments.all():
        with attachment.file.open("rb") as handle:
            mail.attach(attachment.filename, handle.read(), attachment.content_type)
    return mail


def email_transport(message: Message, idempotency_key: str) -> SendResult:
    """The outbox transport for ``Medium.EMAIL``: the provider id is our own Message-ID."""
    message = Message.objects.select_related("email").prefetch_related("attachments").get(pk=message.pk)
    if not hasattr(message, "email"):
        raise PermanentSendError(_("This email has no headers to send with."))
    deliver(build_mail(message, idempotency_key))
    return SendResult(provider_message_id=message.email.rfc_message_id)


def transcript_deliver(*, request_id: int) -> bool:
    """Send one chat transcript; ``False`` when it was sent already."""
    from django.template.loader import render_to_string

    from channels_app.email.models import TranscriptRequest
    from channels_app.webchat.selectors import chat_entries_for_customer

    request = (
        TranscriptRequest.objects.select_related("chat_session__contact", "chat_session__service")
        .filter(pk=request_id)
        .first()
    )
    if request is None or request.sent_at is not None:
        return False
    session = request.chat_session
    entries = [e for e in chat_entries_for_customer(session=session, limit=2000) if e.message_id]
    context = {"session": session, "entries": entries}
    mail = EmailMultiAlternatives(
        subject=_("Your chat with %(service)s") % {"service": session.service.name},
        body=render_to_string("email/transcript.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[request.address],
        headers={"Message-ID": request.rfc_message_id, "Auto-Submitted": "auto-generated"},
    )
    deliver(mail)
    TranscriptRequest.objects.filter(pk=request.pk, sent_at__isnull=True).update(sent_at=timezone.now())
    return True
