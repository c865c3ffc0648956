from __future__ import annotations

from celery import shared_task

from conversations import outbox
from conversations.routing import offer_expire as offer_expire_service
from conversations.routing import routing_sweep as routing_sweep_service


@shared_task(ignore_result=True)
def offer_expire(offer_id: int) -> None:
    offer_expire_service(offer_id=offer_id)


@shared_task(ignore_result=True)
def routing_sweep() -> None:
    routing_sweep_service()


@shared_task(ignore_result=True)
def outbox_deliver(outbox_id: int) -> None:
    outbox.outbox_deliver(outbox_id=outbox_id)


@shared_task(ignore_result=True)
def outbox_sweep() -> None:
    outbox.outbox_sweep()
