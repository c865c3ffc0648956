from __future__ import annotations

from django.urls import path

from channels_app.sms import views

app_name = "sms"

urlpatterns = [
    path("twilio/inbound/", views.twilio_inbound, name="twilio-inbound"),
    path("twilio/status/", views.twilio_status, name="twilio-status"),
    path("c/<uuid:conversation_uuid>/end/", views.thread_end, name="end"),
]
