"""Queueing a Celery task from a request without ever waiting on a dead broker.

Used where a row in the database already holds the work (the outbox, raw inbound webhooks) and a periodic
sweep queues whatever was left behind: a broker that is down then only means "later", never a slow answer.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

from celery import Celery, Task
from kombu import Connection

logger = logging.getLogger(__name__)

_local = threading.local()


def _connection(app: Celery) -> Connection:
    """This thread's open connection to the broker, kept between calls.

    A new connection per call cost ~13 ms of an inbound webhook's acknowledgement (connect, and declaring the
    queue again, which kombu remembers per connection). Keyed on the process (a forked worker must not share
    its parent's socket) and the broker URL (tests point it elsewhere).
    """
    key = (os.getpid(), app.conf.broker_write_url or app.conf.broker_url)
    current = getattr(_local, "key", None)
    if current != key:
        # A connection inherited across a fork is the parent's socket: leave it alone, never close it here.
        _forget(close=current is not None and current[0] == key[0])
        _local.connection = app.connection_for_write()
        _local.key = key
    return _local.connection


def _forget(*, close: bool = True) -> None:
    connection = getattr(_local, "connection", None)
    _local.connection = _local.key = None
    if connection is not None and close:
        try:
            connection.release()
        except Exception:  # already broken; nothing to hand back
            logger.debug("closing a broken broker connection failed", exc_info=True)


def task_enqueue(task: Task, *, args: Sequence = (), countdown: float = 0, what: str = "") -> bool:
    """Queue ``task`` with at most one connection attempt; ``False`` when the broker is unreachable.

    The caller's row must be safe in the database already: ``False`` means its sweep queues it later.
    """
    try:
        # With the broker down, a plain apply_async spends ~6 s in kombu's connection retries (retry=False
        # covers only the publish), which OB1 showed as an agent's send taking 6 s per SMS. One connection
        # attempt, no retries, then publish on that connection: down means "the sweep queues it", at once.
        connection = _connection(task.app)
        connection.ensure_connection(max_retries=0)
        task.apply_async(tuple(args), countdown=countdown, retry=False, connection=connection)
    except Exception:  # the broker is unreachable: the row is safe in the database
        # A connection that failed is never trusted again: the next call connects afresh, once.
        _forget()
        logger.warning("%s: broker unavailable, the sweep will queue it", what or task.name, exc_info=True)
        return False
    return True
