from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from core.models import AuditEntry, WorkerHeartbeat

admin.site.site_header = _("Parley administration")
admin.site.site_title = _("Parley")
admin.site.index_title = _("Supervisor tools")


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["hostname", "seen_at", "beats"]
    readonly_fields = ["hostname", "seen_at", "beats"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: the audit trail is written by services and never edited."""

    list_display = ["at", "actor_label", "action", "object_type", "object_id", "summary"]
    list_filter = ["action", "object_type", "at"]
    search_fields = ["summary", "action", "object_id", "actor_label"]
    date_hierarchy = "at"
    readonly_fields = ["at", "actor", "actor_label", "action", "object_type", "object_id", "summary", "details"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
