"""OB1/OB2 for email (docs: ../../shared/QUALITY.md, results: ../docs/EMAIL.md).

OB1: emails sent while the broker (Redis) is down all reach the SMTP server exactly once within 60 s of its
restart. OB2: a worker killed mid-send (SIGKILL while the SMTP server holds the DATA reply) — every email is
still delivered, and the repeat carries the same Message-ID, so the receiver de-duplicates; an email that keeps
failing (451 forever) stops after OUTBOX_MAX_ATTEMPTS tries and shows as failed.

    .venv/bin/python bench/email_outbox_chaos.py                  # SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/parley .venv/bin/python bench/email_outbox_chaos.py

It starts its OWN redis-server on a free port (never the machine's shared one), a real SMTP server (aiosmtpd)
and real Celery workers (subprocesses), on a test database of its own. The "beat" is this script calling
``outbox_sweep`` once a second. Baseline in the same run: the same number of mails handed straight to the SMTP
server with Django's backend (no outbox, no broker). Exits non-zero when a goal is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _support

BIN = Path(sys.executable).parent


def start_redis(port: int, folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port, socket_connect_timeout=0.5).ping():
                return proc
        except redis.RedisError:
            time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class Recorder:
    """aiosmtpd handler; ``hold`` seconds in DATA for the first mail lets a worker be killed mid-send."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []  # (Message-ID, recipient)
        self.hold_first = 0.0
        self.in_data = threading.Event()
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        import asyncio
        from email import policy
        from email.parser import BytesParser

        message = BytesParser(policy=policy.default).parsebytes(envelope.original_content)
        if self.hold_first:
            hold, self.hold_first = self.hold_first, 0.0
            self.in_data.set()
            await asyncio.sleep(hold)
        for rcpt in envelope.rcpt_tos:
            self.received.append((str(message["Message-ID"]), rcpt))
        return "250 accepted"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=20)
    parser.add_argument("--deadline", type=float, default=60.0)
    args = parser.parse_args()
    if not shutil.which("redis-server"):
        print("redis-server is not installed")
        return 2

    folder = Path(tempfile.mkdtemp(prefix="parley-email-chaos-"))
    redis_port, smtp_port = _support.free_port(), _support.free_port()
    os.environ.update(
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        EMAIL_URL=f"smtp://127.0.0.1:{smtp_port}",
        OUTBOX_BACKOFF_SECONDS="0.5",
        OUTBOX_BACKOFF_MAX_SECONDS="1",
        OUTBOX_MAX_ATTEMPTS="4",
        OUTBOX_LEASE_SECONDS="6",
        OUTBOX_SWEEP_GRACE_SECONDS="1",
        EMAIL_SEND_TIMEOUT="5",
    )
    redis_proc = start_redis(redis_port, folder)
    _support.setup_django("email-chaos")

    from aiosmtpd.controller import Controller
    from django.conf import settings
    from django.core.mail import EmailMessage, get_connection
    from django.db import connections
    from django.test.utils import setup_test_environment

    setup_test_environment()
    old_name = _support.create_database()
    recorder = Recorder()
    smtp = Controller(recorder, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    workers: list[subprocess.Popen] = []
    failures: list[str] = []
    try:
        from agents.models import AgentState
        from channels_app.email.services import email_send
        from contacts.models import ContactPoint
        from conversations.models import Message, Outbox
        from conversations.outbox import outbox_sweep
        from tests.factories import AgentFactory, ContactPointFactory, ConversationFactory, ServiceFactory

        env = dict(os.environ, DATABASE_URL=_support.database_url(), DJANGO_SETTINGS_MODULE="config.settings_test")

        def worker(name: str) -> subprocess.Popen:
            log = open(folder / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
            proc = subprocess.Popen(
                [
                    str(BIN / "celery"),
                    "-A",
                    "config",
                    "worker",
                    "--pool",
                    "solo",
                    "--loglevel",
                    "INFO",
                    "--hostname",
                    f"{name}@bench",
                    "--queues",
                    settings.CELERY_TASK_DEFAULT_QUEUE,
                ],
                cwd=_support.ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            workers.append(proc)
            return proc

        service = ServiceFactory()
        agent = AgentFactory(state=AgentState.READY)
        conversations = []
        for index in range(args.emails + 2):
            point = ContactPointFactory(kind=ContactPoint.Kind.EMAIL, value=f"customer{index}@example.com")
            conversations.append(ConversationFactory(contact=point.contact, service=service, assigned_agent=agent.user))

        # Baseline: the same mails straight to the SMTP server.
        started = time.perf_counter()
        with get_connection() as connection:
            for index in range(args.emails):
                EmailMessage("baseline", "x", to=[f"base{index}@example.com"], connection=connection).send()
        baseline = time.perf_counter() - started
        recorder.received.clear()

        def send(conversation, text: str) -> Message:
            return email_send(
                conversation=conversation,
                agent_user=agent.user,
                to=conversation.contact.points.get().value,
                subject="Booking",
                text=text,
            )

        def wait_sent(ids: list[int], deadline: float) -> float:
            started = time.monotonic()
            while time.monotonic() - started < deadline:
                outbox_sweep()
                if Outbox.objects.filter(message_id__in=ids, state=Outbox.State.SENT).count() == len(ids):
                    return time.monotonic() - started
                time.sleep(1)
            return float("inf")

        # --- OB1: broker down while the agent sends --------------------------------------------------------
        stop(redis_proc)
        ob1 = [send(conversations[i], f"Mail {i} while Redis is down").pk for i in range(args.emails)]
        redis_proc = start_redis(redis_port, folder)
        worker("w1")
        ob1_seconds = wait_sent(ob1, args.deadline)
        time.sleep(1)
        ob1_ids = set(Message.objects.filter(pk__in=ob1).values_list("email__rfc_message_id", flat=True))
        got = [mid for mid, _rcpt in recorder.received if mid in ob1_ids]
        print(
            f"OB1: {len(ob1)} emails sent with the broker down; all handed over {ob1_seconds:.1f} s after restart; "
            f"received {len(got)}, distinct {len(set(got))}"
        )
        if ob1_seconds > args.deadline or len(got) != len(ob1) or set(got) != ob1_ids:
            failures.append("OB1")

        # --- OB2: a worker killed while the SMTP server holds the DATA reply --------------------------------
        recorder.hold_first = 8.0
        target = send(conversations[args.emails], "Mail whose worker dies")
        if not recorder.in_data.wait(20):
            failures.append("OB2 (the mail never reached DATA)")
        for proc in workers:
            stop(proc, signal.SIGKILL)
        worker("w2")
        ob2_seconds = wait_sent([target.pk], args.deadline)
        time.sleep(1)
        mid = Message.objects.get(pk=target.pk).email.rfc_message_id
        copies = [m for m, _rcpt in recorder.received if m == mid]
        print(
            f"OB2: worker SIGKILLed mid-send; delivered {ob2_seconds:.1f} s later; copies at the server {len(copies)}, "
            f"all with Message-ID {mid} (receivers de-duplicate)"
        )
        if ob2_seconds > args.deadline or not copies or len(set(copies)) != 1 or len(copies) > 2:
            failures.append("OB2 delivery")

        # --- OB2: a mail that keeps failing stops after the cap and shows as failed --------------------------
        bad = conversations[args.emails + 1]
        recorder.refuse[bad.contact.points.get().value] = "451 4.3.0 Try again later"
        failing = send(bad, "Mail to a server that always says later")
        started = time.monotonic()
        while time.monotonic() - started < args.deadline:
            outbox_sweep()
            failing.refresh_from_db()
            if failing.delivery_status == Message.Status.FAILED:
                break
            time.sleep(1)
        attempts = Outbox.objects.get(message=failing).attempts
        print(
            f"OB2: always-451 mail: status {failing.delivery_status} after {attempts} attempts "
            f"(cap {settings.OUTBOX_MAX_ATTEMPTS}): {failing.status_reason}"
        )
        if failing.delivery_status != Message.Status.FAILED or attempts > settings.OUTBOX_MAX_ATTEMPTS:
            failures.append("OB2 cap")

        print(
            f"baseline: {args.emails} mails straight to SMTP in {baseline:.2f} s; "
            f"OB1 recovery {ob1_seconds:.1f} s = {ob1_seconds / max(baseline, 1e-6):.0f}x the baseline send time"
        )
    finally:
        for proc in workers:
            stop(proc, signal.SIGKILL)
        smtp.stop()
        connections.close_all()
        _support.destroy_database(old_name)
        _support.cleanup_run("bench-email-chaos")
        stop(redis_proc)
        shutil.rmtree(folder, ignore_errors=True)
    print("FAILED: " + ", ".join(failures) if failures else "all goals met")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
