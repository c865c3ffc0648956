from __future__ import annotations

app_name = "sms"

urlpatterns: list = []
