"""Every read the email channel's views need."""

from __future__ import annotations

from django.db.models import QuerySet

from channels_app.email.models import EmailMeta, EmailSignature, ParkedEmail
from conversations.models import Interaction, Medium
from conversations.selectors import agent_worked_on


def email_meta_for_user(*, user, message_id: int) -> EmailMeta | None:
    """A mail's details if ``user`` may read the conversation: its agent, an agent who worked it, a supervisor."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    meta = EmailMeta.objects.select_related("message__conversation").filter(message_id=message_id).first()
    if meta is None:
        return None
    conversation = meta.message.conversation
    if user.is_staff or conversation.assigned_agent_id == user.pk:
        return meta
    return meta if agent_worked_on(agent=user, conversation=conversation) else None


def parked_for_agent(*, agent) -> QuerySet[ParkedEmail]:
    return (
        ParkedEmail.objects.filter(agent=agent, interaction__state=Interaction.State.QUEUED)
        .select_related("interaction__conversation__contact", "service")
        .order_by("parked_at", "id")
    )


def team_email_queue(*, agent, limit: int = 200) -> list[Interaction]:
    """Unassigned email waiting in the agent's services, longest waiting first."""
    return list(
        Interaction.objects.filter(
            medium=Medium.EMAIL,
            state__in=(Interaction.State.QUEUED, Interaction.State.OFFERED),
            service__in=agent.services.all(),
        )
        .select_related("conversation__contact", "service")
        .order_by("created_at", "id")[:limit]
    )


def signature_for(*, user) -> str:
    return EmailSignature.objects.filter(user=user).values_list("body", flat=True).first() or ""
