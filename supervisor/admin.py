from __future__ import annotations

from django.contrib import admin

from supervisor.models import Team

# The admin index lists configuration first, then the live records, then the technical parts.
# Apps not named here (a new channel's accounts) follow in alphabetical order.
ADMIN_APP_ORDER = (
    "supervisor",
    "conversations",
    "agents",
    "channel_webchat",
    "channel_voice",
    "channel_sms",
    "channel_email",
    "contacts",
    "auth",
    "core",
)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name"]
    search_fields = ["name"]
    filter_horizontal = ["members", "services"]


_default_get_app_list = admin.site.get_app_list


def _ordered_app_list(request, app_label=None):
    apps = _default_get_app_list(request, app_label)
    rank = {label: index for index, label in enumerate(ADMIN_APP_ORDER)}
    return sorted(apps, key=lambda app: (rank.get(app["app_label"], len(rank)), str(app["name"])))


admin.site.get_app_list = _ordered_app_list
