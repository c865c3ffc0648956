from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Contact(models.Model):
    """A customer, person or organisation, with any number of contact points."""

    first_name = models.CharField(_("first name"), max_length=150, blank=True)
    last_name = models.CharField(_("last name"), max_length=150, blank=True)
    company = models.CharField(_("company"), max_length=200, blank=True)
    notes = models.TextField(_("notes"), blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    # Newest activity first is the order of contact search results.
    last_activity_at = models.DateTimeField(_("last activity"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        indexes = [models.Index(fields=["last_name", "first_name"], name="contact_name_idx")]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        name = " ".join(part for part in (self.first_name, self.last_name) if part)
        return name or self.company or _("Unknown contact #%(id)s") % {"id": self.pk}

    @property
    def initials(self) -> str:
        letters = [part[0] for part in (self.first_name, self.last_name) if part]
        return ("".join(letters) or (self.company[:1] if self.company else "?")).upper()


class ContactPoint(models.Model):
    """One address of a contact, normalised; unique per kind and value."""

    class Kind(models.TextChoices):
        PHONE = "phone", _("Phone")
        EMAIL = "email", _("Email")
        WEBCHAT = "webchat", _("Web chat visitor")
        MESSENGER = "messenger", _("Messenger")

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="points", verbose_name=_("contact"))
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    value = models.CharField(
        _("value"), max_length=254, help_text=_("Normalised: E.164 for phones, lower case for email.")
    )
    label = models.CharField(_("label"), max_length=50, blank=True, help_text=_("For example “mobile” or “work”."))
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("contact point")
        verbose_name_plural = _("contact points")
        constraints = [
            models.UniqueConstraint(fields=["kind", "value"], name="contactpoint_unique_kind_value"),
            models.CheckConstraint(condition=~Q(value=""), name="contactpoint_value_not_empty"),
            models.CheckConstraint(
                condition=Q(kind__in=["phone", "email", "webchat", "messenger"]), name="contactpoint_kind_valid"
            ),
        ]
        ordering = ["kind", "value"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.value}"
