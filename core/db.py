"""Database connections in an ASGI process.

Under ASGI, Django runs each HTTP request's synchronous code in a thread made for that request
(``asgiref.ThreadSensitiveContext``), which ends with the request. A persistent connection
(``CONN_MAX_AGE``) opened there could never be reused and would only be closed by the garbage
collector, so it is closed when the request finishes. Long-lived threads keep theirs: the one that
runs the consumers' database work, and Celery's worker threads.
"""

from __future__ import annotations

from django.core.handlers.asgi import ASGIHandler
from django.db import connections


def close_request_thread_connections(sender, **kwargs) -> None:
    """``request_finished`` receiver: an ASGI request's thread is about to end, so are its connections."""
    if isinstance(sender, type) and issubclass(sender, ASGIHandler):
        for connection in connections.all(initialized_only=True):
            if not connection.in_atomic_block:
                connection.close()
