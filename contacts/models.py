from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
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
    # Free labels an agent puts on one contact ("VIP", "press"). A list in the row rather than a Tag table:
    # nothing manages tags across contacts yet, and merge, undo, export and erasure copy it like any field.
    tags = models.JSONField(_("tags"), default=list, blank=True)
    # A contact merged into another is kept, hidden, so the merge can be undone exactly.
    merged_into = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="merged_contacts",
        verbose_name=_("merged into"),
        # Indexed for merged contacts only (contact_merged_into_idx): a full index on a column that is NULL
        # for nearly every contact made SQLite read "merged_into_id IS NULL" through it, i.e. every contact,
        # and sort them, instead of walking contact_search_order_idx.
        db_index=False,
    )
    erased_at = models.DateTimeField(_("personal data erased"), null=True, blank=True)

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        permissions = [("merge_contact", _("Can merge contacts and undo merges"))]
        indexes = [
            models.Index(fields=["last_name", "first_name"], name="contact_name_idx"),
            # Contact search: newest activity first, keyset by (last_activity_at, id), live contacts only.
            models.Index(
                fields=["-last_activity_at", "-id"],
                condition=Q(merged_into__isnull=True, erased_at__isnull=True),
                name="contact_search_order_idx",
            ),
            models.Index(
                fields=["merged_into"], condition=Q(merged_into__isnull=False), name="contact_merged_into_idx"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(merged_into=F("id")), name="contact_not_merged_into_itself"),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        name = " ".join(part for part in (self.first_name, self.last_name) if part)
        return name or self.company or _("Unknown contact #%(id)s") % {"id": self.pk}

    @property
    def is_active(self) -> bool:
        """Neither merged into another contact nor erased: shown in search and open to changes."""
        return self.merged_into_id is None and self.erased_at is None

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


class ContactMerge(models.Model):
    """One confirmed merge of ``source`` into ``target``, with what it moved, so it can be undone.

    ``snapshot`` records the ids of every row moved from the source (contact
    points, conversations, chat sessions), the target's field values before and
    after the merge, and both contacts' timestamps, so undoing restores both
    contacts exactly.
    """

    target = models.ForeignKey(
        Contact, on_delete=models.PROTECT, related_name="merges_in", verbose_name=_("kept contact")
    )
    source = models.ForeignKey(
        Contact, on_delete=models.PROTECT, related_name="merges_out", verbose_name=_("merged contact")
    )
    performed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("merged by"),
    )
    performed_at = models.DateTimeField(_("merged"), default=timezone.now)
    snapshot = models.JSONField(_("snapshot"), default=dict, blank=True)
    undone_at = models.DateTimeField(_("undone"), null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("undone by"),
    )

    class Meta:
        verbose_name = _("contact merge")
        verbose_name_plural = _("contact merges")
        ordering = ["-performed_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(source=F("target")), name="contactmerge_source_not_target"),
            # A contact is merged away at most once at a time; undoing frees it for another merge.
            models.UniqueConstraint(
                fields=["source"], condition=Q(undone_at__isnull=True), name="contactmerge_one_active_per_source"
            ),
            models.CheckConstraint(
                condition=Q(undone_at__isnull=True) | Q(undone_at__gte=F("performed_at")),
                name="contactmerge_undone_after_performed",
            ),
        ]
        indexes = [models.Index(fields=["target", "-performed_at"], name="contactmerge_target_idx")]

    def __str__(self) -> str:
        return f"#{self.source_id} → #{self.target_id}"

    @property
    def is_undone(self) -> bool:
        return self.undone_at is not None
