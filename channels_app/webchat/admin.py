from __future__ import annotations

from django.contrib import admin

from channels_app.webchat.models import ChatSession


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    """Read-only: sessions are written by the chat services only."""

    list_display = ["__str__", "service", "contact", "conversation", "created_at", "last_customer_activity_at"]
    list_filter = ["service", "created_at"]
    list_select_related = ["service", "contact", "conversation"]
    search_fields = ["name", "email", "phone", "public_id", "visitor_id", "conversation__uuid"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "public_id",
        "visitor_id",
        "service",
        "contact",
        "conversation",
        "interaction",
        "name",
        "email",
        "phone",
        "created_at",
        "last_customer_activity_at",
        "inactivity_warned_at",
    ]
    fields = readonly_fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
