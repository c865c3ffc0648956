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

# Idle connections to the broker, per process and broker URL, shared by all threads: a web process runs
# requests on several threads (core.db) and Celery on its own, so per-thread connections would multiply.
_idle: dict[tuple[int, str], list[Connection]] = {}
_idle_lock = threading.Lock()
MAX_IDLE = 8


def _key(app: Celery) -> tuple[int, str]:
    # A forked worker must not use its parent's sockets; tests point the broker elsewhere.
    return (os.getpid(), app.conf.broker_write_url or app.conf.broker_url)


def _acquire(app: Celery) -> Connection:
    """An open connection from the idle ones, else a new one (not connected yet).

    A new connection per call cost ~13 ms of an inbound webhook's acknowledgement: connecting, and declaring
    the queue again, which kombu remembers per connection.
    """
    with _idle_lock:
        idle = _idle.get(_key(app))
        if idle:
            return idle.pop()
    return app.connection_for_write()


def _release(app: Celery, connection: Connection) -> None:
    with _idle_lock:
        idle = _idle.setdefault(_key(app), [])
        if len(idle) < MAX_IDLE:
            idle.append(connection)
            return
    _close(connection)


def _close(connection: Connection) -> None:
    try:
        connection.release()
    except Exception:  # already broken; nothing to hand back
        logger.debug("closing a broken broker connection failed", exc_info=True)


def task_enqueue(task: Task, *, args: Sequence = (), countdown: float = 0, what: str = "") -> bool:
    """Queue ``task`` with at most one connection attempt; ``False`` when the broker is unreachable.

    The caller's row must be safe in the database already: ``False`` means its sweep queues it later.
    """
    # With the broker down, a plain apply_async spends ~6 s in kombu's connection retries (retry=False
    # covers only the publish), which OB1 showed as an agent's send taking 6 s per SMS. One connection
    # attempt, no retries, then publish on that connection: down means "the sweep queues it", at once.
    connection = _acquire(task.app)
    try:
        connection.ensure_connection(max_retries=0)
        task.apply_async(tuple(args), countdown=countdown, retry=False, connection=connection)
    except Exception:  # the broker is unreachable: the row is safe in the database
        # A connection that failed is never used again: the next call connects afresh, once.
        _close(connection)
        logger.warning("%s: broker unavailable, the sweep will queue it", what or task.name, exc_info=True)
        return False
    _release(task.app, connection)
    return True
