"""Language of a websocket client, which LocaleMiddleware never sees."""

from __future__ import annotations

from django.conf import settings
from django.utils import translation
from django.utils.translation.trans_real import parse_accept_lang_header


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
