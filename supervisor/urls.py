from __future__ import annotations

app_name = "supervisor"

urlpatterns: list = []
