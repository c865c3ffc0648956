from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from core.models import WorkerHeartbeat

admin.site.site_header = _("Parley administration")
admin.site.site_title = _("Parley")
admin.site.index_title = _("Supervisor tools")


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["hostname", "seen_at", "beats"]
    readonly_fields = ["hostname", "seen_at", "beats"]

    def has_add_permission(self, request) -> bool:
        return False
