"""The email channel's own tables: mailboxes polled over IMAP, thread facts per message, signatures.

Core tables stay medium-neutral; everything only email needs (RFC Message-IDs,
the conversation token in subjects, IMAP bookkeeping) lives here.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.models import Conversation, Interaction, Message, Service

# Unambiguous characters only: customers retype tokens from printed mail.
TOKEN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # noqa: S105 (not a password)
TOKEN_LENGTH = 8


def new_thread_token() -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


class Mailbox(models.Model):
    """An IMAP mailbox a supervisor configured; polled by ``imap_poll_all``."""

    class Security(models.TextChoices):
        TLS = "tls", _("TLS (IMAPS, usually port 993)")
        STARTTLS = "starttls", _("STARTTLS (usually port 143)")

    class AfterProcessing(models.TextChoices):
        FLAG = "flag", _("Mark as read")
        MOVE = "move", _("Move to another folder")

    name = models.CharField(_("name"), max_length=100)
    address = models.EmailField(
        _("address"), help_text=_("The address customers write to; outbound mail is sent from it.")
    )
    service = models.ForeignKey(
        Service,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("service"),
        help_text=_("New conversations from this mailbox are queued for this service."),
    )
    host = models.CharField(_("IMAP host"), max_length=255)
    port = models.PositiveIntegerField(_("IMAP port"), default=993)
    security = models.CharField(_("security"), max_length=10, choices=Security.choices, default=Security.TLS)
    verify_certificate = models.BooleanField(
        _("verify the server certificate"), default=True, help_text=_("Turn off only for a test server.")
    )
    username = models.CharField(_("user name"), max_length=255)
    # Stored as given: IMAP needs the clear password. The admin never shows it back.
    password = models.CharField(_("password"), max_length=255)
    folder = models.CharField(_("folder"), max_length=255, default="INBOX")
    after_processing = models.CharField(
        _("after processing"), max_length=10, choices=AfterProcessing.choices, default=AfterProcessing.FLAG
    )
    move_to = models.CharField(_("move to folder"), max_length=255, blank=True, default="Parley")
    is_active = models.BooleanField(_("active"), default=True)
    last_polled_at = models.DateTimeField(_("last polled"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)

    class Meta:
        verbose_name = _("mailbox")
        verbose_name_plural = _("mailboxes")
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} <{self.address}>"

    @property
    def password_hint(self) -> str:
        """Enough for a supervisor to recognise the password, never the password."""
        if not self.password:
            return ""
        return "•" * 6 + (self.password[-2:] if len(self.password) >= 8 else "")


class EmailThread(models.Model):
    """The short token that names a conversation in mail subjects (``[#K7Q2M9XA]``)."""

    conversation = models.OneToOneField(
        Conversation, on_delete=models.CASCADE, related_name="email_thread", verbose_name=_("conversation")
    )
    token = models.CharField(_("token"), max_length=16, unique=True, default=new_thread_token)

    class Meta:
        verbose_name = _("email thread")
        verbose_name_plural = _("email threads")

    def __str__(self) -> str:
        return self.token


class EmailMeta(models.Model):
    """What an email message carries beyond the core Message: its RFC headers and sanitised HTML."""

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="email", verbose_name=_("message"))
    # Angle brackets included, as in the header. Replies are threaded by it, duplicates refused by it.
    rfc_message_id = models.CharField(_("Message-ID"), max_length=255, unique=True)
    in_reply_to = models.CharField(_("In-Reply-To"), max_length=255, blank=True)
    references = models.TextField(_("References"), blank=True)
    from_address = models.CharField(_("from"), max_length=255, blank=True)
    to_addresses = models.JSONField(_("to"), default=list, blank=True)
    cc_addresses = models.JSONField(_("cc"), default=list, blank=True)
    # Already sanitised (nh3) when stored; rendered only inside the sandboxed frame.
    html = models.TextField(_("HTML body (sanitised)"), blank=True)
    remote_images = models.PositiveIntegerField(_("remote images"), default=0)
    quoted_text = models.TextField(_("quoted history"), blank=True)
    raw_headers = models.TextField(_("headers"), blank=True)
    mailbox = models.ForeignKey(
        Mailbox, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("mailbox")
    )

    class Meta:
        verbose_name = _("email details")
        verbose_name_plural = _("email details")

    def __str__(self) -> str:
        return self.rfc_message_id


class ProcessedMail(models.Model):
    """One IMAP message Parley has handled: polling twice never records it twice."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="processed", verbose_name=_("mailbox"))
    uidvalidity = models.PositiveBigIntegerField(_("UIDVALIDITY"))
    uid = models.PositiveBigIntegerField(_("UID"))
    rfc_message_id = models.CharField(_("Message-ID"), max_length=255, blank=True, db_index=True)
    outcome = models.CharField(_("outcome"), max_length=20)
    processed_at = models.DateTimeField(_("processed"), default=timezone.now)

    class Meta:
        verbose_name = _("processed mail")
        verbose_name_plural = _("processed mail")
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "uidvalidity", "uid"], name="email_processed_unique_uid"),
        ]

    def __str__(self) -> str:
        return f"{self.mailbox_id}:{self.uidvalidity}:{self.uid}"


class EmailSignature(models.Model):
    """An agent's signature, appended to the mail they write."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_signature", verbose_name=_("agent")
    )
    body = models.TextField(_("signature"), blank=True, max_length=2000)

    class Meta:
        verbose_name = _("email signature")
        verbose_name_plural = _("email signatures")

    def __str__(self) -> str:
        return str(self.user)


class ParkedEmail(models.Model):
    """An email an agent postponed into their personal queue: routing leaves it alone until they take it."""

    interaction = models.OneToOneField(
        Interaction, on_delete=models.CASCADE, related_name="parked_email", verbose_name=_("interaction")
    )
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="parked_emails", verbose_name=_("agent")
    )
    # The interaction's service while parked is empty (so routing skips it); this restores it.
    service = models.ForeignKey(
        Service, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("service")
    )
    parked_at = models.DateTimeField(_("postponed"), default=timezone.now)

    class Meta:
        verbose_name = _("postponed email")
        verbose_name_plural = _("postponed emails")
        ordering = ["parked_at", "id"]

    def __str__(self) -> str:
        return f"{self.interaction_id} → {self.agent_id}"


class TranscriptRequest(models.Model):
    """A customer asked for their chat by email; one per chat, so the form cannot be used to spam."""

    chat_session = models.OneToOneField(
        "channel_webchat.ChatSession", on_delete=models.CASCADE, related_name="+", verbose_name=_("chat")
    )
    address = models.EmailField(_("address"))
    rfc_message_id = models.CharField(_("Message-ID"), max_length=255, unique=True)
    requested_at = models.DateTimeField(_("requested"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)

    class Meta:
        verbose_name = _("transcript request")
        verbose_name_plural = _("transcript requests")

    def __str__(self) -> str:
        return self.address
