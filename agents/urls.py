from __future__ import annotations

from django.urls import path

from agents import views

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("desktop/", views.desktop, name="desktop"),
    path("desktop/state/", views.state_set, name="agent-state-set"),
]
