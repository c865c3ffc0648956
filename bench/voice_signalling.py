"""VS1 voice signalling benchmark (docs: ../../shared/QUALITY.md, results: ../docs/VOICE.md and PERFORMANCE.md).

VS1: signalling relay through Channels, p95 ≤ 20 ms per hop at CC-nominal;
call setup in two headless Chromium pages on loopback (accept → ICE
connected) p95 ≤ 1 s.

    .venv/bin/python bench/voice_signalling.py                  # SQLite + in-memory channel layer
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/parley REDIS_URL=redis://127.0.0.1:6379/7 \\
        .venv/bin/python bench/voice_signalling.py              # PostgreSQL + Redis channel layer

What it does:

1. creates its own test database and the CC-nominal set-up through the
   services (bench/realtime.py's ``build_parley``: 50 Ready agents with 3 live
   chats each), then one answered call per agent in its first chat
   (``call_start_outbound`` + ``call_answer``): 50 calls;
2. starts daphne on the benchmark's database and opens every voice socket:
   50 agents (session cookie) and 150 customers (``hello`` with the chat
   token; 100 of them have no call and only listen);
3. relay phase: both parties of every call send an ``ice`` frame (a valid
   host candidate carrying the sender's clock in ``t``) every ``--period``
   seconds with a random phase, for ``--duration`` seconds. A hop is one frame
   from one party's socket through the consumer (validation, authorisation
   from the socket's cache) and the channel layer to the other party's socket;
   its time is receive - send on this process's clock. The same generator
   then drives a bare ``websockets`` relay (pairs, no validation) for the
   ratio against a baseline of the same run;
4. call setup: a Chromium with fake media devices, an agent desktop page and a
   customer chat page (two contexts), a chat accepted by the agent; then
   ``--calls`` times: the agent calls, the customer clicks Accept, and the time
   from the click until both pages report ICE ``connected`` is taken; hang up.

Prints the figures and exits 1 when a VS1 goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

import _support
from _support import ms, percentile

CANDIDATE = "candidate:1 1 udp 2122260223 192.0.2.2 54321 typ host generation 0"
P95_HOP_GOAL = 0.020
P95_SETUP_GOAL = 1.0


# --- the bare baseline ----------------------------------------------------------------------------------------


async def serve_bare(port: int) -> None:
    """Pairs ``/a/<n>`` and ``/c/<n>``: a frame from one is sent to the other as is."""
    from websockets.asyncio.server import serve

    peers: dict[str, object] = {}

    async def handler(ws) -> None:
        path = ws.request.path
        peers[path] = ws
        other = ("/c/" if path.startswith("/a/") else "/a/") + path.split("/")[-1]
        async for message in ws:
            target = peers.get(other)
            if target is not None:
                await target.send(message)

    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None):
        await asyncio.Future()


# --- set-up ------------------------------------------------------------------------------------------------------


def build_calls(agents: int, chats_per_agent: int) -> dict:
    """CC-nominal chats, and one answered call per agent in its first chat."""
    from realtime import build_parley

    from channels_app.voice.services import call_answer, call_start_outbound
    from conversations.models import Conversation

    parley = build_parley(agents, chats_per_agent)
    calls = []
    for number in range(agents):
        index = number * chats_per_agent
        conversation = Conversation.objects.select_related("assigned_agent").get(uuid=parley["conversations"][index])
        call = call_start_outbound(conversation=conversation, agent_user=conversation.assigned_agent)
        call_answer(call_id=call.pk, role="customer")
        calls.append({"call": call.pk, "agent": number, "customer": index})
    parley["calls"] = calls
    return parley


# --- the load ----------------------------------------------------------------------------------------------------


class Relay:
    def __init__(self, name: str) -> None:
        self.name = name
        self.hops: list[float] = []
        self.errors: list[str] = []
        self.sent = 0

    async def read(self, ws) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") == "ice" and isinstance(frame.get("t"), float):
                self.hops.append(time.perf_counter() - frame["t"])
            elif frame.get("type") == "error":
                self.errors.append(frame.get("code", "?"))


async def drive(relay: Relay, pairs: list[tuple], *, period: float, duration: float, extra: list) -> None:
    """``pairs``: (call id, agent socket, customer socket). Every party sends every ``period`` s."""
    readers = [asyncio.ensure_future(relay.read(ws)) for pair in pairs for ws in pair[1:]]
    readers += [asyncio.ensure_future(relay.read(ws)) for ws in extra]
    rng = random.Random(1)
    stop_at = time.perf_counter() + duration

    async def party(call_id: int, ws) -> None:
        await asyncio.sleep(rng.random() * period)
        while time.perf_counter() < stop_at:
            frame = {
                "type": "ice",
                "call": call_id,
                "candidate": {"candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0},
                "t": time.perf_counter(),
            }
            await ws.send(json.dumps(frame))
            relay.sent += 1
            await asyncio.sleep(period)

    await asyncio.gather(*(party(pair[0], ws) for pair in pairs for ws in pair[1:]))
    await asyncio.sleep(2.0)
    for reader in readers:
        reader.cancel()


OPTIONS = {"compression": None, "ping_interval": None, "max_size": 2**22}


async def run_parley(port: int, parley: dict, *, period: float, duration: float) -> Relay:
    from websockets.asyncio.client import connect

    origin = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/ws/voice/"
    agents = []
    for cookie in parley["cookies"]:
        ws = await connect(url, origin=origin, additional_headers={"Cookie": cookie}, **OPTIONS)
        agents.append(ws)
    customers = []
    for token in parley["tokens"]:
        ws = await connect(url, origin=origin, **OPTIONS)
        await ws.send(json.dumps({"type": "hello", "token": token}))
        customers.append(ws)
    # Let every socket finish its hello/calls sync before measuring.
    for ws in agents + customers:
        while json.loads(await ws.recv())["type"] != "calls":
            pass
    relay = Relay("parley")
    pairs = [(c["call"], agents[c["agent"]], customers[c["customer"]]) for c in parley["calls"]]
    in_call = {id(ws) for pair in pairs for ws in pair[1:]}
    idle = [ws for ws in customers if id(ws) not in in_call]
    await drive(relay, pairs, period=period, duration=duration, extra=idle)
    for ws in agents + customers:
        await ws.close()
    return relay


async def run_bare(port: int, calls: int, *, period: float, duration: float) -> Relay:
    from websockets.asyncio.client import connect

    pairs = []
    for number in range(calls):
        agent = await connect(f"ws://127.0.0.1:{port}/a/{number}", **OPTIONS)
        customer = await connect(f"ws://127.0.0.1:{port}/c/{number}", **OPTIONS)
        pairs.append((number + 1, agent, customer))
    relay = Relay("bare")
    await drive(relay, pairs, period=period, duration=duration, extra=[])
    for _call, agent, customer in pairs:
        await agent.close()
        await customer.close()
    return relay


# --- call setup in Chromium -----------------------------------------------------------------------------------------


def tone_wav(path: Path) -> str:
    rate = 48000
    samples = (int(math.sin(2 * math.pi * 440 * i / rate) * 12000) for i in range(rate * 2))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return str(path)


def seed_browser_agent() -> None:
    from django.contrib.auth import get_user_model

    from agents.models import AgentState
    from agents.services import agent_profile_ensure, agent_state_set
    from conversations.models import Service

    service = Service.objects.create(
        name="Voice bench", slug="voice-bench", wrapup_seconds=0, offer_timeout_seconds=600
    )
    user = get_user_model().objects.create_user(username="vs-agent", password="vs-bench-pass", first_name="Vera")  # noqa: S106
    profile = agent_profile_ensure(user=user)
    profile.services.add(service)
    agent_state_set(agent=profile, state=AgentState.READY)


def ice_state(page) -> str:
    return page.evaluate("() => window.parleyVoice ? window.parleyVoice.iceState() : ''")


def call_setups(base: str, calls: int, run_dir: Path) -> list[float]:
    from playwright.sync_api import expect, sync_playwright

    chromium_path = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={tone_wav(run_dir / 'tone.wav')}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    setups = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=args)
        try:
            agent = browser.new_context().new_page()
            agent.goto(f"{base}/login/")
            agent.locator("#id_username").fill("vs-agent")
            agent.locator("#id_password").fill("vs-bench-pass")
            agent.locator(".login-card button[type='submit']").click()
            agent.wait_for_url(f"{base}/desktop/")
            expect(agent.locator("#connection-status")).to_have_attribute("data-connected", "true")
            customer = browser.new_context().new_page()
            customer.goto(f"{base}/chat/voice-bench/")
            customer.locator("#prechat-name").fill("Bench Caller")
            customer.locator("#prechat-question").fill("Call me please")
            customer.locator("#prechat-submit").click()
            agent.locator("#offers [data-offer-accept]").click()
            controls = agent.locator(".voice-controls")
            for _number in range(calls):
                controls.locator("[data-voice-action='call']:not([data-video])").click()
                accept = customer.locator("#voice-accept")
                expect(accept).to_be_visible()
                clicked = time.perf_counter()
                clicked_ms = customer.evaluate("() => Date.now()")
                accept.click()
                done = {"agent": None, "customer": None}
                while None in done.values() and time.perf_counter() - clicked < 15:
                    for name, page in (("agent", agent), ("customer", customer)):
                        if done[name] is None and ice_state(page) in ("connected", "completed"):
                            done[name] = time.perf_counter()
                    time.sleep(0.01)
                if None in done.values():
                    raise RuntimeError(f"call did not connect: {done}")
                setups.append(max(done.values()) - clicked)
                if os.environ.get("VS1_TRACE"):
                    phases = {
                        name: page.evaluate("() => window.parleyVoice.timings()")
                        for name, page in (("agent", agent), ("customer", customer))
                    }
                    print(
                        "    trace",
                        {k: {p: (v - clicked_ms if v else None) for p, v in t.items()} for k, t in phases.items()},
                    )
                    for name, page in (("agent", agent), ("customer", customer)):
                        marks = page.evaluate("() => window.ParleyVoiceRTC.marks()")
                        print("     ", name, [(m, t - clicked_ms) for m, t in marks if t >= clicked_ms - 2000])
                controls.locator("[data-voice-action='hangup']").click()
                expect(customer.locator("#voice-status")).to_have_text("The call has ended.")
                expect(controls.locator("[data-voice-action='call']:not([data-video])")).to_be_visible()
        finally:
            browser.close()
    return setups


# --- main ------------------------------------------------------------------------------------------------------------


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"n={len(values)} p50 {ms(percentile(values, 50))}  p95 {ms(percentile(values, 95))}  "
        f"p99 {ms(percentile(values, 99))}  max {ms(max(values))}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=50, help="agents, one call each (default 50)")
    parser.add_argument("--chats-per-agent", type=int, default=3, help="live chats per agent (default 3)")
    parser.add_argument("--period", type=float, default=1.0, help="seconds between one party's frames (default 1)")
    parser.add_argument("--duration", type=float, default=20.0, help="relay phase, s (default 20)")
    parser.add_argument("--calls", type=int, default=10, help="calls set up in Chromium (default 10, 0 to skip)")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        asyncio.run(serve_bare(args.serve_bare))
        return 0

    _support.setup_django("voice")
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment
    from realtime import start_daphne, stop, wait_for_port

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    _support.create_database()
    procs: list[subprocess.Popen] = []
    failures = []
    try:
        import daphne
        import websockets

        layer = "Redis" if settings.REDIS_URL else "in-memory"
        print(
            f"VS1 voice signalling · {time.strftime('%Y-%m-%d %H:%M')} · Python {platform.python_version()}, "
            f"daphne {daphne.__version__}, websockets {websockets.__version__}, {_support.database_version()}, "
            f"{layer} channel layer {_support.redis_version()}".rstrip()
        )
        started = time.perf_counter()
        parley = build_calls(args.agents, args.chats_per_agent)
        if args.calls:
            seed_browser_agent()
        print(
            f"  setup     {len(parley['tokens'])} chats, {len(parley['calls'])} answered calls "
            f"in {time.perf_counter() - started:.1f} s"
        )
        connection.close()
        run_dir = Path(settings.VAR_DIR)
        run_dir.mkdir(parents=True, exist_ok=True)

        bare_port = _support.free_port()
        with open(run_dir / "bare.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--serve-bare", str(bare_port)], stdout=log, stderr=subprocess.STDOUT
                )
            )
        wait_for_port(bare_port, procs[-1])
        bare = asyncio.run(run_bare(bare_port, args.agents, period=args.period, duration=args.duration))
        stop(procs[-1])

        port = _support.free_port()
        procs.append(start_daphne(port, run_dir / "daphne.log"))
        full = asyncio.run(run_parley(port, parley, period=args.period, duration=args.duration))
        print(
            f"  load      {args.agents} calls, 2 parties each sending one ice frame per {args.period:g} s "
            f"for {args.duration:g} s; {len(parley['tokens']) - args.agents} more customer sockets idle"
        )
        print(f"  bare      relay per hop   {summary(bare.hops)}")
        print(f"  parley    relay per hop   {summary(full.hops)}")
        lost = full.sent - len(full.hops)
        ratio = percentile(full.hops, 95) / percentile(bare.hops, 95) if bare.hops else float("nan")
        print(f"            p95 ÷ bare p95  {ratio:.1f} · frames sent {full.sent}, not received {lost}")
        if full.errors:
            failures.append(f"errors from the consumer: {sorted(set(full.errors))}")
        if lost:
            failures.append(f"{lost} signalling frames lost")
        if percentile(full.hops, 95) > P95_HOP_GOAL:
            failures.append(f"relay p95 {ms(percentile(full.hops, 95))} > {ms(P95_HOP_GOAL)}")

        if args.calls:
            setups = call_setups(f"http://127.0.0.1:{port}", args.calls, run_dir)
            print(f"  setup     accept → ICE connected (both pages)  {summary(setups)}")
            if percentile(setups, 95) > P95_SETUP_GOAL:
                failures.append(f"call setup p95 {ms(percentile(setups, 95))} > {ms(P95_SETUP_GOAL)}")
        stop(procs[-1])
        print(f"\n  load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        for proc in procs:
            stop(proc)
        connection.close()
        _support.destroy_database(old_name)
        teardown_test_environment()
        _support.cleanup_run("bench-voice-")

    if failures:
        print("\nVS1 MISSED:\n  " + "\n  ".join(failures))
        return 1
    print("\nVS1 met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
