"""Rate limits per client address: login, the public chat page (the widget socket and webhooks: their tests)."""

from __future__ import annotations

import itertools
import uuid

import pytest
from django.test import Client
from django.urls import reverse

from core.ratelimit import client_address, limit_exceeded
from tests.factories import TEST_PASSWORD, ServiceFactory

pytestmark = pytest.mark.django_db


# Counters live in the shared cache (Redis in the PostgreSQL run), which a test must not flush:
# every test counts under addresses and scopes of its own instead.
_addresses = (f"198.51.{n // 250}.{n % 250 + 1}" for n in itertools.count(uuid.uuid4().int % 50_000))


def _client() -> Client:
    return Client(REMOTE_ADDR=next(_addresses))


def test_limit_counts_per_key_and_window():
    scope, other = uuid.uuid4().hex, uuid.uuid4().hex
    assert [limit_exceeded(scope=scope, key="a", limit="2/60") for _ in range(2)] == [0, 0]
    assert limit_exceeded(scope=scope, key="a", limit="2/60") > 0
    assert limit_exceeded(scope=scope, key="b", limit="2/60") == 0
    assert limit_exceeded(scope=other, key="a", limit="2/60") == 0
    assert limit_exceeded(scope=scope, key="a", limit="0/1") == 0  # "0/…" turns a limit off


def test_client_address_trusts_only_the_configured_proxies(settings):
    settings.PROXY_TRUSTED_HOPS = 0
    assert client_address(remote_addr="10.0.0.1", forwarded_for="1.2.3.4") == "10.0.0.1"
    settings.PROXY_TRUSTED_HOPS = 1
    # A client may send its own X-Forwarded-For; only the entry our proxy appended counts.
    assert client_address(remote_addr="10.0.0.1", forwarded_for="6.6.6.6, 1.2.3.4") == "1.2.3.4"


def test_login_is_limited_per_address_with_429_and_retry_after(settings, agent):
    settings.RATE_LIMIT_LOGIN = "3/300"
    client = _client()
    url = reverse("login")
    for attempt in range(3):
        response = client.post(url, {"username": f"nobody{attempt}", "password": "wrong"})
        assert response.status_code == 200  # the form again, with its error
    response = client.post(url, {"username": agent.user.username, "password": TEST_PASSWORD})
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many requests" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # Another address is not affected.
    other = _client()
    assert other.post(url, {"username": agent.user.username, "password": TEST_PASSWORD}).status_code == 302


def test_login_is_limited_per_user_name_across_addresses(settings, agent):
    settings.RATE_LIMIT_LOGIN_USER = "2/300"
    url = reverse("login")
    for _attempt in range(2):
        _client().post(url, {"username": agent.user.username, "password": "x"})
    response = _client().post(url, {"username": agent.user.username.upper(), "password": TEST_PASSWORD})
    assert response.status_code == 429


def test_the_public_chat_page_is_limited_per_address(settings):
    settings.RATE_LIMIT_CHAT_PAGE = "2/60"
    service = ServiceFactory()
    url = reverse("webchat:page", args=[service.slug])
    client = _client()
    assert [client.get(url).status_code for _ in range(3)] == [200, 200, 429]
    assert _client().get(url).status_code == 200


@pytest.mark.parametrize("url_name", ["sms:twilio-inbound", "sms:twilio-status", "email:mailgun-inbound"])
def test_provider_webhooks_are_limited_per_address(settings, url_name):
    settings.RATE_LIMIT_WEBHOOK = "2/60"
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": "key-for-the-limit-test"}
    client = _client()
    url = reverse(url_name)
    # Unsigned requests are refused (403 from the signature check, 4xx from anymail) until the limit
    # cuts the address off before any work is done.
    statuses = [client.post(url, {"x": "1"}).status_code for _ in range(3)]
    assert all(400 <= status < 500 and status != 429 for status in statuses[:2]), statuses
    assert statuses[2] == 429


def test_with_the_shared_cache_down_requests_go_through_and_a_webhook_is_not_refused(settings, caplog):
    """A Redis outage must not turn into refusing every login, chat and provider webhook (a lost SMS)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.2},
        }
    }

    assert [limit_exceeded(scope="down", key="a", limit="1/60") for _ in range(3)] == [0, 0, 0]
    assert "cache unavailable" in caplog.text
