"""Template helpers of the agent desktop: safe links in message text, media labels and icons."""

from __future__ import annotations

from django import template
from django.utils.html import Urlizer, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _

from conversations.models import Medium

register = template.Library()

# Decorative line icons (24 by 24, stroked in the text colour); every use carries a
# text label for assistive technology. Inline SVG needs no extra request and no
# inline style, so the strict Content-Security-Policy holds.
ICON_PATHS = {
    "chat": "M4 5h16v11H9l-5 4z",
    "voice": "M6 3h3l2 5-2.5 1.5a11 11 0 0 0 6 6L16 13l5 2v3a2 2 0 0 1-2 2A17 17 0 0 1 4 5a2 2 0 0 1 2-2z",
    "video": "M3 7h12v10H3z M15 11l6-4v10l-6-4",
    "sms": "M7 2h10v20H7z M11 18h2",
    "email": "M3 5h18v14H3z M3 6l9 7 9-7",
    "note": "M6 11h12v10H6z M8 11V7a4 4 0 0 1 8 0v4",
    "attachment": "M20 11l-8 8a5 5 0 0 1-7-7l8-8a3.5 3.5 0 0 1 5 5l-8 8a2 2 0 0 1-3-3l7-7",
    "waiting": "M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18z M12 7v5l3 2",
}
MEDIUM_ICONS = {
    Medium.CHAT: "chat",
    Medium.VOICE: "voice",
    Medium.VIDEO: "video",
    Medium.SMS: "sms",
    Medium.EMAIL: "email",
}

# urlize() with nofollow writes exactly this attribute; the text around it is
# already escaped, so a customer cannot smuggle the same string in.
_NOFOLLOW = ' rel="nofollow"'
_SAFE_REL = ' rel="nofollow noopener noreferrer" target="_blank"'


class _Urlizer(Urlizer):
    """Django's urlize, with its email check skipped for words that have no ``@``.

    Django checks every word with a dot (the last word of most sentences) with its email validator, whose
    ``ValidationError`` lists itself: each such word left a reference cycle holding the frames of the
    render, for the cycle collector to find.
    """

    @staticmethod
    def is_email_simple(value) -> bool:
        return "@" in value and Urlizer.is_email_simple(value)


_urlize = _Urlizer()


@register.filter(is_safe=True)
def linkify(text) -> SafeString:
    """Escape ``text``, turn URLs and email addresses into safe links, keep line breaks.

    Customer text is escaped whatever the surrounding autoescape setting.
    """
    if text is None:
        return SafeString("")
    linked = _urlize(str(text), nofollow=True, autoescape=True).replace(_NOFOLLOW, _SAFE_REL)
    return mark_safe(linked.replace("\r\n", "\n").replace("\n", "<br>"))  # noqa: S308 - escaped by urlize


@register.filter
def medium_label(value: str) -> str:
    try:
        return str(Medium(value).label)
    except ValueError:
        return str(value)


def _svg(name: str) -> SafeString:
    path = ICON_PATHS.get(name)
    if path is None:
        return SafeString("")
    return format_html(
        '<svg class="icon icon-{}" viewBox="0 0 24 24" width="16" height="16" aria-hidden="true" focusable="false" '
        'fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">'
        '<path d="{}"/></svg>',
        name,
        path,
    )


@register.filter
def medium_icon(value: str) -> SafeString:
    """The icon of a medium (chat, voice, …); decorative, pair it with ``medium_label``."""
    return _svg(MEDIUM_ICONS.get(value, ""))


@register.simple_tag
def icon(name: str) -> SafeString:
    """A named decorative icon: note, attachment, waiting, or a medium."""
    return _svg(name)


@register.filter
def end_reason(value: str) -> str:
    """Why an interaction ended, in words; empty for reasons without a wording."""
    reasons = {
        "agent_ended": _("ended by the agent"),
        "customer_left": _("the customer left"),
        "customer_inactive": _("the customer was inactive"),
        "conversation_closed": _("the conversation was closed"),
    }
    return str(reasons.get(value or "", ""))


@register.filter
def person(user) -> str:
    """A user's full name, else their username; empty for nobody."""
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()


@register.filter
def entry_medium(entry) -> str:
    """The medium a timeline entry is about, in words."""
    medium = (entry.data or {}).get("medium") or (entry.interaction.medium if entry.interaction_id else "")
    return medium_label(medium) if medium else ""
