from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from agents.models import AgentState, NotReadyReason
from agents.selectors import not_ready_reasons_selectable


class StateChoiceForm(forms.Form):
    """The desktop's state selector: Ready, Not Ready (with a reason) or Logged out.

    One select carries state and reason: ``ready``, ``not_ready`` (no reasons
    configured), ``not_ready.<reason code>`` or ``logged_out``.
    """

    choice = forms.ChoiceField(label=_("State"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reasons = list(not_ready_reasons_selectable())
        choices = [(AgentState.READY.value, AgentState.READY.label)]
        if self.reasons:
            choices += [
                (f"{AgentState.NOT_READY.value}.{reason.code}", _("Not Ready: %(reason)s") % {"reason": reason.label})
                for reason in self.reasons
            ]
        else:
            choices.append((AgentState.NOT_READY.value, AgentState.NOT_READY.label))
        choices.append((AgentState.LOGGED_OUT.value, AgentState.LOGGED_OUT.label))
        self.fields["choice"].choices = choices

    def state_and_reason(self) -> tuple[str, NotReadyReason | None]:
        state, _sep, code = self.cleaned_data["choice"].partition(".")
        reason = next((r for r in self.reasons if r.code == code), None) if code else None
        return state, reason

    @staticmethod
    def value_for(*, state: str, reason: NotReadyReason | None) -> str:
        return f"{state}.{reason.code}" if reason is not None and not reason.is_system else state
