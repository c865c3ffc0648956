from __future__ import annotations

from django.urls import path

from channels_app.voice import views

app_name = "voice"

urlpatterns: list = [
    path("ice-servers/", views.ice_servers, name="ice-servers"),
]
