from __future__ import annotations

from django import template

register = template.Library()


@register.simple_tag
def email_composer_defaults(conversation, user) -> dict:
    """The composer's starting values: addresses, the subject to answer, whether to sign."""
    from channels_app.email.selectors import signature_for
    from channels_app.email.services import _live_email, contact_email_addresses, email_reply_defaults

    defaults = email_reply_defaults(conversation=conversation)
    live = _live_email(conversation)
    return {
        **defaults,
        "addresses": contact_email_addresses(conversation=conversation),
        "signature": bool(signature_for(user=user).strip()),
        "live_email": live is not None and live.agent_id == getattr(user, "pk", None),
    }
