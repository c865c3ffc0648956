"""Real components for the SMS reliability tests: a private Redis to stop and start, and a Celery worker
with embedded beat (so the outbox sweep runs) that can be SIGKILLed as a whole."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from django.conf import settings

from tests.live import BASE_DIR, BIN_DIR, free_port, subprocess_env

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class PrivateRedis:
    """Our own redis-server on a free port: the shared one on 6379 is never stopped."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=open(self.log_path, "ab"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping():
                    return
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@contextmanager
def private_redis(log_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(log_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def start_worker(log_path: Path, hostname: str, **env: str) -> subprocess.Popen:
    """A Celery worker with embedded beat, in its own session so killpg takes beat along."""
    schedule = log_path.with_suffix(".schedule")
    return subprocess.Popen(
        [
            str(BIN_DIR / "celery"),
            "-A",
            "config",
            "worker",
            "--beat",
            "--schedule",
            str(schedule),
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--hostname",
            hostname,
            "--queues",
            settings.CELERY_TASK_DEFAULT_QUEUE,
        ],
        cwd=BASE_DIR,
        env=subprocess_env(**env),
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_worker(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def stop_worker(proc: subprocess.Popen) -> None:
    kill_worker(proc, signal.SIGTERM)


def wait_until(predicate, *, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
