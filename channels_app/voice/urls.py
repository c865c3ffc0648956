from __future__ import annotations

app_name = "voice"

urlpatterns: list = []
