from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EmailConfig(AppConfig):
    name = "channels_app.email"
    label = "channel_email"
    verbose_name = _("Email")

    def ready(self) -> None:
        from anymail.signals import inbound

        from channels_app.email.services import email_compose_send, email_retry_check, email_unavailable_reason
        from channels_app.email.transports import email_transport
        from channels_app.email.views import anymail_inbound_received
        from conversations.channels import ComposerChannel, composer_channel_register
        from conversations.models import Medium
        from conversations.outbox import retry_check_register, transport_register

        transport_register(medium=Medium.EMAIL, transport=email_transport)
        retry_check_register(medium=Medium.EMAIL, check=email_retry_check)
        composer_channel_register(
            ComposerChannel(
                medium=Medium.EMAIL,
                label=_("Email"),
                unavailable_reason=email_unavailable_reason,
                send=email_compose_send,
                fields_template="email/composer_fields.html",
                max_chars=50_000,
                placeholder=_("Write the email…"),
                position=60,
            )
        )
        inbound.connect(anymail_inbound_received, dispatch_uid="parley-email-inbound")
