"""Supervisors configure mailboxes here; the password is write-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from channels_app.email.models import EmailSignature, Mailbox, ProcessedMail


class MailboxForm(forms.ModelForm):
    password = forms.CharField(
        label=_("password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Leave empty to keep the stored password."),
    )

    class Meta:
        model = Mailbox
        fields = (
            "name", "address", "service", "is_active", "host", "port", "security", "verify_certificate",
            "username", "password", "folder", "after_processing", "move_to",
        )  # fmt: skip

    def clean_password(self) -> str:
        password = self.cleaned_data.get("password", "")
        if password:
            return password
        if self.instance.pk:
            return Mailbox.objects.filter(pk=self.instance.pk).values_list("password", flat=True).first() or ""
        raise forms.ValidationError(_("Enter the mailbox password."))


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):
    form = MailboxForm
    list_display = ("name", "address", "host", "security", "service", "is_active", "last_polled_at", "last_error")
    list_filter = ("is_active", "security")
    readonly_fields = ("stored_password", "last_polled_at", "last_error")
    fieldsets = (
        (None, {"fields": ("name", "address", "service", "is_active")}),
        (
            _("Server"),
            {
                "fields": (
                    "host",
                    "port",
                    "security",
                    "verify_certificate",
                    "username",
                    "password",
                    "stored_password",
                    "folder",
                )
            },
        ),
        (_("After processing"), {"fields": ("after_processing", "move_to")}),
        (_("Status"), {"fields": ("last_polled_at", "last_error")}),
    )

    @admin.display(description=_("stored password"))
    def stored_password(self, obj: Mailbox) -> str:
        return obj.password_hint or "—"


@admin.register(ProcessedMail)
class ProcessedMailAdmin(admin.ModelAdmin):
    list_display = ("mailbox", "uid", "rfc_message_id", "outcome", "processed_at")
    list_filter = ("mailbox", "outcome")
    readonly_fields = ("mailbox", "uidvalidity", "uid", "rfc_message_id", "outcome", "processed_at")


@admin.register(EmailSignature)
class EmailSignatureAdmin(admin.ModelAdmin):
    list_display = ("user",)
