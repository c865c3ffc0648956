from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from agents.models import AgentProfile, AgentStateLog, NotReadyReason


@admin.register(NotReadyReason)
class NotReadyReasonAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "is_system", "is_active", "position"]
    list_editable = ["is_active", "position"]
    list_filter = ["is_active", "is_system"]
    search_fields = ["name", "code"]
    prepopulated_fields = {"code": ["name"]}


class AgentStateLogInline(admin.TabularInline):
    model = AgentStateLog
    fk_name = "agent"
    extra = 0
    fields = ["state", "not_ready_reason", "started_at", "ended_at", "changed_by"]
    readonly_fields = fields
    ordering = ["-started_at"]
    max_num = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("not_ready_reason", "changed_by")


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    list_display = ["__str__", "state", "not_ready_reason", "state_since", "capacity"]
    list_filter = ["state", "services"]
    search_fields = ["user__username", "user__first_name", "user__last_name"]
    list_select_related = ["user", "not_ready_reason"]
    filter_horizontal = ["services"]
    # State changes go through the agent services (log, events); not edited here.
    readonly_fields = ["state", "not_ready_reason", "state_since", "idle_since"]
    inlines = [AgentStateLogInline]


@admin.register(AgentStateLog)
class AgentStateLogAdmin(admin.ModelAdmin):
    list_display = ["agent", "state", "not_ready_reason", "started_at", "ended_at", "changed_by"]
    list_filter = ["state", "not_ready_reason", "started_at"]
    list_select_related = ["agent__user", "not_ready_reason", "changed_by"]
    date_hierarchy = "started_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class AgentProfileInline(admin.StackedInline):
    model = AgentProfile
    fk_name = "user"
    can_delete = False
    fields = ["capacity", "services"]
    filter_horizontal = ["services"]


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class ParleyUserAdmin(UserAdmin):
    inlines = [AgentProfileInline]
