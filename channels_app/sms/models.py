from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.normalize import normalize_phone
from conversations.models import Message, Service


class SmsAccount(models.Model):
    """A Twilio account (or subaccount) a supervisor configured in the admin.

    The auth token signs every webhook Twilio sends us and authenticates every
    message we send; the admin never shows it back in full.
    """

    name = models.CharField(_("name"), max_length=100)
    account_sid = models.CharField(_("account SID"), max_length=64, unique=True)
    auth_token = models.CharField(_("auth token"), max_length=128)
    # Empty means Twilio itself; tests and regional edges point the client elsewhere.
    api_base_url = models.URLField(
        _("API base URL"),
        blank=True,
        help_text=_("Leave empty for https://api.twilio.com; set for a regional edge or a test server."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("SMS account")
        verbose_name_plural = _("SMS accounts")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def auth_token_hint(self) -> str:
        return f"…{self.auth_token[-4:]}" if self.auth_token else ""


class SmsNumber(models.Model):
    """One of our phone numbers: customers write to it, and we send from it."""

    account = models.ForeignKey(SmsAccount, on_delete=models.CASCADE, related_name="numbers", verbose_name=_("account"))
    phone_number = models.CharField(_("phone number"), max_length=32, unique=True, help_text=_("E.164, e.g. +4930…"))
    service = models.ForeignKey(
        Service,
        on_delete=models.PROTECT,
        related_name="sms_numbers",
        verbose_name=_("service"),
        help_text=_("SMS to this number are queued for this service; its replies come from this number."),
    )

    class Meta:
        verbose_name = _("SMS number")
        verbose_name_plural = _("SMS numbers")
        ordering = ["phone_number"]

    def __str__(self) -> str:
        return self.phone_number

    def clean(self) -> None:
        if self.phone_number:
            try:
                self.phone_number = normalize_phone(self.phone_number)
            except ValidationError as exc:
                raise ValidationError({"phone_number": exc.messages}) from exc


class SmsOptOut(models.Model):
    """A customer's number that asked (STOP and the like) not to get SMS from us any more."""

    phone_number = models.CharField(_("phone number"), max_length=32, unique=True)
    keyword = models.CharField(_("keyword"), max_length=32, blank=True)
    created_at = models.DateTimeField(_("opted out"), default=timezone.now)

    class Meta:
        verbose_name = _("SMS opt-out")
        verbose_name_plural = _("SMS opt-outs")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.phone_number


class DevelopmentSms(models.Model):
    """An outbound SMS "sent" while no SMS account is configured: kept here instead of reaching anyone.

    Unique on the outbox's idempotency key, so a repeated attempt records it once, as a provider that
    honours the key would.
    """

    message = models.ForeignKey(Message, on_delete=models.SET_NULL, null=True, related_name="+")
    idempotency_key = models.CharField(_("idempotency key"), max_length=64, unique=True)
    sid = models.CharField(_("fake message SID"), max_length=64, unique=True)
    to = models.CharField(_("to"), max_length=32)
    body = models.TextField(_("text"))
    created_at = models.DateTimeField(_("recorded"), default=timezone.now)

    class Meta:
        verbose_name = _("development SMS (not sent)")
        verbose_name_plural = _("development SMS (not sent, no SMS account configured)")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.to}: {self.body[:40]}"


class SmsInbound(models.Model):
    """An inbound SMS exactly as Twilio's webhook delivered it, stored before we acknowledge it.

    Unique on Twilio's MessageSid, so a repeated or concurrent delivery of one SMS finds the first row (the
    constraint decides, not a look first). The ``sms_inbound_process`` task turns the row into a message
    after the acknowledgement; the sweep queues rows whose task was lost with a dead broker or worker.
    """

    class State(models.TextChoices):
        PENDING = "pending", _("Waiting to be processed")
        PROCESSING = "processing", _("Being processed")
        DONE = "done", _("Processed")
        IGNORED = "ignored", _("Ignored")
        FAILED = "failed", _("Failed")

    message_sid = models.CharField(_("message SID"), max_length=64, unique=True)
    account = models.ForeignKey(SmsAccount, on_delete=models.CASCADE, related_name="+", verbose_name=_("account"))
    # The sender's E.164 number (short codes as they came): one sender's SMS are processed in receipt order.
    sender = models.CharField(_("from"), max_length=64)
    to_number = models.CharField(_("to"), max_length=32)
    payload = models.JSONField(_("payload"))
    received_at = models.DateTimeField(_("received"), default=timezone.now)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    claimed_at = models.DateTimeField(_("claimed"), null=True, blank=True)
    # Only the worker holding the current claim may record the outcome.
    claim_token = models.UUIDField(_("claim"), null=True, blank=True, editable=False)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    processed_at = models.DateTimeField(_("processed"), null=True, blank=True)
    message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("message")
    )

    class Meta:
        verbose_name = _("inbound SMS (raw)")
        verbose_name_plural = _("inbound SMS (raw)")
        ordering = ["-id"]
        indexes = [
            # The head of each sender's queue: its oldest row not yet processed.
            models.Index(
                fields=["sender", "id"],
                condition=models.Q(state__in=["pending", "processing"]),
                name="sms_inbound_open_idx",
            ),
            models.Index(fields=["next_attempt_at"], condition=models.Q(state="pending"), name="sms_inbound_due_idx"),
            models.Index(fields=["claimed_at"], condition=models.Q(state="processing"), name="sms_inbound_claimed_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(state="processing", claimed_at__isnull=False, claim_token__isnull=False)
                | ~models.Q(state="processing"),
                name="sms_inbound_processing_is_claimed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.message_sid} from {self.sender} ({self.get_state_display()})"
