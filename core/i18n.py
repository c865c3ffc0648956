"""Language of a websocket client, which LocaleMiddleware never sees."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

from django.conf import settings
from django.utils import translation
from django.utils.translation.trans_real import parse_accept_lang_header

from core.db import database_sync_to_async

T = TypeVar("T")


def language_from_scope(scope: dict) -> str:
    """The language cookie if set, else the best Accept-Language match, else the default."""
    candidates: list[str] = []
    cookie = scope.get("cookies", {}).get(settings.LANGUAGE_COOKIE_NAME)
    if cookie:
        candidates.append(cookie)
    for name, value in scope.get("headers", []):
        if name == b"accept-language":
            candidates.extend(code for code, _q in parse_accept_lang_header(value.decode("latin1")))
    for code in candidates:
        try:
            return translation.get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


def database_sync_to_async_in_language(method: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``database_sync_to_async`` for a consumer's render method, run in the socket's ``self.language``.

    Contexts carry strings translated while they are built (a channel's "The contact has no phone
    number."), not only in the template; the HTTP view builds them in the request's language, and a
    push must match it word for word, or the client takes it for a changed region and replaces it.
    """

    @functools.wraps(method)
    def in_language(self, *args, **kwargs):
        with translation.override(self.language):
            return method(self, *args, **kwargs)

    return database_sync_to_async(in_language)
