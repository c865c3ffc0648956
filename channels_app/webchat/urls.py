from __future__ import annotations

app_name = "webchat"
urlpatterns: list = []
