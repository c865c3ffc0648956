"""Reads the voice consumer, views and templates need."""

from __future__ import annotations

from dataclasses import dataclass

from conversations.models import Interaction, Offer

CALL_MEDIA = ("voice", "video")


@dataclass(frozen=True)
class CallRef:
    """What a socket needs to relay one call's frames without a query per frame."""

    id: int
    conversation_uuid: str
    conversation_id: int
    agent_id: int | None
    state: str

    @property
    def connected(self) -> bool:
        return self.state in (Interaction.State.ACTIVE, Interaction.State.ON_HOLD)

    @property
    def live(self) -> bool:
        return self.state in Interaction.LIVE_STATES


def _ref(call: Interaction) -> CallRef:
    return CallRef(
        id=call.pk,
        conversation_uuid=str(call.conversation.uuid),
        conversation_id=call.conversation_id,
        agent_id=call.agent_id,
        state=call.state,
    )


def call_for_agent(*, user, call_id: int) -> Interaction | None:
    """The call if ``user`` is its agent."""
    return (
        Interaction.objects.select_related("conversation__contact", "agent")
        .filter(pk=call_id, medium__in=CALL_MEDIA, agent=user)
        .first()
    )


def call_for_conversation(*, conversation_id: int, call_id: int) -> Interaction | None:
    """The call if it belongs to the customer's conversation."""
    return (
        Interaction.objects.select_related("conversation__contact", "agent")
        .filter(pk=call_id, medium__in=CALL_MEDIA, conversation_id=conversation_id)
        .first()
    )


def call_ref_for(*, role: str, call_id: int, user=None, conversation_id: int | None = None) -> CallRef | None:
    """The call as one party may see it, or None when it is not theirs."""
    if role == "agent":
        call = call_for_agent(user=user, call_id=call_id)
    else:
        call = call_for_conversation(conversation_id=conversation_id, call_id=call_id)
    return _ref(call) if call is not None else None


def calls_live_for_agent(*, user) -> list[Interaction]:
    """The agent's live calls, minus routing offers (those are in the offers panel)."""
    return list(
        Interaction.objects.select_related("conversation__contact", "agent")
        .filter(agent=user, medium__in=CALL_MEDIA, state__in=Interaction.LIVE_STATES)
        .exclude(offers__state=Offer.State.PENDING)
        .order_by("created_at", "id")
    )


def calls_live_in_conversation(*, conversation_id: int) -> list[Interaction]:
    return list(
        Interaction.objects.select_related("conversation__contact", "agent")
        .filter(conversation_id=conversation_id, medium__in=CALL_MEDIA, state__in=Interaction.LIVE_STATES)
        .order_by("created_at", "id")
    )


def call_state_for_client(call: Interaction) -> str:
    """ringing (direct), queued (waiting for routing), active, on_hold, or the final state."""
    if call.state == Interaction.State.OFFERED:
        return "ringing"
    return call.state


def call_json(call: Interaction, *, role: str) -> dict:
    """A call as either party's script sees it; the customer learns the agent's first name only."""
    details = call.details or {}
    contact = call.conversation.contact
    data = {
        "id": call.pk,
        "conversation": str(call.conversation.uuid),
        "state": call_state_for_client(call),
        "direction": call.direction,
        "incoming": (call.direction == "inbound") == (role == "agent"),
        "video": {k: bool(v) for k, v in (details.get("video") or {}).items() if k in ("agent", "customer")},
        "muted": {k: bool(v) for k, v in (details.get("muted") or {}).items() if k in ("agent", "customer")},
        "created_at": call.created_at.isoformat(),
        "answered_at": call.answered_at.isoformat() if call.answered_at else None,
        "ended_at": call.ended_at.isoformat() if call.ended_at else None,
        "held_at": details.get("held_at"),
    }
    if role == "agent":
        data["contact"] = contact.display_name if hasattr(contact, "display_name") else str(contact)
    else:
        data["agent"] = call.agent.first_name if call.agent_id and call.agent else ""
    return data


def live_call_of(conversation) -> Interaction | None:
    """The conversation's live call, for the workspace header and list row (from prefetched rows when given)."""
    live = getattr(conversation, "live_interactions", None)
    if live is not None:
        calls = [i for i in live if i.medium in CALL_MEDIA]
        return calls[-1] if calls else None
    return (
        conversation.interactions.filter(medium__in=CALL_MEDIA, state__in=Interaction.LIVE_STATES)
        .order_by("-created_at")
        .first()
    )
