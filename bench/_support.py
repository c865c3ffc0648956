"""What the benchmarks share: Django on the test settings, a database of their own, percentiles.

Not a benchmark itself: importing it (or running it, as ``make bench`` does with
every ``bench/*.py``) has no side effects. A benchmark calls ``setup_django``
first, before importing anything from the project.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent


def setup_django(name: str) -> None:
    """Django on ``config.settings_test`` with a run folder, Celery queue and layer prefix of this run's own."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("PARLEY_TEST_RUN", f"bench-{name}-{os.getpid()}")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings_test"
    import django

    django.setup()


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def host_speed_ms() -> float:
    """Milliseconds this host takes for a fixed piece of pure Python (best of three), as a speed reading.

    Shared VMs change speed from hour to hour with their neighbours: printed at the start and end of a run
    beside the load average, it tells whether two runs' absolute figures (milliseconds, not ratios) compare.
    """
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for number in range(2_000_000):
            total += number
        best = min(best, time.perf_counter() - started)
    return best * 1000


def cpu_times() -> tuple[int, int] | None:
    """(stolen, total) CPU ticks of the whole machine so far, from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is counted in user already)
    return fields[7], sum(fields[:8])


def stolen_share(since: tuple[int, int] | None) -> str:
    """The share of CPU time the hypervisor gave to other guests since ``since`` (``cpu_times()``).

    On a shared VM this is what slows a run down without showing in its own load: tens of percent make
    absolute milliseconds incomparable with a quiet run's.
    """
    now = cpu_times()
    if since is None or now is None or now[1] == since[1]:
        return "unknown"
    return f"{100 * (now[0] - since[0]) / (now[1] - since[1]):.1f} %"


def analyze() -> None:
    """On PostgreSQL, table statistics for the rows the set-up made, as autovacuum keeps them in production.

    A database filled a moment ago has none: PostgreSQL then plans for empty tables (and keeps that plan for
    a prepared statement until its next ANALYZE). SQLite keeps no statistics unless asked, in production
    too, so it is left as it is; with them (``ANALYZE``) its realtime p50 was measured 50 % higher.
    """
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def database_latency_ms(rounds: int = 100) -> tuple[float, float]:
    """(p50 of ``SELECT 1``, p50 of a one-row insert and its commit) on the benchmark's database, in ms.

    What a round trip and a durable commit cost on this host now: on a shared VM the commit's flush to disk
    moves from under 1 ms to several from hour to hour, and every stored message waits for one.
    """
    from django.db import connection, transaction

    from core.models import RelayedEvent

    selects, commits = [], []
    with connection.cursor() as cursor:
        for _ in range(rounds):
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            selects.append(time.perf_counter() - started)
    for number in range(rounds):
        started = time.perf_counter()
        with transaction.atomic():
            RelayedEvent.objects.create(group="bench-latency", payload={"n": number})
        commits.append(time.perf_counter() - started)
    RelayedEvent.objects.filter(group="bench-latency").delete()
    return percentile(selects, 50) * 1000, percentile(commits, 50) * 1000


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def create_database() -> str:
    """A fresh test database (on PostgreSQL named ``test_parley_bench_<pid>``, so no test run is touched)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        connection.settings_dict.setdefault("TEST", {})["NAME"] = f"test_parley_bench_{os.getpid()}"
    return connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False, keepdb=False)


def destroy_database(old_name: str) -> None:
    from django.db import connection

    connection.creation.destroy_test_db(old_name, verbosity=0, keepdb=False)


def database_version() -> str:
    from django.db import connection

    if connection.vendor == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return f"PostgreSQL {cursor.fetchone()[0]}"


def database_url() -> str:
    """A DATABASE_URL naming the database the benchmark uses now (its test database), for subprocesses."""
    from django.db import connection

    db = connection.settings_dict
    # Persistent connections, if this run asked for them, apply to the subprocess too.
    options = (
        f"?conn_max_age={db['CONN_MAX_AGE']}" if isinstance(db.get("CONN_MAX_AGE"), int) and db["CONN_MAX_AGE"] else ""
    )
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}{options}"
    user = quote(db.get("USER") or "")
    password = quote(db.get("PASSWORD") or "")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{db['NAME']}{options}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_version() -> str:
    from django.conf import settings

    if not settings.REDIS_URL:
        return ""
    import redis

    return f"Redis {redis.Redis.from_url(settings.REDIS_URL).info('server')['redis_version']}"


def cleanup_run(prefix: str) -> None:
    """Remove this run's folder and, with Redis, its Celery queue (offer expiries) and channel-layer keys."""
    from django.conf import settings

    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter(f"*{settings.CELERY_TASK_DEFAULT_QUEUE}*"):
            client.delete(key)
        layer = settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix")
        if layer and layer != "parley":
            # Group memberships of the run's sockets would otherwise linger for a day.
            for key in client.scan_iter(f"{layer}*"):
                client.delete(key)
    if os.environ["PARLEY_TEST_RUN"].startswith(prefix):
        shutil.rmtree(settings.VAR_DIR, ignore_errors=True)
