"""Every read the agent views and consumers need."""

from __future__ import annotations

from django.db.models import QuerySet

from agents.models import AgentProfile, NotReadyReason
from conversations.models import Interaction


def agent_for_user(*, user) -> AgentProfile | None:
    """The user's agent profile, or None for anonymous users and non-agents."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    return AgentProfile.objects.select_related("not_ready_reason", "user").filter(user=user).first()


def agent_for_request(*, request) -> AgentProfile | None:
    """The requesting user's agent profile, from the row the authentication backend loaded with the user.

    Only for HTTP requests (the user is loaded afresh each time); a websocket's
    user lives as long as the socket, so consumers use ``agent_for_user``.
    """
    user = request.user
    if not user.is_authenticated or not user.is_active:
        return None
    from django.contrib.auth import get_user_model

    # request.user is a lazy wrapper: ask the model's descriptor about the wrapped row.
    if get_user_model().agent.is_cached(getattr(user, "_wrapped", user)):
        try:
            return user.agent
        except AgentProfile.DoesNotExist:
            return None
    return agent_for_user(user=user)


def not_ready_reasons_selectable() -> QuerySet[NotReadyReason]:
    """Reasons an agent may pick; system reasons such as “missed” are set by Parley only."""
    return NotReadyReason.objects.filter(is_active=True, is_system=False).order_by("position", "name")


def agent_has_live_work(*, agent: AgentProfile) -> bool:
    return Interaction.objects.filter(
        agent=agent.user,
        state__in=(Interaction.State.OFFERED, Interaction.State.ACTIVE, Interaction.State.ON_HOLD),
    ).exists()
