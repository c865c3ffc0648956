from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from contacts.models import Contact, ContactMerge, ContactPoint
from contacts.normalize import normalize_point
from conversations.models import Conversation


class ContactPointForm(forms.ModelForm):
    """Stores the normalised value, so an address typed in the admin still identifies its contact."""

    class Meta:
        model = ContactPoint
        fields = ["contact", "kind", "value", "label"]

    def clean(self):
        cleaned = super().clean()
        kind, value = cleaned.get("kind"), cleaned.get("value")
        if kind and value:
            try:
                cleaned["value"] = normalize_point(kind, value)
            except ValidationError as exc:
                self.add_error("value", exc)
        return cleaned


class ContactPointInline(admin.TabularInline):
    model = ContactPoint
    form = ContactPointForm
    extra = 0
    fields = ["kind", "value", "label", "created_at"]
    readonly_fields = ["created_at"]


class ConversationInline(admin.TabularInline):
    model = Conversation
    extra = 0
    fields = ["opened_at", "closed_at", "status", "service", "assigned_agent", "disposition"]
    readonly_fields = fields
    show_change_link = True
    ordering = ["-opened_at"]
    verbose_name_plural = _("activity history")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["display_name", "company", "last_activity_at", "created_at"]
    search_fields = ["first_name", "last_name", "company", "points__value"]
    list_filter = ["created_at", "last_activity_at"]
    date_hierarchy = "last_activity_at"
    inlines = [ContactPointInline, ConversationInline]
    # Set only by the merge and erasure services, which keep the snapshot and audit trail consistent.
    readonly_fields = ["merged_into", "erased_at"]

    def get_search_results(self, request, queryset, search_term):
        queryset, _may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return queryset, True

    @admin.display(description=_("name"), ordering="last_name")
    def display_name(self, obj: Contact) -> str:
        return obj.display_name


@admin.register(ContactPoint)
class ContactPointAdmin(admin.ModelAdmin):
    form = ContactPointForm
    list_display = ["value", "kind", "contact", "label", "created_at"]
    list_filter = ["kind"]
    search_fields = ["value", "contact__first_name", "contact__last_name"]
    list_select_related = ["contact"]
    raw_id_fields = ["contact"]


@admin.register(ContactMerge)
class ContactMergeAdmin(admin.ModelAdmin):
    """Read-only: merges are made and undone by agents through the contact services, which audit them."""

    list_display = ["performed_at", "source", "target", "performed_by", "undone_at", "undone_by"]
    list_filter = ["performed_at", "undone_at"]
    list_select_related = ["source", "target", "performed_by", "undone_by"]
    search_fields = ["source__id", "target__id"]
    readonly_fields = ["target", "source", "performed_by", "performed_at", "snapshot", "undone_at", "undone_by"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
