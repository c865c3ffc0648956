from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.models import Contact
from conversations.models import Conversation, Interaction, Service


class CallSession(models.Model):
    """A call-first customer's key to their call: the widget's “Call us” without a chat.

    The customer holds a signed token naming ``public_id`` (as a chat customer
    holds their chat session's); the voice socket accepts either.
    """

    public_id = models.UUIDField(_("public id"), default=uuid.uuid4, unique=True, editable=False)
    visitor_id = models.UUIDField(_("visitor"), db_index=True)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="+", verbose_name=_("service"))
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="+", verbose_name=_("contact"))
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="call_sessions", verbose_name=_("conversation")
    )
    interaction = models.OneToOneField(
        Interaction, on_delete=models.CASCADE, related_name="call_session", verbose_name=_("call")
    )
    created_at = models.DateTimeField(_("started"), default=timezone.now)

    class Meta:
        verbose_name = _("call-first session")
        verbose_name_plural = _("call-first sessions")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.contact} · {self.created_at:%Y-%m-%d %H:%M}"
