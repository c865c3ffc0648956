"""Chaos (QUALITY.md reliability list): Redis restarted while a chat is live on the scaled-out layout.

Redis carries the events between processes; the database is the source of truth. While Redis is down
the agent can still write (the message is stored, its event lost); when Redis is back the clients
reconnect, re-sync from the database and see everything exactly once, and live delivery resumes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from contextlib import contextmanager

import pytest
from websockets.exceptions import ConnectionClosed

from conversations.models import Message
from tests.conftest import require_component
from tests.live import free_port, stop
from tests.scaleout.cluster import cluster, nginx_path
from tests.scaleout.test_scaleout import _post, _until, _ws, chat_open, chat_setup

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


@contextmanager
def private_redis(port: int):
    """A Redis of this test's own (the machine's shared one must never be stopped)."""
    proc = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    import redis

    client = redis.Redis(port=port, socket_connect_timeout=1)
    while time.monotonic() < deadline:
        try:
            if client.ping():
                break
        except redis.RedisError:
            time.sleep(0.1)
    try:
        yield proc
    finally:
        stop(proc)


def _recv_all(ws, seconds: float) -> list[str]:
    frames = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frames.append(ws.recv(timeout=max(0.05, deadline - time.monotonic())))
        except TimeoutError:
            break
        except ConnectionClosed:
            break
    return frames


def _connect_with_retry(open_socket, *, timeout: float = 30.0):
    """Reconnect as the browser does: retry until the server takes the socket again."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            return open_socket()
        except Exception as exc:  # refused, or closed at once while the layer is still coming back
            last = exc
            time.sleep(0.5)
    raise AssertionError(f"could not reconnect within {timeout} s: {last!r}")


def test_redis_restart_loses_nothing_and_clients_resync(tmp_path):
    require_component(shutil.which("redis-server") is not None, "redis-server")
    require_component(nginx_path() is not None, "nginx (the reverse proxy of the scale-out test)")
    port = free_port()
    with private_redis(port) as redis_proc, cluster(tmp_path, redis_url=f"redis://127.0.0.1:{port}/0") as running:
        service, profile, cookie, csrf = chat_setup("chaos-redis")
        daphne_a, daphne_b = running.web
        agent_socket = _ws(daphne_b, "/ws/agent/", Cookie=cookie)
        customer = _ws(daphne_a, "/ws/chat/")
        conversation, token = chat_open(
            running,
            service=service,
            profile=profile,
            cookie=cookie,
            csrf=csrf,
            customer=customer,
            agent_socket=agent_socket,
        )

        customer.send(json.dumps({"type": "message", "text": "before-outage", "client_id": "c1"}))
        _until(agent_socket, lambda raw: "before-outage" in raw, what="a message before the outage")

        # Redis goes away. The agent keeps writing: each message is stored (the sender gets no error).
        stop(redis_proc)
        for number in range(3):
            status = _post(
                running.proxy,
                f"/desktop/c/{conversation.uuid}/send/",
                {"channel": "chat", "text": f"during-outage-{number}"},
                cookie=cookie,
                csrf=csrf,
            )
            assert status == 200
        _recv_all(customer, 1.0)  # whatever the old sockets still deliver, or their closing

        # Redis is back on the same address; the processes reconnect to it.
        with private_redis(port):
            agent_socket.close()
            customer.close()
            customer = _connect_with_retry(lambda: _ws(daphne_a, "/ws/chat/"))
            customer.send(json.dumps({"type": "resume", "token": token, "after": 0}))
            backlog = _until(
                customer,
                lambda raw: json.loads(raw).get("type") == "entries" and "during-outage-2" in raw,
                what="the messages written during the outage, re-synced",
            )
            texts = [entry.get("text") for entry in json.loads(backlog)["entries"]]
            for number in range(3):
                assert texts.count(f"during-outage-{number}") == 1, texts

            agent_socket = _connect_with_retry(lambda: _ws(daphne_b, "/ws/agent/", Cookie=cookie))
            agent_socket.send(json.dumps({"action": "resync", "conversation": str(conversation.uuid), "after": 0}))
            _until(agent_socket, lambda raw: "during-outage-2" in raw, what="the agent's re-sync")

            # Live delivery resumes both ways across the two processes.
            customer.send(json.dumps({"type": "message", "text": "after-restart", "client_id": "c2"}))
            _until(agent_socket, lambda raw: "after-restart" in raw, timeout=30, what="live delivery after the restart")
            assert (
                _post(
                    running.proxy,
                    f"/desktop/c/{conversation.uuid}/send/",
                    {"channel": "chat", "text": "agent-after-restart"},
                    cookie=cookie,
                    csrf=csrf,
                )
                == 200
            )
            _until(customer, lambda raw: "agent-after-restart" in raw, what="the agent's live answer after the restart")
            agent_socket.close()
            customer.close()

    bodies = list(Message.objects.filter(conversation=conversation).values_list("body", flat=True))
    for text in ("before-outage", "during-outage-0", "during-outage-1", "during-outage-2", "after-restart"):
        assert bodies.count(text) == 1, (text, bodies)
    assert bodies.count("agent-after-restart") == 1
