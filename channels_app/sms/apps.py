from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SmsConfig(AppConfig):
    name = "channels_app.sms"
    label = "channel_sms"
    verbose_name = _("SMS")

    def ready(self) -> None:
        from channels_app.sms import services
        from conversations.channels import ComposerChannel, composer_channel_register
        from conversations.models import Medium
        from conversations.outbox import retry_check_register, transport_register

        transport_register(medium=Medium.SMS, transport=services.sms_transport)
        retry_check_register(medium=Medium.SMS, check=services.sms_retry_check)
        composer_channel_register(
            ComposerChannel(
                medium=Medium.SMS,
                label=_("SMS"),
                unavailable_reason=services.sms_unavailable_reason,
                send=services.sms_composer_send,
                fields_template="sms/composer_fields.html",
                max_chars=1600,
                placeholder=_("Write an SMS to the customer…"),
                position=20,
            )
        )
