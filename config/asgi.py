"""ASGI entry point: HTTP goes to Django, websockets through an origin check and the session."""

from __future__ import annotations

import asyncio
import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from core.affinity import pin_from_environment  # noqa: E402

# One core per web process when WEB_CPUS names it (core.affinity), before any thread of ours starts.
pin_from_environment()

# Imported after Django is set up: routing imports consumers, which import models.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from core import realtime  # noqa: E402
from core.db import PooledASGIHandler  # noqa: E402

# Django's ASGI handler, with each request's synchronous work in one hop to long-lived threads (core.db).
django_asgi_app = PooledASGIHandler()
http_app = django_asgi_app
if settings.SERVE_STATIC:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi_app)

router = ProtocolTypeRouter(
    {
        "http": http_app,
        # A missing or foreign Origin is refused before any consumer runs.
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)


class Application:
    """The router, plus the event publisher and the relay of Celery workers' events when the layer is in-memory."""

    def __init__(self, app) -> None:
        self.app = app
        self.relay = None

    async def __call__(self, scope, receive, send):
        # Events committed by this process's threads are sent from its event loop (core.realtime).
        realtime.publisher_start()
        if self.relay is None and settings.EVENT_RELAY and realtime.layer_is_in_memory():
            self.relay = asyncio.get_running_loop().create_task(realtime.relay_events())
        return await self.app(scope, receive, send)


application = Application(router)

# Everything loaded by now (Django, the apps, the URL and template machinery: over 100 000 objects) lives as
# long as the process: leave it out of the cycle collector's full passes, which stop the event loop and every
# socket of the process while they walk all tracked objects (about 100 ms a pass with these objects, 30 ms
# without, docs/PERFORMANCE.md). Frozen objects are still freed as usual when nothing refers to them.
gc.freeze()
