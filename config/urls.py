from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("core.urls")),
    path("", include("agents.urls")),
    path("desktop/", include("conversations.urls")),
    path("contacts/", include("contacts.urls")),
    path("chat/", include("channels_app.webchat.urls")),
    path("voice/", include("channels_app.voice.urls")),
    path("sms/", include("channels_app.sms.urls")),
    path("email/", include("channels_app.email.urls")),
    path("supervisor/", include("supervisor.urls")),
]
