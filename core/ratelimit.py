"""Fixed-window rate limits per client address (or any key), counted in the shared cache.

With ``REDIS_URL`` every web process counts in Redis, so a limit holds across
processes; the embedded default counts per process (there is one). A limit is
written ``"<hits>/<seconds>"``, e.g. ``"10/300"``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from functools import wraps

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    hits: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Limit:
        hits, _sep, seconds = text.partition("/")
        return cls(int(hits), int(seconds or 60))


class TokenBucket:
    """``capacity`` actions, refilled evenly over ``period`` seconds (a per-socket frame limit)."""

    def __init__(self, capacity: int, period: float) -> None:
        self.capacity = float(max(1, capacity))
        self.rate = self.capacity / period
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def limit_exceeded(*, scope: str, key: str, limit: str | Limit) -> int:
    """Count one hit of ``key`` in ``scope``; returns 0 while within the limit, else seconds to wait."""
    if isinstance(limit, str):
        limit = Limit.parse(limit)
    if limit.hits <= 0:
        return 0
    now = time.time()
    window = int(now // limit.seconds)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    cache_key = f"ratelimit:{scope}:{digest}:{window}"
    try:
        if cache.add(cache_key, 1, timeout=limit.seconds + 1):
            count = 1
        else:
            try:
                count = cache.incr(cache_key)
            except ValueError:  # the window's key expired between add and incr
                cache.add(cache_key, 1, timeout=limit.seconds + 1)
                count = 1
    except Exception as exc:
        # The shared cache (Redis) is down: let the request through rather than refuse everyone. A limit
        # protects against abuse; refusing a provider's webhook would lose the customer's SMS.
        logger.warning("rate limit %s not counted, cache unavailable: %r", scope, exc)
        return 0
    if count <= limit.hits:
        return 0
    return max(1, int((window + 1) * limit.seconds - now))


def client_address(*, remote_addr: str, forwarded_for: str = "") -> str:
    """The client's address: REMOTE_ADDR, or the address the last trusted proxy saw (PROXY_TRUSTED_HOPS)."""
    hops = settings.PROXY_TRUSTED_HOPS
    if hops > 0 and forwarded_for:
        chain = [part.strip() for part in forwarded_for.split(",") if part.strip()]
        if len(chain) >= hops:
            return chain[-hops]
    return remote_addr or "unknown"


def request_address(request: HttpRequest) -> str:
    return client_address(
        remote_addr=request.META.get("REMOTE_ADDR", ""), forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR", "")
    )


def scope_address(scope: dict) -> str:
    """The client's address of a websocket (ASGI scope)."""
    client = scope.get("client") or ("", 0)
    forwarded = ""
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            forwarded = value.decode("latin-1")
    return client_address(remote_addr=client[0] or "", forwarded_for=forwarded)


def too_many_requests(request: HttpRequest, retry_after: int) -> HttpResponse:
    response = render(
        request,
        "core/too_many_requests.html",
        {"message": _("Too many requests. Please wait %(seconds)d seconds and try again.") % {"seconds": retry_after}},
        status=429,
    )
    response["Retry-After"] = str(retry_after)
    return response


def rate_limited(scope: str, setting: str, *, methods: tuple[str, ...] = ("POST",)):
    """Refuse a view's requests beyond the limit named by ``setting``, per client address, with 429."""

    def decorator(view):
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if request.method in methods:
                wait = limit_exceeded(scope=scope, key=request_address(request), limit=getattr(settings, setting))
                if wait:
                    return too_many_requests(request, wait)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
