"""Forms of the agent desktop's workspace: composer, wrap-up, transfer, attachments."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from conversations.models import CannedResponse, Disposition, Service

CHANNEL_CHAT = "chat"
CHANNEL_NOTE = "note"


class ComposeForm(forms.Form):
    """The composer: a chat message or, with the channel “note”, an internal note."""

    channel = forms.ChoiceField(
        label=_("Send as"), choices=[(CHANNEL_CHAT, _("Chat")), (CHANNEL_NOTE, _("Internal note"))]
    )
    text = forms.CharField(label=_("Message"), strip=True, max_length=settings.CHAT_MAX_MESSAGE_CHARS)

    def __init__(self, *args, channels: list[str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if channels is not None:
            field = self.fields["channel"]
            field.choices = [choice for choice in field.choices if choice[0] in channels]


class NoteForm(forms.Form):
    body = forms.CharField(label=_("Internal note"), strip=True, max_length=settings.CHAT_MAX_MESSAGE_CHARS)


class WrapUpForm(forms.Form):
    disposition = forms.ModelChoiceField(
        label=_("Disposition"), queryset=Disposition.objects.none(), empty_label=_("Choose an outcome")
    )
    notes = forms.CharField(
        label=_("Wrap-up notes"), required=False, strip=True, max_length=4000, widget=forms.Textarea
    )

    def __init__(self, *args, dispositions=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["disposition"]
        field.queryset = dispositions if dispositions is not None else Disposition.objects.none()
        # With no outcomes configured there is nothing to choose.
        field.required = field.queryset.exists()


class TransferForm(forms.Form):
    """Hand the conversation to an agent (``agent:<user id>``) or a service (``service:<id>``)."""

    target = forms.ChoiceField(label=_("Transfer to"))
    note = forms.CharField(label=_("Note for the receiving agent"), required=False, strip=True, max_length=1000)

    def __init__(self, *args, agents=(), services: list[Service] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.agents = {str(profile.user_id): profile for profile in agents}
        self.services = {str(service.pk): service for service in services}
        self.fields["target"].choices = [
            ("", _("Choose an agent or a service")),
            (
                _("Agents"),
                [(f"agent:{profile.user_id}", f"{profile} ({profile.get_state_display()})") for profile in agents],
            ),
            (_("Services"), [(f"service:{service.pk}", service.name) for service in services]),
        ]

    def clean_target(self) -> str:
        value = self.cleaned_data["target"]
        kind, _sep, key = value.partition(":")
        if (kind == "agent" and key in self.agents) or (kind == "service" and key in self.services):
            return value
        raise forms.ValidationError(_("Choose an agent or a service from the list."))

    def destination(self) -> tuple[object | None, Service | None]:
        """``(agent user, None)`` or ``(None, service)``."""
        kind, _sep, key = self.cleaned_data["target"].partition(":")
        if kind == "agent":
            return self.agents[key].user, None
        return None, self.services[key]


class AttachmentForm(forms.Form):
    file = forms.FileField(label=_("Attach a file"))


class CannedResponseForm(forms.ModelForm):
    """An agent's own canned response; the shortcut is unique among their own."""

    class Meta:
        model = CannedResponse
        fields = ["shortcut", "title", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 4})}

    def __init__(self, *args, owner, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner

    def clean_shortcut(self) -> str:
        shortcut = self.cleaned_data["shortcut"]
        taken = CannedResponse.objects.filter(owner=self.owner, shortcut=shortcut).exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(_("You already have a canned response with this shortcut."))
        return shortcut
