from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.models import Contact
from conversations.models import Conversation, Interaction, Service


class ChatSession(models.Model):
    """One customer's chat in one browser: the key to their conversation.

    The customer holds a signed token naming ``public_id``; ``visitor_id`` is
    the browser's long-lived identity, stored as the contact's web-chat point.
    """

    public_id = models.UUIDField(_("public id"), default=uuid.uuid4, unique=True, editable=False)
    visitor_id = models.UUIDField(_("visitor"), db_index=True)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="+", verbose_name=_("service"))
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="+", verbose_name=_("contact"))
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="chat_sessions", verbose_name=_("conversation")
    )
    interaction = models.OneToOneField(
        Interaction, on_delete=models.CASCADE, related_name="chat_session", verbose_name=_("interaction")
    )
    name = models.CharField(_("name given"), max_length=150, blank=True)
    email = models.CharField(_("email given"), max_length=254, blank=True)
    phone = models.CharField(_("phone given"), max_length=40, blank=True)
    created_at = models.DateTimeField(_("started"), default=timezone.now)
    last_customer_activity_at = models.DateTimeField(_("customer last active"), default=timezone.now)
    inactivity_warned_at = models.DateTimeField(_("inactivity warning sent"), null=True, blank=True)

    class Meta:
        verbose_name = _("chat session")
        verbose_name_plural = _("chat sessions")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name or self.contact} · {self.created_at:%Y-%m-%d %H:%M}"
