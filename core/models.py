from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class WorkerHeartbeat(models.Model):
    """The last time each Celery worker ran its periodic heartbeat; shown to supervisors."""

    hostname = models.CharField(_("worker"), max_length=255, unique=True)
    seen_at = models.DateTimeField(_("last seen"))
    beats = models.PositiveBigIntegerField(_("heartbeats"), default=0)

    class Meta:
        verbose_name = _("worker heartbeat")
        verbose_name_plural = _("worker heartbeats")
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname


class AuditEntry(models.Model):
    """One recorded action on a sensitive object: who did what, to which row, when.

    Entries are written by services (``core.services.audit_record``) and never
    changed afterwards. ``actor_label`` keeps the user's name, so an entry still
    says who acted after that user is deleted. Summaries and details name rows by
    id and never copy a customer's personal data, so erasing a contact leaves the
    audit trail intact.
    """

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("actor"),
    )
    actor_label = models.CharField(_("actor name"), max_length=150, blank=True)
    action = models.SlugField(_("action"), max_length=64)
    object_type = models.CharField(_("object type"), max_length=100, help_text=_("App label and model name."))
    object_id = models.CharField(_("object id"), max_length=64)
    summary = models.CharField(_("summary"), max_length=255)
    details = models.JSONField(_("details"), default=dict, blank=True, encoder=DjangoJSONEncoder)
    at = models.DateTimeField(_("time"), default=timezone.now)

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["at"], name="audit_at_idx"),
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}#{self.object_id}"


class RelayedEvent(models.Model):
    """An event a Celery worker published while the channel layer is in-memory (the embedded default).

    The in-memory layer lives inside one process, so a worker's events would
    never reach the web process. The worker writes them here instead and the
    web process forwards them to its layer (``core.realtime.relay_events``).
    """

    group = models.CharField(max_length=200)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("relayed event")
        verbose_name_plural = _("relayed events")
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.group}: {self.payload.get('type', '')}"
