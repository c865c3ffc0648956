"""Content-Security-Policy on every response; a clear answer while the database is unreachable."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

logger = logging.getLogger(__name__)

# No inline script or style on our pages; htmx is configured not to need them.
APP_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; media-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Django's admin still carries a few inline styles.
ADMIN_POLICY = APP_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            policy = ADMIN_POLICY if request.path.startswith("/admin/") else APP_POLICY
            response["Content-Security-Policy"] = policy
        return response


class DatabaseUnavailableMiddleware:
    """The database went away mid-request: answer 503 with a clear message instead of a server error.

    Nothing is half-written (each write is one transaction), and the desktop keeps
    the agent's text when a request fails, so the agent simply tries again.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.warning("database unavailable during %s %s: %r", request.method, request.path, exception)
        message = _("Parley cannot reach its database just now. Nothing was saved; please try again in a moment.")
        if getattr(request, "htmx", False):
            response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
        else:
            response = render(request, "core/unavailable.html", {"message": message}, status=503)
        response["Retry-After"] = "10"
        return response
