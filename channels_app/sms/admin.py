from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from channels_app.sms.models import DevelopmentSms, SmsAccount, SmsInbound, SmsNumber, SmsOptOut


class SmsAccountForm(forms.ModelForm):
    """The auth token is write-only: the form never sends it back, and an empty field keeps the stored one."""

    auth_token = forms.CharField(
        label=_("auth token"),
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Leave empty to keep the stored token."),
    )

    api_base_url = forms.URLField(
        label=_("API base URL"),
        required=False,
        assume_scheme="https",
        help_text=_("Leave empty for https://api.twilio.com; set for a regional edge or a test server."),
    )

    class Meta:
        model = SmsAccount
        fields = ["name", "account_sid", "auth_token", "api_base_url", "is_active"]

    def clean_auth_token(self) -> str:
        token = self.cleaned_data.get("auth_token", "")
        if token:
            return token
        if self.instance.pk and self.instance.auth_token:
            return self.instance.auth_token
        raise forms.ValidationError(_("Enter the account's auth token."))


class SmsNumberInline(admin.TabularInline):
    model = SmsNumber
    extra = 1


@admin.register(SmsAccount)
class SmsAccountAdmin(admin.ModelAdmin):
    form = SmsAccountForm
    inlines = [SmsNumberInline]
    list_display = ["name", "account_sid", "token", "api_base_url", "is_active"]

    @admin.display(description=_("auth token"))
    def token(self, obj: SmsAccount) -> str:
        return obj.auth_token_hint


@admin.register(SmsOptOut)
class SmsOptOutAdmin(admin.ModelAdmin):
    list_display = ["phone_number", "keyword", "created_at"]
    search_fields = ["phone_number"]
    readonly_fields = ["phone_number", "keyword", "created_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        # Only the customer opts in or out (STOP/START); a supervisor may delete a row on their written request.
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DevelopmentSms)
class DevelopmentSmsAdmin(admin.ModelAdmin):
    """What would have been sent while no SMS account is configured; nothing here reached anyone."""

    list_display = ["created_at", "to", "body", "sid"]
    search_fields = ["to", "body"]
    readonly_fields = ["message", "idempotency_key", "sid", "to", "body", "created_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SmsInbound)
class SmsInboundAdmin(admin.ModelAdmin):
    """Twilio's inbound webhooks as received, so a supervisor sees any that are stuck or failed.

    Read-only: the worker and the sweep move the rows; a supervisor only looks.
    """

    list_display = ["received_at", "state", "sender", "to_number", "message_sid", "attempts", "last_error"]
    list_filter = ["state"]
    search_fields = ["sender", "message_sid"]
    date_hierarchy = "received_at"
    fields = [
        "message_sid",
        "account",
        "sender",
        "to_number",
        "received_at",
        "state",
        "attempts",
        "next_attempt_at",
        "claimed_at",
        "last_error",
        "processed_at",
        "message",
        "payload_pretty",
    ]
    readonly_fields = fields

    @admin.display(description=_("payload"))
    def payload_pretty(self, obj: SmsInbound) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False, sort_keys=True))

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
