from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import request_finished
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = _("System")

    def ready(self) -> None:
        from core.db import close_request_thread_connections

        request_finished.connect(close_request_thread_connections, dispatch_uid="core.close_request_thread_connections")
