from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from agents.forms import StateChoiceForm
from agents.models import AgentProfile, AgentState
from agents.selectors import agent_for_request
from agents.services import agent_login, agent_logout, agent_state_set
from core.ratelimit import limit_exceeded, request_address, too_many_requests


def state_partial_context(*, agent: AgentProfile, error: str = "") -> dict:
    form = StateChoiceForm(
        initial={"choice": StateChoiceForm.value_for(state=agent.state, reason=agent.not_ready_reason)}
    )
    return {"agent": agent, "state_form": form, "state_error": error}


def _agent_or_403(request: HttpRequest) -> AgentProfile:
    agent = agent_for_request(request=request)
    if agent is None:
        raise PermissionDenied(_("This page is for agents."))
    return agent


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        # Password guessing: limited per client address and per user name tried.
        username = request.POST.get("username", "")[:150].strip().lower()
        wait = limit_exceeded(scope="login", key=request_address(request), limit=settings.RATE_LIMIT_LOGIN)
        if not wait and username:
            wait = limit_exceeded(scope="login-user", key=username, limit=settings.RATE_LIMIT_LOGIN_USER)
        if wait:
            return too_many_requests(request, wait)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        response = super().form_valid(form)
        agent_login(user=form.get_user())
        return response

    def get_default_redirect_url(self):
        if agent_for_request(request=self.request) is None and self.request.user.is_staff:
            return reverse("admin:index")
        return super().get_default_redirect_url()


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        try:
            agent_logout(user=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("desktop")
    logout(request)
    return redirect("login")


@login_required
def desktop(request: HttpRequest) -> HttpResponse:
    agent = agent_for_request(request=request)
    if agent is None:
        if request.user.is_staff:
            return redirect("admin:index")
        raise PermissionDenied(_("This page is for agents."))
    # Imported here: the conversation views build on this module.
    from conversations.views import desktop_context

    return render(request, "agents/desktop.html", desktop_context(agent=agent))


@login_required
@require_POST
def state_set(request: HttpRequest) -> HttpResponse:
    agent = _agent_or_403(request)
    form = StateChoiceForm(request.POST)
    if not form.is_valid():
        context = state_partial_context(agent=agent, error=_("Choose a state from the list."))
        return render(request, "agents/desktop.html#agent-state", context, status=422)
    state, reason = form.state_and_reason()
    try:
        agent = agent_state_set(agent=agent, state=state, reason=reason, changed_by=request.user)
    except ValidationError as exc:
        context = state_partial_context(agent=agent, error=" ".join(exc.messages))
        return render(request, "agents/desktop.html#agent-state", context, status=422)
    if state == AgentState.LOGGED_OUT:
        logout(request)
        login_url = reverse("login")
        return HttpResponseClientRedirect(login_url) if request.htmx else redirect(login_url)
    if not request.htmx:
        return redirect("desktop")
    return render(request, "agents/desktop.html#agent-state", state_partial_context(agent=agent))
