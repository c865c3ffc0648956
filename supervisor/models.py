from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from agents.models import AgentProfile
from conversations.models import Service


class Team(models.Model):
    """A group of agents a supervisor looks after; the boards filter by it."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    members = models.ManyToManyField(AgentProfile, blank=True, related_name="teams", verbose_name=_("members"))
    services = models.ManyToManyField(
        Service,
        blank=True,
        related_name="teams",
        verbose_name=_("services"),
        help_text=_("The services this team works on; shown first when the boards filter by the team."),
    )

    class Meta:
        verbose_name = _("team")
        verbose_name_plural = _("teams")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
