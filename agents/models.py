from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.models import Service


class NotReadyReason(models.Model):
    """Why an agent is Not Ready (“Break”, “Training”); system reasons are set by Parley itself."""

    MISSED = "missed"

    name = models.CharField(_("name"), max_length=100)
    code = models.SlugField(_("code"), max_length=50, unique=True)
    is_system = models.BooleanField(
        _("set by the system"), default=False, help_text=_("Agents cannot pick a system reason themselves.")
    )
    is_active = models.BooleanField(_("active"), default=True)
    position = models.PositiveSmallIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("Not Ready reason")
        verbose_name_plural = _("Not Ready reasons")
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        """The name to show; system reasons are named by Parley, in the reader's language."""
        return str(SYSTEM_REASON_LABELS.get(self.code, self.name)) if self.is_system else self.name

    @classmethod
    def missed(cls) -> NotReadyReason:
        """The system reason for an unanswered offer (re-created if someone deleted it)."""
        reason, _created = cls.objects.get_or_create(
            code=cls.MISSED, defaults={"name": "Missed offer", "is_system": True, "is_active": True, "position": 999}
        )
        return reason


SYSTEM_REASON_LABELS = {NotReadyReason.MISSED: _("Missed offer")}


class AgentState(models.TextChoices):
    READY = "ready", _("Ready")
    NOT_READY = "not_ready", _("Not Ready")
    BUSY = "busy", _("Busy")
    AFTER_CALL_WORK = "acw", _("After Call Work")
    LOGGED_OUT = "logged_out", _("Logged out")


class AgentProfile(models.Model):
    """The agent side of a user: state, capacity and skills (services)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent", verbose_name=_("user")
    )
    state = models.CharField(_("state"), max_length=12, choices=AgentState.choices, default=AgentState.LOGGED_OUT)
    not_ready_reason = models.ForeignKey(
        NotReadyReason, on_delete=models.PROTECT, null=True, blank=True, verbose_name=_("Not Ready reason")
    )
    state_since = models.DateTimeField(_("in state since"), default=timezone.now)
    # Routing offers work to the Ready agent idle longest.
    idle_since = models.DateTimeField(_("idle since"), null=True, blank=True)
    capacity = models.PositiveSmallIntegerField(
        _("capacity %"),
        default=100,
        validators=[MinValueValidator(0), MaxValueValidator(400)],
        help_text=_("Work an agent can hold at once; a call takes 100 %, a chat 25 % by default."),
    )
    services = models.ManyToManyField(Service, blank=True, related_name="agents", verbose_name=_("services"))
    # When After Call Work ends by itself.
    acw_until = models.DateTimeField(_("wrap-up ends"), null=True, blank=True)

    class Meta:
        verbose_name = _("agent")
        verbose_name_plural = _("agents")
        constraints = [
            models.CheckConstraint(
                condition=Q(state="not_ready") | Q(not_ready_reason__isnull=True),
                name="agent_reason_only_when_not_ready",
            ),
        ]
        indexes = [models.Index(fields=["state", "idle_since"], name="agent_routing_idx")]

    def __str__(self) -> str:
        return self.user.get_full_name() or self.user.get_username()


class AgentStateLog(models.Model):
    """One stretch of time an agent spent in a state; reports are built from these."""

    agent = models.ForeignKey(AgentProfile, on_delete=models.CASCADE, related_name="state_log", verbose_name=_("agent"))
    state = models.CharField(_("state"), max_length=12, choices=AgentState.choices)
    not_ready_reason = models.ForeignKey(
        NotReadyReason, on_delete=models.PROTECT, null=True, blank=True, verbose_name=_("Not Ready reason")
    )
    started_at = models.DateTimeField(_("started"))
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("changed by"),
    )

    class Meta:
        verbose_name = _("agent state record")
        verbose_name_plural = _("agent state records")
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent"], condition=Q(ended_at__isnull=True), name="agent_state_log_one_open"
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=F("started_at")),
                name="agent_state_log_ends_after_start",
            ),
        ]
        indexes = [models.Index(fields=["agent", "-started_at"], name="agent_state_log_idx")]

    def __str__(self) -> str:
        return f"{self.agent} {self.get_state_display()} {self.started_at:%Y-%m-%d %H:%M}"
