from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from agents.models import AgentProfile, AgentState, NotReadyReason
from agents.selectors import not_ready_reasons_selectable
from conversations.models import Disposition, Service
from supervisor.hours import business_hours_errors
from supervisor.models import Team
from supervisor.selectors import ConversationFilter, media_choices

NOT_READY_PREFIX = "not_ready:"
DATE = {"type": "date"}


def force_state_choices() -> list[tuple[str, str]]:
    choices = [(AgentState.READY.value, str(AgentState.READY.label))]
    reasons = list(not_ready_reasons_selectable())
    if reasons:
        choices += [
            (f"{NOT_READY_PREFIX}{reason.code}", f"{AgentState.NOT_READY.label}: {reason.label}") for reason in reasons
        ]
    else:
        choices.append((AgentState.NOT_READY.value, str(AgentState.NOT_READY.label)))
    choices.append((AgentState.LOGGED_OUT.value, str(AgentState.LOGGED_OUT.label)))
    return choices


class ForceStateForm(forms.Form):
    choice = forms.ChoiceField(label=_("Set state"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["choice"].choices = force_state_choices()

    def state_and_reason(self) -> tuple[str, NotReadyReason | None]:
        choice = self.cleaned_data["choice"]
        if choice.startswith(NOT_READY_PREFIX):
            code = choice.removeprefix(NOT_READY_PREFIX)
            return AgentState.NOT_READY, not_ready_reasons_selectable().get(code=code)
        return choice, None


class BoardFilterForm(forms.Form):
    team = forms.ModelChoiceField(queryset=Team.objects.all(), required=False, label=_("Team"), empty_label=_("All"))
    service = forms.ModelChoiceField(
        queryset=Service.objects.filter(is_active=True), required=False, label=_("Service"), empty_label=_("All")
    )

    def ids(self) -> dict[str, int | None]:
        if not self.is_valid():
            return {"team_id": None, "service_id": None}
        team, service = self.cleaned_data.get("team"), self.cleaned_data.get("service")
        return {"team_id": team.pk if team else None, "service_id": service.pk if service else None}


class ReassignForm(forms.Form):
    QUEUE = "queue"

    target = forms.ChoiceField(label=_("Reassign to"))
    note = forms.CharField(label=_("Note for the agent"), required=False, max_length=500)

    def __init__(self, *args, agents, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.agents = {str(agent.user_id): agent for agent in agents}
        self.fields["target"].choices = [(self.QUEUE, _("Back to the queue"))] + [
            (user_id, f"{agent} ({agent.get_state_display()})") for user_id, agent in self.agents.items()
        ]

    def target_agent_user(self):
        target = self.cleaned_data["target"]
        return None if target == self.QUEUE else self.agents[target].user


class ConversationFilterForm(forms.Form):
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[("", _("Live and closed")), ("live", _("Live")), ("closed", _("Closed"))],
    )
    service = forms.ModelChoiceField(
        queryset=Service.objects.all(), required=False, label=_("Service"), empty_label=_("All")
    )
    agent = forms.ModelChoiceField(
        queryset=AgentProfile.objects.select_related("user"), required=False, label=_("Agent"), empty_label=_("All")
    )
    channel = forms.ChoiceField(label=_("Channel"), required=False)
    disposition = forms.ModelChoiceField(
        queryset=Disposition.objects.all(), required=False, label=_("Disposition"), empty_label=_("All")
    )
    opened_from = forms.DateField(label=_("Opened from"), required=False, widget=forms.DateInput(attrs=DATE))
    opened_to = forms.DateField(label=_("Opened until"), required=False, widget=forms.DateInput(attrs=DATE))
    contact = forms.CharField(label=_("Contact"), required=False, max_length=100)
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["channel"].choices = [("", _("All")), *media_choices()]

    def criteria(self) -> ConversationFilter:
        if not self.is_valid():
            return ConversationFilter()
        data = self.cleaned_data
        return ConversationFilter(
            status=data["status"],
            service_id=data["service"].pk if data["service"] else None,
            agent_id=data["agent"].user_id if data["agent"] else None,
            medium=data["channel"],
            disposition_id=data["disposition"].pk if data["disposition"] else None,
            opened_from=data["opened_from"],
            opened_to=data["opened_to"],
            contact=data["contact"],
            before_id=data["before"],
        )


class DateRangeForm(forms.Form):
    start = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("Until"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def range(self, *, default_days: int = 7):
        today = timezone.localdate()
        data = self.cleaned_data if self.is_valid() else {}
        end = data.get("end") or today
        start = data.get("start") or end - timedelta(days=default_days - 1)
        return (start, end) if start <= end else (end, start)


class AuditFilterForm(DateRangeForm):
    actor = forms.CharField(label=_("Who"), required=False, max_length=150)


class ServiceAdminForm(forms.ModelForm):
    """The admin's service form, with business hours checked."""

    class Meta:
        model = Service
        # The admin lays out the fields itself (ServiceAdmin.fieldsets).
        fields = ["business_hours"]

    def clean_business_hours(self):
        value = self.cleaned_data.get("business_hours") or {}
        errors = business_hours_errors(value)
        if errors:
            raise forms.ValidationError(errors)
        return value
