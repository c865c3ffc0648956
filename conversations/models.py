from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.models import Contact


class Medium(models.TextChoices):
    """The media an interaction can use."""

    CHAT = "chat", _("Chat")
    VOICE = "voice", _("Voice")
    VIDEO = "video", _("Video")
    SMS = "sms", _("SMS")
    EMAIL = "email", _("Email")


class Direction(models.TextChoices):
    INBOUND = "inbound", _("Inbound")
    OUTBOUND = "outbound", _("Outbound")


class Disposition(models.Model):
    """An outcome an agent records for a conversation, e.g. “Problem solved”."""

    name = models.CharField(_("name"), max_length=100)
    code = models.SlugField(_("code"), max_length=50, unique=True)
    is_active = models.BooleanField(_("active"), default=True)
    position = models.PositiveSmallIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("disposition")
        verbose_name_plural = _("dispositions")
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


PRECHAT_FIELDS = ("name", "email", "phone", "question")
PRECHAT_MODES = ("required", "optional", "off")


def default_prechat_fields() -> dict[str, str]:
    return {"name": "required", "email": "optional", "phone": "optional", "question": "required"}


def default_service_media() -> list[str]:
    return [Medium.CHAT, Medium.VOICE, Medium.SMS, Medium.EMAIL]


class Service(models.Model):
    """A queue / reason for contact; routes interactions to agents with that skill."""

    name = models.CharField(_("name"), max_length=100)
    slug = models.SlugField(_("slug"), max_length=50, unique=True)
    media = models.JSONField(_("media"), default=default_service_media, help_text=_("Media this service accepts."))
    # Capacity shares in percent of one agent: a call fills an agent, a chat a quarter.
    share_voice = models.PositiveSmallIntegerField(
        _("voice share %"), default=100, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    share_chat = models.PositiveSmallIntegerField(
        _("chat share %"), default=25, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    share_email = models.PositiveSmallIntegerField(
        _("email share %"), default=25, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    share_sms = models.PositiveSmallIntegerField(
        _("SMS share %"), default=25, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    chat_during_call = models.BooleanField(
        _("offer chats during a call"), default=False, help_text=_("Whether an agent on a call may be offered chats.")
    )
    offer_timeout_seconds = models.PositiveSmallIntegerField(
        _("offer timeout (s)"), default=30, validators=[MinValueValidator(5), MaxValueValidator(600)]
    )
    wrapup_seconds = models.PositiveSmallIntegerField(
        _("wrap-up time (s)"), default=60, help_text=_("After Call Work after an interaction ends; 0 for none.")
    )
    dispositions = models.ManyToManyField(
        Disposition, blank=True, related_name="services", verbose_name=_("dispositions")
    )
    is_active = models.BooleanField(_("active"), default=True)
    # Web chat: which pre-chat fields to ask ("required", "optional" or "off").
    prechat_fields = models.JSONField(
        _("pre-chat form fields"),
        default=default_prechat_fields,
        blank=True,
        help_text=_("For name, email, phone and question: “required”, “optional” or “off”."),
    )
    chat_inactivity_seconds = models.PositiveIntegerField(
        _("chat inactivity timeout (s)"),
        default=600,
        validators=[MinValueValidator(60)],
        help_text=_("A chat whose customer stays silent this long is ended; a warning comes a minute before."),
    )
    chat_allowed_origins = models.JSONField(
        _("websites that may embed the chat"),
        default=list,
        blank=True,
        help_text=_("Origins such as “https://www.example.com” allowed to show the chat widget in a frame."),
    )
    # Supervision (supervisor app): the service level is the share of inbound interactions answered within
    # this many seconds; business hours say when the service is staffed ({"mon": ["08:00-18:00"], ...}).
    service_level_seconds = models.PositiveIntegerField(
        _("service level target (s)"),
        default=20,
        validators=[MinValueValidator(1)],
        help_text=_("An interaction answered within this many seconds counts towards the service level."),
    )
    service_level_percent = models.PositiveSmallIntegerField(
        _("service level goal %"),
        default=80,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text=_("Share of interactions to answer within the target; the queues board marks a day below it."),
    )
    business_hours = models.JSONField(
        _("business hours"),
        default=dict,
        blank=True,
        help_text=_("Per weekday (mon … sun) a list of “HH:MM-HH:MM”, server time zone; empty: always open."),
    )

    class Meta:
        verbose_name = _("service")
        verbose_name_plural = _("services")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(share_voice__gte=1, share_voice__lte=100)
                & Q(share_chat__gte=1, share_chat__lte=100)
                & Q(share_email__gte=1, share_email__lte=100)
                & Q(share_sms__gte=1, share_sms__lte=100),
                name="service_shares_1_to_100",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def share_for(self, medium: str) -> int:
        """Capacity share in percent that one interaction of ``medium`` takes."""
        if medium in (Medium.VOICE, Medium.VIDEO):
            return self.share_voice
        return {Medium.CHAT: self.share_chat, Medium.EMAIL: self.share_email, Medium.SMS: self.share_sms}[medium]


class ConversationQuerySet(models.QuerySet):
    def open(self) -> ConversationQuerySet:
        return self.filter(status=Conversation.Status.OPEN)

    def closed(self) -> ConversationQuerySet:
        return self.filter(status=Conversation.Status.CLOSED)

    def assigned_to(self, agent) -> ConversationQuerySet:
        return self.filter(assigned_agent=agent)


class Conversation(models.Model):
    """One session between agent(s) and one contact; holds interactions."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        CLOSED = "closed", _("Closed")

    uuid = models.UUIDField(_("public id"), default=uuid.uuid4, unique=True, editable=False)
    contact = models.ForeignKey(
        Contact, on_delete=models.PROTECT, related_name="conversations", verbose_name=_("contact")
    )
    service = models.ForeignKey(
        Service,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="conversations",
        verbose_name=_("service"),
    )
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.OPEN)
    assigned_agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_conversations",
        verbose_name=_("assigned agent"),
    )
    opened_at = models.DateTimeField(_("opened"), default=timezone.now)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    disposition = models.ForeignKey(
        Disposition, on_delete=models.PROTECT, null=True, blank=True, verbose_name=_("disposition")
    )
    notes = models.TextField(_("wrap-up notes"), blank=True)
    # Oldest customer message the agent has not answered yet (the red timer).
    customer_waiting_since = models.DateTimeField(_("customer waiting since"), null=True, blank=True)
    # Timeline entries up to these ids have been shown on each side's screen.
    agent_read_upto = models.PositiveBigIntegerField(_("read by agent up to"), default=0)
    customer_read_upto = models.PositiveBigIntegerField(_("read by customer up to"), default=0)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        ordering = ["-opened_at", "-id"]
        constraints = [
            # The open-or-join rule: a contact has at most one open conversation,
            # so a new call/SMS/email joins it instead of starting another.
            models.UniqueConstraint(
                fields=["contact"], condition=Q(status="open"), name="conversation_one_open_per_contact"
            ),
            models.CheckConstraint(
                condition=(Q(status="open", closed_at__isnull=True))
                | (Q(status="closed", closed_at__isnull=False) & Q(closed_at__gte=F("opened_at"))),
                name="conversation_closed_at_matches_status",
            ),
        ]
        indexes = [
            # The Active Conversations List of one agent.
            models.Index(
                fields=["assigned_agent", "opened_at"], condition=Q(status="open"), name="conversation_active_idx"
            ),
            # A contact's activity history, newest first, keyset by (opened_at, id).
            models.Index(fields=["contact", "-opened_at", "-id"], name="conversation_history_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.contact} · {self.opened_at:%Y-%m-%d %H:%M}"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN


class InteractionQuerySet(models.QuerySet):
    def live(self) -> InteractionQuerySet:
        return self.filter(state__in=Interaction.LIVE_STATES)


class Interaction(models.Model):
    """One medium inside a conversation, with its own state, direction and times."""

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        OFFERED = "offered", _("Offered")
        ACTIVE = "active", _("Active")
        ON_HOLD = "on_hold", _("On hold")
        ENDED = "ended", _("Ended")
        MISSED = "missed", _("Missed")
        ABANDONED = "abandoned", _("Abandoned")

    LIVE_STATES = (State.QUEUED, State.OFFERED, State.ACTIVE, State.ON_HOLD)
    FINAL_STATES = (State.ENDED, State.MISSED, State.ABANDONED)

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="interactions", verbose_name=_("conversation")
    )
    medium = models.CharField(_("medium"), max_length=10, choices=Medium.choices)
    direction = models.CharField(_("direction"), max_length=10, choices=Direction.choices)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.QUEUED)
    service = models.ForeignKey(
        Service, on_delete=models.PROTECT, null=True, blank=True, related_name="interactions", verbose_name=_("service")
    )
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="interactions",
        verbose_name=_("agent"),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    answered_at = models.DateTimeField(_("answered"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    end_reason = models.CharField(_("end reason"), max_length=50, blank=True)
    # Medium-specific facts: call quality figures, the email thread id, ...
    details = models.JSONField(_("details"), default=dict, blank=True)

    objects = InteractionQuerySet.as_manager()

    class Meta:
        verbose_name = _("interaction")
        verbose_name_plural = _("interactions")
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(answered_at__isnull=True) | Q(answered_at__gte=F("created_at")),
                name="interaction_answered_after_created",
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=F("created_at")),
                name="interaction_ended_after_created",
            ),
            models.CheckConstraint(
                condition=Q(state__in=["ended", "missed", "abandoned"], ended_at__isnull=False)
                | Q(state__in=["queued", "offered", "active", "on_hold"], ended_at__isnull=True),
                name="interaction_ended_at_matches_state",
            ),
        ]
        indexes = [
            models.Index(fields=["conversation", "created_at", "id"], name="interaction_conv_idx"),
            # Live work of one agent: capacity checks and logout guards.
            models.Index(
                fields=["agent", "medium"],
                condition=Q(state__in=["offered", "active", "on_hold"]),
                name="interaction_agent_live_idx",
            ),
            models.Index(fields=["service", "created_at"], condition=Q(state="queued"), name="interaction_queue_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_medium_display()} #{self.pk} ({self.get_state_display()})"

    @property
    def is_live(self) -> bool:
        return self.state in self.LIVE_STATES

    @property
    def duration(self):
        if self.answered_at and self.ended_at:
            return self.ended_at - self.answered_at
        return None


class Message(models.Model):
    """One chat/SMS/email item inside an interaction."""

    class Author(models.TextChoices):
        CUSTOMER = "customer", _("Customer")
        AGENT = "agent", _("Agent")
        SYSTEM = "system", _("System")

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")
        PENDING = "pending", _("Pending")
        QUEUED = "queued", _("Queued")
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        READ = "read", _("Read")
        FAILED = "failed", _("Failed")
        UNDELIVERED = "undelivered", _("Undelivered")

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", verbose_name=_("conversation")
    )
    interaction = models.ForeignKey(
        Interaction, on_delete=models.CASCADE, related_name="messages", verbose_name=_("interaction")
    )
    # Copied from the interaction so provider ids can be unique per channel.
    medium = models.CharField(_("medium"), max_length=10, choices=Medium.choices)
    direction = models.CharField(_("direction"), max_length=10, choices=Direction.choices)
    author_kind = models.CharField(_("author"), max_length=10, choices=Author.choices)
    author_agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("agent"),
    )
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    body = models.TextField(_("body"), blank=True)
    delivery_status = models.CharField(_("delivery status"), max_length=12, choices=Status.choices)
    status_reason = models.CharField(_("status reason"), max_length=255, blank=True)
    provider_message_id = models.CharField(_("provider message id"), max_length=255, null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["created_at", "id"]
        constraints = [
            # Webhooks de-duplicate on this constraint, not on check-then-insert.
            models.UniqueConstraint(
                fields=["medium", "provider_message_id"],
                condition=Q(provider_message_id__isnull=False),
                name="message_unique_provider_id",
            ),
        ]
        indexes = [models.Index(fields=["conversation", "created_at", "id"], name="message_timeline_idx")]

    def __str__(self) -> str:
        return f"{self.get_medium_display()} {self.get_direction_display()} #{self.pk}"


def attachment_path(instance: Attachment, filename: str) -> str:
    return f"attachments/{instance.message.conversation.uuid}/{uuid.uuid4().hex}/{filename}"


class Attachment(models.Model):
    """A file carried by a message; served only to the conversation's participants."""

    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="attachments", verbose_name=_("message")
    )
    file = models.FileField(_("file"), upload_to=attachment_path, max_length=500)
    filename = models.CharField(_("file name"), max_length=255)
    content_type = models.CharField(_("content type"), max_length=100)
    size = models.PositiveBigIntegerField(_("size (bytes)"))

    class Meta:
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")

    def __str__(self) -> str:
        return self.filename


class Note(models.Model):
    """An internal note on a conversation; the customer never sees it."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="internal_notes", verbose_name=_("conversation")
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("author")
    )
    body = models.TextField(_("body"))
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("note")
        verbose_name_plural = _("notes")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.body[:50]


class TimelineEntry(models.Model):
    """One item of a conversation's timeline, in time order.

    Messages, notes, call events and state changes each get an entry, so the
    timeline is one keyset-paginated query whatever the mix of media.
    """

    class Kind(models.TextChoices):
        OPENED = "opened", _("Conversation opened")
        JOINED = "joined", _("Contact got in touch again")
        INTERACTION_STARTED = "interaction_started", _("Interaction started")
        INTERACTION_ANSWERED = "interaction_answered", _("Interaction answered")
        INTERACTION_ENDED = "interaction_ended", _("Interaction ended")
        MESSAGE = "message", _("Message")
        NOTE = "note", _("Note")
        ASSIGNED = "assigned", _("Assigned")
        TRANSFERRED = "transferred", _("Transferred")
        CLOSED = "closed", _("Conversation closed")
        # A medium's own event (a call put on hold, an SMS opt-out, ...); ``data["medium"]`` and
        # ``data["event"]`` name it and the medium's template ``<medium>/timeline_event.html`` shows it.
        CHANNEL_EVENT = "channel_event", _("Channel event")

    # No index of its own: timeline_idx and timeline_conv_id_idx start with it. With a third, PostgreSQL
    # counted the ACL's unread entries through the plain one (it expects ~50 entries per conversation)
    # and read a long conversation whole instead of only the entries after the read marker.
    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        related_name="timeline",
        verbose_name=_("conversation"),
        db_index=False,
    )
    kind = models.CharField(_("kind"), max_length=24, choices=Kind.choices)
    interaction = models.ForeignKey(Interaction, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    message = models.OneToOneField(Message, on_delete=models.CASCADE, null=True, blank=True, related_name="entry")
    note = models.OneToOneField(Note, on_delete=models.CASCADE, null=True, blank=True, related_name="entry")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(_("time"), default=timezone.now)
    # A customer's chat message: what the Active Conversations List counts as unread after the agent's read
    # marker. Kept on the entry so that count reads only the conversation's entries after the marker; joined
    # to the messages, it scanned every message for each unread entry under a plan made for small tables.
    unread_for_agent = models.BooleanField(_("counts as unread for the agent"), default=False, editable=False)

    class Meta:
        verbose_name = _("timeline entry")
        verbose_name_plural = _("timeline entries")
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "created_at", "id"], name="timeline_idx"),
            # Keyset by id within a conversation: the history record's pages and the ACL's unread count
            # (entries after the read marker) read only the rows they need instead of the whole conversation.
            models.Index(fields=["conversation", "id"], name="timeline_conv_id_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="message", message__isnull=False) | ~Q(kind="message"),
                name="timeline_message_entry_has_message",
            ),
            models.CheckConstraint(
                condition=Q(kind="note", note__isnull=False) | ~Q(kind="note"), name="timeline_note_entry_has_note"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} @ {self.created_at:%H:%M:%S}"


class Offer(models.Model):
    """An interaction offered to one agent, who accepts or rejects it before it expires."""

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        ACCEPTED = "accepted", _("Accepted")
        REJECTED = "rejected", _("Rejected")
        EXPIRED = "expired", _("Missed")
        CANCELLED = "cancelled", _("Cancelled")

    interaction = models.ForeignKey(
        Interaction, on_delete=models.CASCADE, related_name="offers", verbose_name=_("interaction")
    )
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="offers", verbose_name=_("agent")
    )
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.PENDING)
    created_at = models.DateTimeField(_("offered"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"))
    responded_at = models.DateTimeField(_("answered"), null=True, blank=True)
    # A transfer names who handed the interaction over, and why.
    transferred_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("transferred by"),
    )
    transfer_note = models.TextField(_("transfer note"), blank=True)

    class Meta:
        verbose_name = _("offer")
        verbose_name_plural = _("offers")
        ordering = ["-created_at", "-id"]
        constraints = [
            # Never offered to two agents at once.
            models.UniqueConstraint(
                fields=["interaction"], condition=Q(state="pending"), name="offer_one_pending_per_interaction"
            ),
            models.CheckConstraint(condition=Q(expires_at__gt=F("created_at")), name="offer_expires_after_created"),
        ]
        indexes = [
            models.Index(fields=["agent", "state"], name="offer_agent_state_idx"),
            models.Index(fields=["expires_at"], condition=Q(state="pending"), name="offer_pending_expiry_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.interaction} → {self.agent} ({self.get_state_display()})"


class CannedResponseQuerySet(models.QuerySet):
    def available_to(self, user) -> CannedResponseQuerySet:
        """Shared responses plus the user's own."""
        return self.filter(Q(owner__isnull=True) | Q(owner=user))


class CannedResponse(models.Model):
    """A prepared reply; ``{first_name}`` and ``{last_name}`` are filled from the contact."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="canned_responses",
        verbose_name=_("owner"),
        help_text=_("Empty for a response shared with every agent."),
    )
    shortcut = models.SlugField(_("shortcut"), max_length=40, help_text=_("Typed after “/” in the composer."))
    title = models.CharField(_("title"), max_length=100)
    body = models.TextField(_("text"), help_text=_("Placeholders: {first_name}, {last_name}."))

    objects = CannedResponseQuerySet.as_manager()

    class Meta:
        verbose_name = _("canned response")
        verbose_name_plural = _("canned responses")
        ordering = ["shortcut"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "shortcut"], name="canned_unique_owner_shortcut"),
            models.UniqueConstraint(
                fields=["shortcut"], condition=Q(owner__isnull=True), name="canned_unique_shared_shortcut"
            ),
        ]

    def __str__(self) -> str:
        return f"/{self.shortcut}"


class Outbox(models.Model):
    """One outbound SMS or email waiting for, or handed to, its provider.

    Written in the same transaction as its message, so a message the agent
    saw accepted is never lost: a task delivers it after commit, and a
    periodic sweep re-queues rows a dead broker or worker left behind
    (``conversations.outbox``).
    """

    class State(models.TextChoices):
        PENDING = "pending", _("Waiting to be sent")
        SENDING = "sending", _("Being sent")
        SENT = "sent", _("Handed to the provider")
        FAILED = "failed", _("Failed")

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="outbox", verbose_name=_("message"))
    medium = models.CharField(_("medium"), max_length=10, choices=Medium.choices)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    claimed_at = models.DateTimeField(_("claimed"), null=True, blank=True)
    # Only the worker holding the current claim may record the result.
    claim_token = models.UUIDField(_("claim"), null=True, blank=True, editable=False)
    # Sent with every attempt of one send, so a provider that honours it sends once.
    idempotency_key = models.UUIDField(_("idempotency key"), default=uuid.uuid4, unique=True, editable=False)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)

    class Meta:
        verbose_name = _("outbox entry")
        verbose_name_plural = _("outbox")
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(state="pending"), name="outbox_due_idx"),
            models.Index(fields=["claimed_at"], condition=Q(state="sending"), name="outbox_claimed_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state="sending", claimed_at__isnull=False, claim_token__isnull=False) | ~Q(state="sending"),
                name="outbox_sending_is_claimed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_medium_display()} #{self.message_id} ({self.get_state_display()})"
