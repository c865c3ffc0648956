"""Chaos (QUALITY.md reliability list): the database unavailable for 10 s while a chat is live.

daphne reaches PostgreSQL through a TCP proxy the test cuts. Whoever writes during the outage gets a
clear error at once and nothing half-written; once the database is back the same actions succeed and
every message is stored exactly once.
"""

from __future__ import annotations

import json
import time
import urllib.error

import pytest
from django.db import connection

from conversations.models import Message, TimelineEntry
from tests import live
from tests.conftest import redis_available, require_component
from tests.scaleout.tcpproxy import CuttableProxy
from tests.scaleout.test_scaleout import _post, _until, _ws, chat_open, chat_setup

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

OUTAGE_SECONDS = 10


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="runs in the PostgreSQL pass: an embedded SQLite file cannot become unreachable",
)
def test_database_outage_gives_clear_errors_and_loses_nothing(tmp_path, settings):
    require_component(redis_available() if settings.REDIS_URL else True, "Redis")
    db = connection.settings_dict
    proxy = CuttableProxy((db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)))
    url = live.test_database_url().replace(f":{db.get('PORT') or 5432}/", f":{proxy.port}/")
    if f":{proxy.port}/" not in url:  # no port in the URL: add the proxy's
        url = url.replace(f"@{db.get('HOST') or '127.0.0.1'}/", f"@127.0.0.1:{proxy.port}/")
    service, profile, cookie, csrf = chat_setup("chaos-database")
    try:
        with live.daphne_server(tmp_path / "daphne.log", DATABASE_URL=url) as base:

            class Running:
                proxy = base

            agent_socket = _ws(base, "/ws/agent/", Cookie=cookie)
            customer = _ws(base, "/ws/chat/")
            conversation, _token = chat_open(
                Running,
                service=service,
                profile=profile,
                cookie=cookie,
                csrf=csrf,
                customer=customer,
                agent_socket=agent_socket,
            )
            before = TimelineEntry.objects.filter(conversation=conversation).count()

            proxy.cut()
            started = time.monotonic()
            customer.send(json.dumps({"type": "message", "text": "during-db-outage", "client_id": "c1"}))
            error = json.loads(_until(customer, lambda raw: json.loads(raw).get("type") == "error", timeout=15))
            assert error["code"] == "try_again"
            assert error.get("client_id") == "c1"
            assert "try again" in error["message"]
            with pytest.raises(urllib.error.HTTPError) as refused:
                _post(
                    base,
                    f"/desktop/c/{conversation.uuid}/send/",
                    {"channel": "chat", "text": "x"},
                    cookie=cookie,
                    csrf=csrf,
                )
            assert refused.value.code == 503
            assert "cannot reach its database" in refused.value.read().decode()
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - started)))
            # Nothing half-written: no message, no timeline entry from the outage.
            assert not Message.objects.filter(body__in=["during-db-outage", "x"]).exists()
            assert TimelineEntry.objects.filter(conversation=conversation).count() == before

            proxy.restore()
            # The agent's desktop socket was closed with "try again later" if a push failed meanwhile;
            # it reconnects and re-syncs, as the browser does.
            agent_socket.close()
            agent_socket = _ws(base, "/ws/agent/", Cookie=cookie)
            agent_socket.send(json.dumps({"action": "resync", "conversation": str(conversation.uuid), "after": 0}))
            _until(agent_socket, lambda raw: f"timeline-{conversation.uuid}" in raw, timeout=20)
            # The customer's socket still serves: the customer sends again and the agent gets it live.
            customer.send(json.dumps({"type": "message", "text": "during-db-outage", "client_id": "c1"}))
            _until(customer, lambda raw: "during-db-outage" in raw and '"entries"' in raw, timeout=20)
            _until(agent_socket, lambda raw: "during-db-outage" in raw, timeout=20)
            customer.close()
            agent_socket.close()
    finally:
        proxy.close()
    assert Message.objects.filter(conversation=conversation, body="during-db-outage").count() == 1
