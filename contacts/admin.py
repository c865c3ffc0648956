from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from contacts.models import Contact, ContactPoint
from conversations.models import Conversation


class ContactPointInline(admin.TabularInline):
    model = ContactPoint
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
    list_display = ["value", "kind", "contact", "label", "created_at"]
    list_filter = ["kind"]
    search_fields = ["value", "contact__first_name", "contact__last_name"]
    list_select_related = ["contact"]
    raw_id_fields = ["contact"]
