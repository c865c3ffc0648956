from __future__ import annotations

from django.contrib import admin

from channels_app.voice.models import CallSession


@admin.register(CallSession)
class CallSessionAdmin(admin.ModelAdmin):
    """Call-first sessions, read-only: the calls themselves are interactions."""

    list_display = ("contact", "service", "interaction", "created_at")
    list_select_related = ("contact", "service", "interaction")
    readonly_fields = ("public_id", "visitor_id", "service", "contact", "conversation", "interaction", "created_at")

    def has_add_permission(self, request) -> bool:
        return False
