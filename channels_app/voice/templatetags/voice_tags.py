"""Template helpers for the call controls, the list row and the timeline."""

from __future__ import annotations

from django import template

from channels_app.voice.selectors import CALL_MEDIA

register = template.Library()


@register.filter
def live_call(interactions) -> object | None:
    """The live call among a conversation's live interactions (there is at most one)."""
    calls = [i for i in (interactions or []) if getattr(i, "medium", None) in CALL_MEDIA]
    return calls[-1] if calls else None


@register.filter
def call_duration(seconds) -> str:
    """Seconds as m:ss (or h:mm:ss)."""
    try:
        total = max(0, round(float(seconds)))
    except (TypeError, ValueError):
        return ""
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@register.filter
def call_flag(interaction, key: str) -> bool:
    """``"muted.customer"`` → whether the customer is muted, from the call's details."""
    group, _sep, role = key.partition(".")
    return bool(((getattr(interaction, "details", None) or {}).get(group) or {}).get(role))
