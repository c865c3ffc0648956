"""PostgreSQL plans a statement run again and again once per connection (DATABASE_PREPARE_THRESHOLD)."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from conversations.models import Conversation
from tests.core.test_deploy import PRODUCTION_ENV, run_manage

SHOW_OPTIONS = (
    "import json; from django.conf import settings; print(json.dumps(settings.DATABASES['default']['OPTIONS']))"
)


def _options(**env: str) -> dict:
    result = run_manage("shell", "-c", SHOW_OPTIONS, env={**PRODUCTION_ENV, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_postgresql_binds_on_the_server_and_prepares_after_five_runs_by_default():
    options = _options(DATABASE_URL="postgres://parley@db.example.com:5432/parley")
    assert options["server_side_binding"] is True
    assert options["prepare_threshold"] == 5


def test_a_threshold_of_zero_keeps_djangos_client_side_binding():
    options = _options(DATABASE_URL="postgres://parley@db.example.com:5432/parley", DATABASE_PREPARE_THRESHOLD="0")
    assert "server_side_binding" not in options
    assert "prepare_threshold" not in options


def test_sqlite_has_no_such_options():
    options = _options(DATABASE_URL="sqlite:////tmp/parley-settings-check.sqlite3")
    assert "server_side_binding" not in options


@pytest.mark.django_db
def test_a_statement_run_again_is_prepared_on_the_server_and_gives_the_same_rows():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's; the suite's PostgreSQL pass runs this")
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    results = [list(Conversation.objects.filter(pk=n).values_list("pk", flat=True)) for n in range(threshold + 2)]
    assert results == [[]] * (threshold + 2)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any('FROM "conversations_conversation"' in statement for statement in prepared), prepared


SHOW_THREADS = "from django.conf import settings; print(settings.WEBSOCKET_DB_THREADS)"


def _websocket_threads(**env: str) -> int:
    result = run_manage("shell", "-c", SHOW_THREADS, env={**PRODUCTION_ENV, **env})
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


def test_sqlite_runs_the_websockets_database_work_on_one_thread_postgresql_on_four():
    # SQLite writes one transaction at a time: more threads only wait for its lock and the interpreter's.
    assert _websocket_threads(DATABASE_URL="sqlite:////tmp/parley-settings-check.sqlite3") == 1
    assert _websocket_threads(DATABASE_URL="postgres://parley@db.example.com:5432/parley") == 4
    assert (
        _websocket_threads(DATABASE_URL="sqlite:////tmp/parley-settings-check.sqlite3", WEBSOCKET_DB_THREADS="3") == 3
    )
