"""Every URL the project serves, walked from the URL configuration (QUALITY.md security list):
security headers and a Content-Security-Policy on every answer, CSRF enforced on every state-changing
POST, and the few CSRF-exempt endpoints are exactly the ones that authenticate otherwise."""

from __future__ import annotations

import re
import uuid

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories import AgentFactory, SupervisorFactory

pytestmark = pytest.mark.django_db

# Endpoints that carry no session: each proves who is calling another way, checked by its own tests.
CSRF_EXEMPT = {
    "webchat:attachment-upload": "the customer's signed chat token in a header",
    "sms:twilio-inbound": "X-Twilio-Signature",
    "sms:twilio-status": "X-Twilio-Signature",
    "email:mailgun-inbound": "Mailgun's HMAC signature",
    "email:transcript": "the customer's signed chat token",
}
SAMPLE = {"int": "999999", "uuid": str(uuid.UUID(int=1)), "slug": "no-such-slug", "str": "nothing", "path": "x"}


def _walk(patterns, prefix: str = "", namespace: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = namespace + (f"{pattern.namespace}:" if pattern.namespace else "")
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            yield namespace + (pattern.name or ""), prefix + str(pattern.pattern), pattern.callback


def _routes():
    found = []
    for name, route, callback in _walk(get_resolver().url_patterns):
        if name.startswith("admin:") or route.startswith("^"):
            continue  # Django's admin: its own CSRF and headers, covered by tests/core/test_admin.py
        found.append((name, route, callback))
    return found


ROUTES = _routes()


def _url(route: str) -> str:
    def sample(match: re.Match) -> str:
        inner = match.group(1)
        converter = inner.split(":", 1)[0] if ":" in inner else "str"
        return SAMPLE.get(converter, "1")

    return "/" + re.sub(r"<([^>]+)>", sample, route)


@pytest.mark.parametrize(("name", "route"), [(name, route) for name, route, _cb in ROUTES], ids=lambda v: str(v))
def test_every_answer_carries_the_security_headers(name, route):
    response = Client().get(_url(route), HTTP_ACCEPT_LANGUAGE="en")
    assert "Content-Security-Policy" in response, name
    assert "default-src" in response["Content-Security-Policy"] or "sandbox" in response["Content-Security-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff", name
    assert response["Referrer-Policy"], name


@pytest.mark.parametrize(("name", "route"), [(name, route) for name, route, _cb in ROUTES], ids=lambda v: str(v))
def test_state_changing_posts_need_the_csrf_token(name, route):
    callback = {n: cb for n, _r, cb in ROUTES}[name]
    if getattr(callback, "csrf_exempt", False):
        assert name in CSRF_EXEMPT, f"{name} is CSRF-exempt but not listed with how it authenticates"
        return
    for user in (AgentFactory().user, SupervisorFactory()):
        client = Client(enforce_csrf_checks=True)
        client.force_login(user)
        response = client.post(_url(route), {"x": "1"})
        # The CSRF check runs before any view (and its method check): refused, whatever the URL.
        assert response.status_code == 403, (name, response.status_code)
        assert b"CSRF" in response.content, name


def test_the_exempt_list_names_only_existing_endpoints():
    names = {name for name, _route, _cb in ROUTES}
    assert set(CSRF_EXEMPT) <= names, set(CSRF_EXEMPT) - names
