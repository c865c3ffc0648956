"""Channels an agent can write on from the workspace composer, besides the live chat and notes.

Each channel app (``channels_app/sms``, ``channels_app/email``) registers one
``ComposerChannel`` in its ``AppConfig.ready()``. The workspace offers every
registered channel on every open conversation: usable ones as a choice,
unusable ones disabled with the reason (no phone number, opted out, ...), so
an agent can continue a chat or call by SMS or email without ending the
conversation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

from conversations.models import Conversation, Message


@dataclass(frozen=True)
class ComposerChannel:
    medium: str
    label: str
    # Returns "" when the agent may write on this channel now, else the reason shown to the agent.
    unavailable_reason: Callable[[Conversation, object], str]
    # Stores and queues the message (``conversations.outbox``); raises ValidationError with a clear message.
    send: Callable[..., Message]
    # Extra fields (an email's subject, attachments, an SMS segment counter) shown while this channel is chosen.
    fields_template: str = ""
    max_chars: int = 4000
    placeholder: str = ""
    position: int = 50
    scripts: tuple[str, ...] = field(default_factory=tuple)


COMPOSER_CHANNELS: dict[str, ComposerChannel] = {}


def composer_channel_register(channel: ComposerChannel) -> None:
    COMPOSER_CHANNELS[channel.medium] = channel


def composer_channels() -> list[ComposerChannel]:
    return sorted(COMPOSER_CHANNELS.values(), key=lambda channel: channel.position)


def composer_channel(medium: str) -> ComposerChannel | None:
    return COMPOSER_CHANNELS.get(medium)


def composer_channels_for(*, conversation: Conversation, user) -> list[tuple[ComposerChannel, str]]:
    """Every registered channel with "" (usable) or the reason it is not, for this conversation."""
    if not conversation.is_open:
        return []
    return [(channel, channel.unavailable_reason(conversation, user)) for channel in composer_channels()]


def composer_send(
    *, medium: str, conversation: Conversation, agent_user, data: QueryDict, files: MultiValueDict
) -> Message:
    channel = COMPOSER_CHANNELS[medium]
    return channel.send(conversation=conversation, agent_user=agent_user, data=data, files=files)
