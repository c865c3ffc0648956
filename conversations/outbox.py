"""Outbound SMS and email that is never lost (STYLE.md, "Outbound, never lost").

1. A channel's send service stores the message and calls ``outbox_enqueue``
   inside the same transaction; the delivery task is queued on commit, so a
   rolled-back send never reaches a provider.
2. ``outbox_deliver`` claims the row with a conditional UPDATE (a task
   delivered twice finds nothing to claim), calls the medium's transport
   outside any transaction with the row's idempotency key, and records the
   result only while it still holds the claim.
3. Only ``TransientSendError`` is retried, with exponential backoff and a cap
   on attempts; ``PermanentSendError`` (and anything unexpected) marks the
   message failed with a reason the agent sees, and the agent may retry.
4. ``outbox_sweep`` (Celery beat) re-queues rows whose task was lost with a
   dead broker, and rows whose worker died holding the claim.

Provider status callbacks go through ``message_delivery_update``, which never
moves a status backwards, so callbacks arriving twice or out of order are
harmless.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations import events
from conversations.models import Direction, Message, Outbox
from core.broker import task_enqueue

logger = logging.getLogger(__name__)


class TransientSendError(Exception):
    """The provider could not take the message now (timeout, 5xx, rate limit): try again later."""


class PermanentSendError(Exception):
    """The provider refused the message for good; ``str(exc)`` tells the agent why."""


@dataclass(frozen=True)
class SendResult:
    """What a transport reports for a message the provider accepted."""

    provider_message_id: str | None
    status: str = Message.Status.SENT


# A transport takes the message and the idempotency key and hands the message to the provider.
Transport = Callable[[Message, str], SendResult]
TRANSPORTS: dict[str, Transport] = {}


def transport_register(*, medium: str, transport: Transport) -> None:
    """Called from a channel app's ``ready()``: how messages of ``medium`` leave Parley."""
    TRANSPORTS[medium] = transport


# Delivery states in the order a message passes through them. A status never moves to a lower rank;
# failed and undelivered are final (only the agent's retry starts over).
_RANK = {
    Message.Status.PENDING: 0,
    Message.Status.QUEUED: 1,
    Message.Status.SENT: 2,
    Message.Status.DELIVERED: 3,
    Message.Status.READ: 4,
    Message.Status.UNDELIVERED: 5,
    Message.Status.FAILED: 5,
}
FAILED_STATUSES = (Message.Status.FAILED, Message.Status.UNDELIVERED)


def _queue(outbox_id: int, *, countdown: float = 0) -> None:
    """Queue the delivery task; if the broker is down the sweep queues it later."""
    from conversations.tasks import outbox_deliver

    task_enqueue(outbox_deliver, args=(outbox_id,), countdown=countdown, what=f"outbox {outbox_id}")


def outbox_enqueue(*, message: Message) -> Outbox:
    """Put ``message`` in the outbox; call inside the transaction that stored it."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_enqueue must run inside the transaction that stores the message")
    if message.direction != Direction.OUTBOUND:
        raise ValueError("only outbound messages go through the outbox")
    if message.medium not in TRANSPORTS:
        raise ValidationError(_("Parley cannot send %(medium)s messages.") % {"medium": message.get_medium_display()})
    if message.delivery_status != Message.Status.QUEUED:
        Message.objects.filter(pk=message.pk).update(delivery_status=Message.Status.QUEUED)
        message.delivery_status = Message.Status.QUEUED
    row = Outbox.objects.create(message=message, medium=message.medium)
    transaction.on_commit(lambda: _queue(row.pk))
    return row


def _backoff(attempts: int) -> float:
    base = settings.OUTBOX_BACKOFF_SECONDS
    return float(min(settings.OUTBOX_BACKOFF_MAX_SECONDS, base * 2 ** max(attempts - 1, 0)))


def outbox_claim(*, outbox_id: int) -> Outbox | None:
    """Take the row for one attempt; ``None`` when it is not due or another worker has it."""
    now = timezone.now()
    token = uuid.uuid4()
    claimed = Outbox.objects.filter(pk=outbox_id, state=Outbox.State.PENDING, next_attempt_at__lte=now).update(
        state=Outbox.State.SENDING, claimed_at=now, claim_token=token, attempts=F("attempts") + 1
    )
    if not claimed:
        return None
    return Outbox.objects.select_related("message").get(pk=outbox_id)


def _notify(message: Message) -> None:
    entry = getattr(message, "entry", None)
    if entry is None:
        return
    events.conversation_entry_changed(
        conversation_uuid=message.conversation.uuid,
        entry_id=entry.pk,
        agent_id=message.conversation.assigned_agent_id,
    )


@transaction.atomic
def _record(row: Outbox, *, state: str, status: str, reason: str = "", provider_id=None, retry_in=None) -> bool:
    """Store an attempt's outcome, only while this attempt still holds the claim."""
    now = timezone.now()
    fields: dict = {"state": state, "last_error": reason[:500], "claim_token": None}
    if state == Outbox.State.SENT:
        fields["sent_at"] = now
    if retry_in is not None:
        fields["next_attempt_at"] = now + timedelta(seconds=retry_in)
    if state != Outbox.State.SENDING:
        fields["claimed_at"] = None
    updated = Outbox.objects.filter(pk=row.pk, state=Outbox.State.SENDING, claim_token=row.claim_token).update(**fields)
    if not updated:
        return False
    message = Message.objects.select_related("conversation").select_for_update().get(pk=row.message_id)
    message_fields = []
    if provider_id and not message.provider_message_id:
        message.provider_message_id = provider_id
        message_fields.append("provider_message_id")
    if _RANK.get(status, 0) > _RANK.get(message.delivery_status, 0) or status == message.delivery_status:
        message.delivery_status = status
        message.status_reason = reason[:255]
        message_fields += ["delivery_status", "status_reason"]
    if message_fields:
        message.save(update_fields=message_fields)
        _notify(message)
    return True


def outbox_deliver(*, outbox_id: int) -> str:
    """One delivery attempt; returns what happened (for logs and tests)."""
    row = outbox_claim(outbox_id=outbox_id)
    if row is None:
        return "not-claimed"
    transport = TRANSPORTS.get(row.medium)
    if transport is None:
        _record(row, state=Outbox.State.FAILED, status=Message.Status.FAILED, reason=_("No transport configured."))
        return "failed"
    try:
        result = transport(row.message, str(row.idempotency_key))
    except TransientSendError as exc:
        if row.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
            reason = _("Gave up after %(n)d attempts: %(error)s") % {"n": row.attempts, "error": exc}
            _record(row, state=Outbox.State.FAILED, status=Message.Status.FAILED, reason=reason)
            return "failed"
        delay = _backoff(row.attempts)
        reason = _("Retrying: %(error)s") % {"error": exc}
        if _record(row, state=Outbox.State.PENDING, status=Message.Status.QUEUED, reason=reason, retry_in=delay):
            _queue(row.pk, countdown=delay)
        return "retry"
    except PermanentSendError as exc:
        _record(row, state=Outbox.State.FAILED, status=Message.Status.FAILED, reason=str(exc))
        return "failed"
    except Exception as exc:
        # Not a named transient error: retrying blindly could send twice, so the agent decides.
        logger.exception("outbox %s: unexpected error from the %s transport", row.pk, row.medium)
        reason = _("Sending failed: %(error)s") % {"error": exc.__class__.__name__}
        _record(row, state=Outbox.State.FAILED, status=Message.Status.FAILED, reason=reason)
        return "failed"
    _record(
        row,
        state=Outbox.State.SENT,
        status=result.status,
        provider_id=result.provider_message_id,
    )
    return "sent"


def outbox_sweep() -> dict[str, int]:
    """Re-queue what a dead broker or worker left behind; returns counts for the log."""
    now = timezone.now()
    lease = timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    # A worker that held a claim longer than the lease died mid-send; the idempotency key makes the repeat safe.
    abandoned = list(
        Outbox.objects.filter(state=Outbox.State.SENDING, claimed_at__lt=now - lease).values_list("pk", flat=True)
    )
    reclaimed = 0
    for pk in abandoned:
        reclaimed += Outbox.objects.filter(pk=pk, state=Outbox.State.SENDING, claimed_at__lt=now - lease).update(
            state=Outbox.State.PENDING, claimed_at=None, claim_token=None, next_attempt_at=now
        )
    grace = timedelta(seconds=settings.OUTBOX_SWEEP_GRACE_SECONDS)
    due = list(
        Outbox.objects.filter(state=Outbox.State.PENDING, next_attempt_at__lte=now - grace)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[: settings.OUTBOX_SWEEP_BATCH]
    )
    for pk in set(due) | set(abandoned):
        _queue(pk)
    return {"reclaimed": reclaimed, "requeued": len(set(due) | set(abandoned))}


@transaction.atomic
def outbox_retry(*, message: Message, actor) -> Outbox:
    """The agent sends a failed message again: a fresh send with a new idempotency key."""
    message = Message.objects.select_for_update().select_related("conversation").get(pk=message.pk)
    row = Outbox.objects.select_for_update().filter(message=message).first()
    if row is None or message.delivery_status not in FAILED_STATUSES:
        raise ValidationError(_("Only a message that failed can be sent again."))
    check = TRANSPORT_CHECKS.get(message.medium)
    reason = check(message) if check is not None else ""
    if reason:
        raise ValidationError(reason)
    row.state = Outbox.State.PENDING
    row.attempts = 0
    row.next_attempt_at = timezone.now()
    row.claimed_at = None
    row.claim_token = None
    row.last_error = ""
    row.idempotency_key = uuid.uuid4()
    row.save()
    message.delivery_status = Message.Status.QUEUED
    message.status_reason = ""
    message.provider_message_id = None
    message.save(update_fields=["delivery_status", "status_reason", "provider_message_id"])
    _notify(message)
    transaction.on_commit(lambda: _queue(row.pk))
    return row


# Optional per-medium check before a retry (an opted-out number, a bounced address): returns a reason or "".
TRANSPORT_CHECKS: dict[str, Callable[[Message], str]] = {}


def retry_check_register(*, medium: str, check: Callable[[Message], str]) -> None:
    TRANSPORT_CHECKS[medium] = check


@transaction.atomic
def message_delivery_update(*, message: Message, status: str, reason: str = "") -> bool:
    """A provider reports a delivery status; it is kept only if it moves the message forward.

    Returns whether the message changed. A duplicate callback or one that
    arrives after a later status changes nothing.
    """
    if status not in _RANK:
        raise ValueError(f"unknown delivery status {status!r}")
    message = Message.objects.select_for_update().select_related("conversation").get(pk=message.pk)
    if message.delivery_status in FAILED_STATUSES or _RANK[status] <= _RANK.get(message.delivery_status, 0):
        return False
    message.delivery_status = status
    message.status_reason = reason[:255] if status in FAILED_STATUSES else ""
    message.save(update_fields=["delivery_status", "status_reason"])
    if status in FAILED_STATUSES:
        Outbox.objects.filter(message=message).exclude(state=Outbox.State.FAILED).update(
            state=Outbox.State.FAILED, last_error=reason[:500]
        )
    _notify(message)
    return True
