from __future__ import annotations

from celery import shared_task

from agents.models import AgentProfile
from agents.services import agent_acw_end, agents_acw_expire_due


@shared_task(ignore_result=True)
def agent_acw_expire(profile_id: int) -> None:
    profile = AgentProfile.objects.filter(pk=profile_id).first()
    if profile is not None:
        agent_acw_end(agent=profile, only_if_due=True)


@shared_task(ignore_result=True)
def agents_acw_sweep() -> None:
    agents_acw_expire_due()
