"""Where a chat message's server time goes: each step of the realtime path, in one process, no sockets.

A diagnostic beside ``realtime.py`` (RT1/RT2), not a goal of its own: it always exits 0. The end-to-end
benchmark's latencies move with the host's load and the load generator; this one times the database work
of each step alone, so a change to it can be judged on its own.

- Set-up as ``realtime.py`` (one agent with three routed and accepted chats), on SQLite or ``DATABASE_URL``.
- Steps, in order, ``--messages`` (300) times after 30 unmeasured rounds:
  1. *customer message*: what the customer's socket does for a ``message`` frame (store it, build the
     answer with its entry);
  2. *agent push*: what the agent's socket renders for that message's event (its list row and the new
     entry of the open conversation);
  3. *agent reply*: a reply sent over the agent's socket, with its id (``chat_agent_message``).
  Channel-layer events are collected, not sent (the layer is ``realtime.py``'s subject).
- Printed per step: p50 and p90 time, the SQL statements it ran (``BEGIN``/``COMMIT`` not counted), and
  p50 ÷ the p50 of a bare transaction (``INSERT`` + ``SELECT`` + commit) on the same database, same run.
- ``--profile`` runs each step under cProfile instead and prints its 25 most expensive functions
  (``--sort tottime`` by their own time).
- ``--garbage`` counts, per run of each step, the objects it left in reference cycles (freed only by the
  cycle collector), by type.
- ``--callgrind``, under ``valgrind --tool=callgrind --instr-atstart=no``, counts the instructions of the
  measured rounds only (repeatable to a fraction of a percent, whatever the host's load).

Runs in about 20 s (PostgreSQL a little longer).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _support

WARMUP = 30


def bare_transaction_ms(rounds: int) -> list[float]:
    from django.db import transaction

    from core.models import RelayedEvent

    times = []
    for number in range(rounds):
        started = time.perf_counter()
        with transaction.atomic():
            event = RelayedEvent.objects.create(group="bench-bare", payload={"n": number})
            RelayedEvent.objects.filter(pk=event.pk).values_list("pk", flat=True).first()
        times.append((time.perf_counter() - started) * 1000)
    return times


def callgrind_instrumentation(state: str) -> None:
    """Switch callgrind's counting on or off for this process; it takes effect while this one sleeps."""
    subprocess.Popen(["callgrind_control", "-i", state, str(os.getpid())], stdout=subprocess.DEVNULL)
    time.sleep(3)


def cyclic_garbage(steps, state: dict, warmup: int, rounds: int) -> int:
    """Per step: the objects left in reference cycles (freed only by the cycle collector), per run, by type.

    Every such object makes the collector run sooner and, surviving its young passes while the step is in
    flight, brings the next full pass (all of the process's objects, the event loop stopped) closer.
    """
    from tests.garbage import cyclic_garbage as left_for_the_collector

    for number in range(warmup):
        state["n"] = number
        for _name, step in steps:
            step()
    print("Cyclic garbage per run of each step (objects the cycle collector frees; a diagnostic)")
    for name, step in steps:

        def rounds_of(step=step) -> None:
            for number in range(rounds):
                state["n"] = warmup + number
                step()

        types = left_for_the_collector(rounds_of)
        common = ", ".join(f"{kind.rsplit('.', 1)[-1]} {count / rounds:.1f}" for kind, count in types.most_common(12))
        print(f"  {name:<18}{sum(types.values()) / rounds:8.1f} per run  ({common})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300, help="measured rounds (default 300)")
    parser.add_argument("--profile", action="store_true", help="cProfile each step instead of timing it")
    parser.add_argument(
        "--sort", default="cumulative", help="with --profile: pstats order, e.g. tottime (default cumulative)"
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="under valgrind --tool=callgrind --instr-atstart=no: count instructions of the measured rounds only",
    )
    parser.add_argument(
        "--garbage",
        action="store_true",
        help="count, per step, the objects only the cycle collector frees (reference cycles), by type",
    )
    args = parser.parse_args()

    _support.setup_django("message-path")
    old_name = _support.create_database()
    try:
        return run(args)
    finally:
        _support.destroy_database(old_name)
        _support.cleanup_run("bench-message-path-")


def run(args) -> int:
    from django.db import connection
    from django.utils import translation
    from realtime import build_parley

    import core.realtime
    from agents.consumers import AgentConsumer, Pending
    from channels_app.webchat import selectors, services
    from conversations.models import Conversation
    from conversations.selectors import mark_without_files

    class Collector:
        """Stands in for the web process's publisher: events are counted, not sent."""

        events = 0

        def accepting(self) -> bool:
            return True

        def submit(self, group: str, event: dict) -> None:
            Collector.events += 1

    core.realtime._publisher = Collector()
    data = build_parley(1, 3)
    session = services.session_from_token(data["tokens"][0])
    conversation_uuid = data["conversations"][0]
    conversation = Conversation.objects.select_related("assigned_agent").get(uuid=conversation_uuid)
    agent_user = conversation.assigned_agent
    # The agent's socket as it is after connecting with this conversation open (no websocket: its render only).
    consumer = AgentConsumer.__new__(AgentConsumer)
    consumer.scope = {"user": agent_user}
    consumer.language = "en"
    consumer.open_conversation = conversation_uuid
    consumer.pending_lock = threading.Lock()
    render_pending = AgentConsumer.__dict__["render_pending"].func

    state = {"entry": 0, "n": 0}

    def customer_message() -> None:
        with translation.override("en"):
            message = services.chat_customer_message(session=session, text=f"Customer message {state['n']}")
            mark_without_files(message)
            selectors.customer_entry_json(entry=message.entry, session=session)
        state["entry"] = message.entry.pk

    def agent_push() -> None:
        consumer.pending = Pending(open_conversation=conversation_uuid)
        consumer.pending.rows.add(conversation_uuid)
        consumer.pending.entries.add(state["entry"])
        render_pending(consumer)

    def agent_reply() -> None:
        with translation.override("en"):
            services.chat_agent_message(
                conversation=conversation,
                agent_user=agent_user,
                text=f"Agent reply {state['n']}",
                client_key=f"reply-{state['n']}",
            )

    steps: list[tuple[str, Callable[[], None]]] = [
        ("customer message", customer_message),
        ("agent push", agent_push),
        ("agent reply", agent_reply),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in steps}
    statements: dict[str, list[int]] = {name: [] for name, _ in steps}
    profiles = {name: cProfile.Profile() for name, _ in steps}
    counted = [0]

    def count(execute, sql, params, many, context):
        counted[0] += 1
        return execute(sql, params, many, context)

    if args.garbage:
        return cyclic_garbage(steps, state, WARMUP, args.messages)
    bare = bare_transaction_ms(WARMUP + args.messages)[WARMUP:]
    with connection.execute_wrapper(count):
        for number in range(WARMUP + args.messages):
            if args.callgrind and number == WARMUP:
                callgrind_instrumentation("on")
            state["n"] = number
            for name, step in steps:
                counted[0] = 0
                if args.profile and number >= WARMUP:
                    profiles[name].runcall(step)
                    continue
                started = time.perf_counter()
                step()
                elapsed = (time.perf_counter() - started) * 1000
                if number >= WARMUP:
                    times[name].append(elapsed)
                    statements[name].append(counted[0])
    if args.callgrind:
        callgrind_instrumentation("off")

    print("Chat message path, step by step (a diagnostic; see bench/README.md)")
    print(f"  database  {_support.database_version()}, {connection.settings_dict.get('OPTIONS') or {}}")
    print(f"  host      speed {_support.host_speed_ms():.0f} ms (2 M-step Python loop; lower is faster)")
    round_trip, commit = _support.database_latency_ms()
    print(f"  latency   round trip (SELECT 1) p50 {round_trip:.2f} ms, one-row insert + commit p50 {commit:.2f} ms")
    print(f"  rounds    {args.messages} after {WARMUP} unmeasured; events collected {Collector.events}")
    if args.profile:
        for name, _ in steps:
            out = io.StringIO()
            pstats.Stats(profiles[name], stream=out).sort_stats(args.sort).print_stats(25)
            print(f"\n== {name}\n{out.getvalue()}")
        return 0
    bare_p50 = statistics.median(bare)
    print(f"\n  {'step':<18}{'p50':>10}{'p90':>10}{'statements':>12}{'p50 / bare tx':>16}")
    print(f"  {'bare transaction':<18}{bare_p50:>8.2f}ms{_support.percentile(bare, 90):>8.2f}ms{2:>12}{1:>16.1f}")
    total = 0.0
    for name, _ in steps:
        p50 = statistics.median(times[name])
        total += p50
        print(
            f"  {name:<18}{p50:>8.2f}ms{_support.percentile(times[name], 90):>8.2f}ms"
            f"{statistics.median(statements[name]):>12.0f}{p50 / bare_p50:>16.1f}"
        )
    print(f"  {'all three':<18}{total:>8.2f}ms{'':>10}{'':>12}{total / bare_p50:>16.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
