"""OB1 and OB2: outbound messages survive a dead broker and a killed worker, exactly once.

OB1: the broker (a private redis-server of this run, never the shared one) is stopped; ``--sms`` (100) SMS
are sent through the real send service (message + outbox row in one transaction; the publish fails fast and
is left to the sweep); the broker is started again; a real Celery worker with embedded beat (the outbox
sweep every second) delivers. Gated: every message reaches the provider double exactly once, within 60 s
of the restart.

OB2: the provider answers slowly; the worker is SIGKILLed (with its beat) while a request is in flight; a
new worker takes over once the claim's lease runs out and re-sends the interrupted message with the same
idempotency key. Gated: every message reaches the provider exactly once (the double honours the key), and
a message the provider always refuses with 5xx stops after OUTBOX_MAX_ATTEMPTS tries and shows as failed.

Media are plugs (``MEDIA``): each sets up its provider double and its configuration, sends through its
real send service and reports how often each message reached the provider. SMS uses the local
Twilio-speaking server of the test suite with the real ``twilio`` client; an email plug can be added
beside it (``--media sms,email``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import _support

# The broker must be known before Django reads its settings: a private Redis on a free port.
REDIS_PORT = _support.free_port()
os.environ["REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
# The outage is the point: its "broker unavailable" warnings would bury the figures.
os.environ.setdefault("LOG_LEVEL", "ERROR")
_support.setup_django("outbox-chaos")

import django  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment, teardown_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

if str(_support.ROOT) not in sys.path:
    sys.path.insert(0, str(_support.ROOT))

from tests.sms.live import PrivateRedis, kill_worker, start_worker, stop_worker, wait_until  # noqa: E402

GOAL_SECONDS = 60.0
WORKER_ENV = {
    "OUTBOX_SWEEP_SECONDS": "1",
    "OUTBOX_SWEEP_GRACE_SECONDS": "1",
    "OUTBOX_LEASE_SECONDS": "4",
    "OUTBOX_BACKOFF_SECONDS": "0.2",
    "OUTBOX_BACKOFF_MAX_SECONDS": "1",
    "OUTBOX_MAX_ATTEMPTS": "3",
    "ROUTING_SWEEP_SECONDS": "60",
    "LOG_LEVEL": "WARNING",
}


class SmsPlug:
    """SMS through the real twilio client to the local Twilio-speaking server."""

    name = "sms"

    def setup(self) -> None:
        from agents.models import AgentProfile, AgentState
        from channels_app.sms.models import SmsAccount, SmsNumber
        from contacts.models import ContactPoint
        from contacts.services import contact_identify
        from conversations.models import Direction, Interaction, Medium, Service
        from conversations.services import conversation_open, interaction_start
        from tests.sms.twilio_server import FakeTwilio

        self.provider = FakeTwilio(account_sid="AC" + "c" * 32, auth_token="bench-token").start()  # noqa: S106
        service = Service.objects.create(name="Outbox bench", slug="outbox-bench")
        account = SmsAccount.objects.create(
            name="Bench",
            account_sid=self.provider.account_sid,
            auth_token="bench-token",  # noqa: S106 (the provider double's)
            api_base_url=self.provider.base_url,
        )
        SmsNumber.objects.create(account=account, phone_number="+4930888000", service=service)
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create(username=f"bench-{uuid.uuid4().hex[:6]}")
        AgentProfile.objects.create(user=user, state=AgentState.BUSY)
        contact, _ = contact_identify(kind=ContactPoint.Kind.PHONE, value="+491701230000")
        conversation, _ = conversation_open(contact=contact, service=service, agent=user)
        interaction_start(
            conversation=conversation,
            medium=Medium.CHAT,
            direction=Direction.INBOUND,
            agent=user,
            state=Interaction.State.ACTIVE,
        )
        self.user, self.conversation = user, conversation

    def send(self, text: str):
        from channels_app.sms.services import sms_send

        return sms_send(conversation=self.conversation, agent_user=self.user, text=text)

    def reached(self) -> Counter:
        return self.provider.bodies()

    def requests_for(self, key: str) -> int:
        return self.provider.requests[key]

    def slow(self, seconds: float) -> None:
        self.provider.delay = seconds

    def refuse_always(self, key: str) -> None:
        self.provider.always_fail_keys.add(key)

    def close(self) -> None:
        self.provider.stop()


MEDIA = {"sms": SmsPlug}


def outbox_pending() -> int:
    from conversations.models import Outbox

    return Outbox.objects.filter(state__in=(Outbox.State.PENDING, Outbox.State.SENDING)).count()


def ob1(plugs: list, counts: dict[str, int], broker: PrivateRedis, run_dir: Path) -> list[str]:
    failures = []
    broker.stop()
    sent: dict[str, list[str]] = {}
    began = time.monotonic()
    for plug in plugs:
        sent[plug.name] = [f"OB1 {plug.name} {i}" for i in range(counts[plug.name])]
        for text in sent[plug.name]:
            plug.send(text)
    took = time.monotonic() - began
    total = sum(len(texts) for texts in sent.values())
    print(f"\nOB1: {total} messages sent with the broker down in {took:.2f} s ({took / total * 1000:.1f} ms each)")
    worker = start_worker(run_dir / "ob1-worker.log", f"ob1-{uuid.uuid4().hex[:6]}@localhost", **WORKER_ENV)
    try:
        time.sleep(1)
        broker.start()
        restarted = time.monotonic()
        done = wait_until(
            lambda: all(sum(plug.reached().values()) >= len(sent[plug.name]) for plug in plugs), timeout=GOAL_SECONDS
        )
        elapsed = time.monotonic() - restarted
    finally:
        stop_worker(worker)
    for plug in plugs:
        reached = plug.reached()
        once = sum(1 for text in sent[plug.name] if reached.get(text) == 1)
        print(f"  {plug.name:<6} {once}/{len(sent[plug.name])} reached the provider exactly once")
        if once != len(sent[plug.name]) or len(reached) != len(sent[plug.name]):
            failures.append(
                f"OB1 {plug.name}: {once} of {len(sent[plug.name])} exactly once, provider saw {dict(reached)}"
            )
    print(f"  broker restart -> all delivered: {elapsed:.2f} s (goal ≤ {GOAL_SECONDS:.0f} s)")
    if not done:
        failures.append(f"OB1: not all delivered within {GOAL_SECONDS:.0f} s of the broker restart")
    return failures


def ob2(plugs: list, run_dir: Path) -> list[str]:
    from conversations.models import Message, Outbox

    failures = []
    for plug in plugs:
        messages = [plug.send(f"OB2 {plug.name} {i}") for i in range(5)]
        refused = plug.send(f"OB2 {plug.name} refused")
        refused_key = str(Outbox.objects.get(message=refused).idempotency_key)
        plug.refuse_always(refused_key)
        before = Counter(plug.reached())
        plug.slow(4)
        first = start_worker(run_dir / "ob2-worker-1.log", f"ob2a-{uuid.uuid4().hex[:6]}@localhost", **WORKER_ENV)
        try:
            in_flight = wait_until(lambda: outbox_in_flight() >= 1, timeout=40)
            time.sleep(0.5)  # the request is at the provider now
        finally:
            kill_worker(first)
        interrupted = list(Outbox.objects.filter(state=Outbox.State.SENDING).values_list("idempotency_key", flat=True))
        plug.slow(0)
        started = time.monotonic()
        second = start_worker(run_dir / "ob2-worker-2.log", f"ob2b-{uuid.uuid4().hex[:6]}@localhost", **WORKER_ENV)
        try:
            drained = wait_until(lambda: outbox_pending() == 0, timeout=GOAL_SECONDS)
        finally:
            stop_worker(second)
        elapsed = time.monotonic() - started
        reached = plug.reached() - before
        once = sum(1 for m in messages if reached.get(m.body) == 1)
        refused.refresh_from_db()
        tries = plug.requests_for(refused_key)
        print(
            f"\nOB2 {plug.name}: worker SIGKILLed mid-request (in flight: {bool(in_flight)}, "
            f"interrupted claims: {len(interrupted)})\n"
            f"  {once}/{len(messages)} reached the provider exactly once; "
            f"interrupted message requested {plug.requests_for(str(interrupted[0])) if interrupted else 0} times "
            f"with one key\n"
            f"  always-refused message: {tries} tries, status {refused.delivery_status} ({refused.status_reason})\n"
            f"  new worker drained the outbox in {elapsed:.2f} s"
        )
        if not interrupted:
            failures.append(f"OB2 {plug.name}: the kill did not land mid-send")
        if once != len(messages) or not drained:
            failures.append(f"OB2 {plug.name}: {once} of {len(messages)} exactly once, drained={drained}")
        if refused.delivery_status != Message.Status.FAILED or tries != int(WORKER_ENV["OUTBOX_MAX_ATTEMPTS"]):
            failures.append(f"OB2 {plug.name}: refused message {refused.delivery_status} after {tries} tries")
    return failures


def outbox_in_flight() -> int:
    from conversations.models import Outbox

    return Outbox.objects.filter(state=Outbox.State.SENDING).count()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", default="sms", help=f"comma-separated plugs of {sorted(MEDIA)} (default sms)")
    parser.add_argument("--sms", type=int, default=100, help="SMS sent during the outage (default 100)")
    parser.add_argument("--email", type=int, default=20, help="emails sent during the outage (default 20)")
    args = parser.parse_args()
    names = [name.strip() for name in args.media.split(",") if name.strip()]
    unknown = [name for name in names if name not in MEDIA]
    if unknown:
        parser.error(f"no plug for {unknown}; available: {sorted(MEDIA)}")

    broker = PrivateRedis(Path(settings.VAR_DIR) / "redis.log")
    broker.port, broker.url = REDIS_PORT, os.environ["REDIS_URL"]
    Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
    broker.start()
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    _support.create_database()
    failures: list[str] = []
    plugs = []
    try:
        import celery

        print("OB1/OB2 outbox chaos benchmark")
        print(f"  date      {timezone.now():%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs")
        print(
            f"  versions  Python {platform.python_version()}, Django {django.get_version()}, "
            f"Celery {celery.__version__}, {_support.database_version()}, {_support.redis_version()} (private)"
        )
        print(f"  worker    solo pool + embedded beat, {WORKER_ENV}")
        for name in names:
            plug = MEDIA[name]()
            plug.setup()
            plugs.append(plug)
        connection.close()
        counts = {"sms": args.sms, "email": args.email}
        failures += ob1(plugs, counts, broker, Path(settings.VAR_DIR))
        failures += ob2(plugs, Path(settings.VAR_DIR))
    finally:
        for plug in plugs:
            plug.close()
        connection.close()
        _support.destroy_database(old_name)
        teardown_test_environment()
        if broker.proc is None:
            broker.start()  # cleanup_run empties this run's keys
        _support.cleanup_run("bench-outbox-chaos-")
        broker.stop()

    if failures:
        print("\nOB1/OB2 MISSED:\n  " + "\n  ".join(failures))
        return 1
    print("\nOB1/OB2 met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
