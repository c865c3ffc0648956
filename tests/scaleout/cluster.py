"""The production layout in miniature: two daphne processes and two Celery workers sharing the test
database and one Redis (channel layer, broker, cache), behind nginx.

Used by the scale-out tests; README ("Production layout") shows the same layout with real hosts.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from tests.live import BASE_DIR, BIN_DIR, free_port, stop, subprocess_env, wait_for_http

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format upstream '$upstream_addr "$request" $status';
    access_log {run}/nginx-access.log upstream;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream parley {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://parley;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""


def nginx_path() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(path).exists()), None
    )


@dataclass
class Cluster:
    proxy: str
    web: list[str]
    workers: list[subprocess.Popen]
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def proxied_to(self) -> set[str]:
        """The backends nginx passed requests to, from its access log."""
        path = self.logs / "nginx" / "nginx-access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return {"http://" + line.split(" ", 1)[0] for line in lines if line and line[0].isdigit()}

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _spawn(command: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)


@contextmanager
def cluster(tmp_path: Path, *, redis_url: str, extra_env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """Start two daphne, two workers and nginx; yields when all answer, stops them all afterwards."""
    run = uuid.uuid4().hex[:8]
    env_overrides = {
        "REDIS_URL": redis_url,
        # Own keys and queue on the shared Redis, so nothing of another run is read.
        "CHANNEL_LAYER_PREFIX": f"parley-scaleout-{run}",
        "CELERY_QUEUE": f"parley-scaleout-{run}",
        # Redis carries the events between processes; no database relay.
        "PARLEY_EVENT_RELAY": "0",
        "PROXY_TRUSTED_HOPS": "1",
        **(extra_env or {}),
    }
    env = subprocess_env(**env_overrides)
    logs = tmp_path / "cluster"
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        # Registered first, so it runs last: once every process of the run has stopped.
        stack.callback(_forget_run, redis_url, f"parley-scaleout-{run}")
        processes: dict[str, subprocess.Popen] = {}

        def track(name: str, proc: subprocess.Popen) -> subprocess.Popen:
            processes[name] = proc
            stack.callback(stop, proc)
            return proc

        web = []
        for name in ("daphne-a", "daphne-b"):
            port = free_port()
            command = [str(BIN_DIR / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
            proc = track(name, _spawn(command, logs / f"{name}.log", env))
            web.append((f"http://127.0.0.1:{port}", proc))
        workers = []
        for name in ("worker-a", "worker-b"):
            command = [
                str(BIN_DIR / "celery"),
                "-A",
                "config",
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
                "--hostname",
                f"{name}-{run}@%h",
                "--queues",
                env_overrides["CELERY_QUEUE"],
            ]
            workers.append(track(name, _spawn(command, logs / f"{name}.log", env)))
        for url, proc in web:
            wait_for_http(f"{url}/healthz", proc=proc, timeout=60)
        proxy_port = free_port()
        nginx_run = logs / "nginx"
        nginx_run.mkdir(exist_ok=True)
        servers = "\n".join(f"        server {url.removeprefix('http://')};" for url, _proc in web)
        conf = nginx_run / "nginx.conf"
        conf.write_text(NGINX_CONF.format(run=nginx_run, servers=servers, port=proxy_port))
        nginx = track("nginx", _spawn([nginx_path(), "-c", str(conf), "-p", str(nginx_run)], logs / "nginx.log", env))
        proxy = f"http://127.0.0.1:{proxy_port}"
        wait_for_http(f"{proxy}/healthz", proc=nginx, timeout=30)
        yield Cluster(
            proxy=proxy, web=[url for url, _proc in web], workers=workers, env=env, logs=logs, processes=processes
        )


def _forget_run(redis_url: str, prefix: str) -> None:
    """Delete the run's keys (its queue with the timers nobody will run, bindings, layer and cache keys).

    The machine's Redis is shared by every test run; without this each cluster leaves its queue behind.
    """
    import redis

    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass  # a Redis the test stopped (chaos) has nothing left to clean


def redis_url_for_cluster() -> str:
    """The run's Redis when it has one, else the machine's default Redis (keys are prefixed per cluster)."""
    return settings.REDIS_URL or "redis://127.0.0.1:6379/0"


def _redis_reachable(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@contextmanager
def running_cluster(tmp_path: Path, **extra_env: str) -> Iterator[Cluster]:
    """The cluster of a test: nginx and Redis required (skipped locally, failing in CI without them).

    ``extra_env`` reaches every process of the cluster (daphne and workers alike), e.g. a provider's address or
    ``PUBLIC_BASE_URL``; without it the processes get exactly what ``cluster`` always gave them.
    """
    from tests.conftest import redis_available, require_component

    require_component(nginx_path() is not None, "nginx (the reverse proxy of the scale-out test)")
    url = redis_url_for_cluster()
    require_component(redis_available() if settings.REDIS_URL else _redis_reachable(url), f"Redis at {url}")
    with cluster(tmp_path, redis_url=url, extra_env=extra_env or None) as started:
        yield started
