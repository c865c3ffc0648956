from __future__ import annotations

from django.urls import path

from supervisor import views

app_name = "supervisor"

urlpatterns = [
    path("", views.home, name="home"),
    path("agents/", views.agents_page, name="agents"),
    path("agents/<int:agent_id>/state/", views.agent_state, name="agent-state"),
    path("queues/", views.queues_page, name="queues"),
    path("conversations/", views.conversations_page, name="conversations"),
    path("conversations/<uuid:conversation_uuid>/", views.conversation_monitor, name="conversation"),
    path(
        "conversations/<uuid:conversation_uuid>/reassign/",
        views.conversation_reassign_view,
        name="conversation-reassign",
    ),
    path("reports/", views.reports_page, name="reports"),
    path("reports/export.csv", views.reports_csv, name="reports-csv"),
    path("audit/", views.audit_page, name="audit"),
]
