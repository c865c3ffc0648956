"""Fixtures shared by the whole suite: one per role, and the real components."""

from __future__ import annotations

import os

import pytest
from django.test import Client

from tests.factories import TEST_PASSWORD, AgentFactory, ContactPointFactory, SupervisorFactory, UserFactory

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_component(available: bool, what: str) -> None:
    """Skip locally when a real component is missing; in CI that is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available")


@pytest.fixture
def agent(db):
    return AgentFactory()


@pytest.fixture
def other_agent(db):
    return AgentFactory()


@pytest.fixture
def supervisor(db):
    return SupervisorFactory()


@pytest.fixture
def plain_user(db):
    """Logged-in user who is neither agent nor supervisor."""
    return UserFactory()


@pytest.fixture
def customer_point(db):
    """A customer: a contact known by an email address."""
    return ContactPointFactory()


def _client_for(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=TEST_PASSWORD)
    return client


@pytest.fixture
def agent_client(agent) -> Client:
    return _client_for(agent.user)


@pytest.fixture
def other_agent_client(other_agent) -> Client:
    return _client_for(other_agent.user)


@pytest.fixture
def supervisor_client(supervisor) -> Client:
    return _client_for(supervisor)


@pytest.fixture
def anonymous_client() -> Client:
    return Client()


def redis_available() -> bool:
    from django.conf import settings

    if not settings.REDIS_URL:
        return False
    import redis

    try:
        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def live_server_url(transactional_db, tmp_path):
    """daphne serving the app (HTTP and websockets) on the test database."""
    from tests.live import daphne_server

    with daphne_server(tmp_path / "daphne.log") as url:
        yield url


CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(monkeypatch):
    """Headless Debian Chromium driven by Playwright."""
    require_component(os.path.exists(CHROMIUM), f"Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the
    # test makes between browser steps are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session", autouse=True)
def _websocket_threads_let_go_of_the_test_database(django_db_setup, django_db_blocker):
    """The websockets' database threads keep their connections (CONN_MAX_AGE), as in production; before
    Django drops the test database, the run's own other sessions on it are ended."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def pytest_sessionfinish(session, exitstatus):
    """Remove this run's folder (test database file, broker folder) unless a subprocess of it is still running."""
    import shutil

    from django.conf import settings

    if os.environ.get("PARLEY_TEST_RUN") == str(os.getpid()):
        shutil.rmtree(settings.VAR_DIR, ignore_errors=True)
        _drop_leftover_postgres_test_database()


def _drop_leftover_postgres_test_database() -> None:
    """A connection a worker thread never closed makes Django's teardown leave the test database behind."""
    from django.db import connection

    db = connection.settings_dict
    name = (db.get("TEST") or {}).get("NAME")
    if db["ENGINE"] != "django.db.backends.postgresql" or not name:
        return
    import psycopg
    from psycopg import sql

    params = {"host": db.get("HOST") or None, "port": db.get("PORT") or None, "user": db.get("USER") or None}
    if db.get("PASSWORD"):
        params["password"] = db["PASSWORD"]
    try:
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        print(f"could not drop leftover test database {name}: {exc}")


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test gets its own channel layer object.

    The layer is cached per process while each async test runs on its own
    event loop, and channels_redis keeps loop-bound state on it.
    """
    from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    yield
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)


@pytest.fixture(autouse=True)
def default_language():
    """A request with Accept-Language: de leaves German active in the thread; no test inherits it."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()
