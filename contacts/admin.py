from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from contacts.models import Contact, ContactPoint
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
