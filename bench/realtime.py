"""RT1/RT2 realtime benchmark (docs: ../../shared/QUALITY.md, results: ../docs/PERFORMANCE.md).

RT1: messages/s delivered by the full path (customer socket → service →
database → channel layer → agent socket) ÷ messages/s of a bare `websockets`
server with the same pairing, same run, same load generator. Floor 0.02,
target 0.05.
RT2: delivery latency at CC-nominal (50 agents with 3 live chats each: 150
customer + 50 agent sockets, every party sending one message per 10 s), send →
every recipient received, including the database commit: p50 ≤ 10 ms, p99 ≤
50 ms, and p50 ÷ the bare server's p50. Zero messages lost: the database and
every client agree at the end.

    .venv/bin/python bench/realtime.py                 # SQLite + in-memory channel layer
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/parley REDIS_URL=redis://127.0.0.1:6379/2 \\
        .venv/bin/python bench/realtime.py             # PostgreSQL + Redis channel layer

What it does:

1. creates its own test database and, through the services (no HTTP), a
   service, the agents (Ready, capacity 100 %, chat share 25 %) and their chats
   (``chat_start``, routed on commit, accepted with ``offer_accept``), the
   customers' session tokens and the agents' session and CSRF cookies; then
   seeds a history of ``--history`` messages in closed conversations and, on
   PostgreSQL, runs ``ANALYZE``;
2. starts the bare server (this script with ``--serve-bare``, a subprocess):
   a customer's message is echoed to the customer and relayed to its agent, an
   agent's message (sent over the agent's socket: the bare server speaks no
   HTTP) is relayed to the customer. The load generator (asyncio and
   the `websockets` client, in this process) opens every socket, runs the
   nominal phase (open loop, fixed schedule, random phase per party) and the
   saturation phase (customers only, each with at most ``--window`` messages
   not yet shown to its agent), then waits for the stragglers;
3. starts daphne (``config.asgi:application``, a subprocess on a free port,
   ``config.settings_test`` on the benchmark's database; with ``REDIS_URL`` the
   channel layer is Redis; each process pinned to a core of its own with
   ``WEB_CPUS`` unless ``--no-pin``; persistent connections asked for with
   ``DATABASE_CONN_MAX_AGE`` or ``?conn_max_age=`` apply to it too) and runs the
   same generator against Parley's
   sockets: customers on ``/ws/chat/`` (``resume`` with their token, then
   ``message`` frames), agents on ``/ws/agent/`` (session cookie; they show
   their first chat, as a desktop tab does with ``resync``) and sending their
   replies as the desktop does, over their socket (a ``send`` frame with an id,
   answered ``sent``); with ``--agent-http`` by HTTP POST to the composer
   (``/desktop/c/<uuid>/send/``, CSRF header, htmx), the desktop's way when its
   socket is down;
4. compares what every client received with the Message rows in the database.

Every message's text starts with a unique id (``rtc<chat>n<seq>`` for a
customer's, ``rta<agent>n<seq>`` for an agent's); the generator keeps each
send time (one process, one clock) and takes the receive time of the frame in
which a recipient first shows that id: the customer's echo and the agent's
HTML for a customer message, the customer's ``entries`` frame for an agent's.
A message's latency is the time until its last recipient has it. The agent
desktop shows the conversation it has open as timeline entries and every
other one as a row of the Active Conversations List whose preview is the
latest message: a preview replaced by a newer message (of either side) before
it was pushed counts as shown when the newer one reached the agent (the rows
are rendered from the database, so the newer preview means the list is past
it; "superseded" is printed). The saturation phase counts the same way.

It prints its figures with the ratios and exits 1 when RT1's floor, an RT2
goal or "zero lost" is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import io
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import _support
from _support import ms, percentile

RT1_FLOOR = 0.02
RT1_TARGET = 0.05
RT2_P50 = 0.010
RT2_P99 = 0.050

MARK = re.compile(r"\brt([ca])(\d+)n(\d+)\b")
# A customer told "busy" (the server sheds load) sends again after this long, as a person would.
BUSY_RETRY_SECONDS = 1.0
# An agent's reply id on Parley's socket: the message key with this prefix (ids are 8 to 64 characters).
CLIENT_ID_PREFIX = "bench-"
CUSTOMER_TEXT = "Hello, my parcel has not arrived yet. Could you check where it is, please?"
AGENT_TEXT = "Thank you for waiting. I am looking at your order right now, one moment please."
BIN_DIR = Path(sys.executable).parent


# --- the bare baseline: a tiny websockets relay with the same pairing ---------------------------------------


async def serve_bare(port: int, chats_per_agent: int) -> None:
    """Customer ``i`` ↔ agent ``i // chats_per_agent``: the same frames as Parley's, nothing else."""
    from websockets.asyncio.server import serve

    customers: dict[int, object] = {}
    agents: dict[int, object] = {}
    entry_ids = iter(range(1, 1 << 62))

    async def customer(ws) -> None:
        chat = None
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") == "resume":
                chat = int(frame["token"].rpartition("-")[2])
                customers[chat] = ws
                await ws.send(json.dumps({"type": "status", "state": "active"}))
                await ws.send(json.dumps({"type": "entries", "entries": []}))
            elif frame.get("type") == "message" and chat is not None:
                entry = {"id": next(entry_ids), "kind": "message", "author": "customer", "text": frame["text"]}
                await ws.send(json.dumps({"type": "entries", "entries": [{**entry, "client_id": frame["client_id"]}]}))
                agent = agents.get(chat // chats_per_agent)
                if agent is not None:
                    await agent.send(f'<li id="entry-{entry["id"]}"><p>{html.escape(entry["text"])}</p></li>')

    async def agent(ws) -> None:
        cookie = ws.request.headers.get("Cookie", "")
        number = int(re.search(r"sessionid=bare-(\d+)", cookie).group(1))
        agents[number] = ws
        await ws.send('<div id="overview"></div>')
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("action") == "send":
                entry = {"id": next(entry_ids), "kind": "message", "author": "agent", "text": frame["text"]}
                target = customers.get(int(frame["conversation"]))
                if target is not None:
                    await target.send(json.dumps({"type": "entries", "entries": [entry]}))
            else:
                await ws.send('<div id="resync"></div>')

    async def handler(ws) -> None:
        await (agent if ws.request.path.startswith("/ws/agent/") else customer)(ws)

    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None, max_size=2**20):
        await asyncio.Future()


# --- the load generator -------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    chats_per_agent: int
    tokens: list[str]  # per chat: the customer's resume token
    conversations: list[str]  # per chat: the conversation as the agent names it
    cookies: list[str]  # per agent: Cookie header
    csrf: list[str]  # per agent: X-CSRFToken (Parley)
    # How agents send: "socket" (Parley's desktop: a "send" frame with an id, answered "sent"), "http" (the
    # composer's POST, as without the socket), "bare" (a frame the bare server relays, no answer).
    agent_send: str
    # Several server processes (Parley with Redis): sockets are spread over them as a proxy would, so an
    # agent and its customers are usually on different processes.
    ports: list[int] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def agent_port(self, number: int) -> int:
        return self.ports[(number + 1) % len(self.ports)] if self.ports else self.port

    def customer_port(self, chat: int) -> int:
        return self.ports[chat % len(self.ports)] if self.ports else self.port


@dataclass
class Sent:
    key: str
    kind: str  # "c": customer → agent, "a": agent → customer
    chat: int
    seq: int
    phase: str
    sent_at: float = 0.0
    error: str | None = None
    acked_at: float | None = None  # the sender's own confirmation: echo on its socket / HTTP response
    agent_at: float | None = None  # first shown on the agent's socket
    customer_at: float | None = None  # an agent's message on the customer's socket


@dataclass
class Load:
    target: Target
    sent: dict[str, Sent] = field(default_factory=dict)
    customers: list = field(default_factory=list)
    agents: list = field(default_factory=list)
    readers: list = field(default_factory=list)
    background: set = field(default_factory=set)
    misrouted: list[str] = field(default_factory=list)
    unexpected_errors: list[str] = field(default_factory=list)
    agent_frames: int = 0
    agent_bytes: int = 0
    last_frame_at: float = 0.0
    # overload.py: each socket's reader task by ("agent" | "customer", number), and the parties it stalled.
    reader_of: dict = field(default_factory=dict)
    skip_agents: set = field(default_factory=set)
    skip_customers: set = field(default_factory=set)

    def __post_init__(self) -> None:
        chats = len(self.target.tokens)
        self.customer_seq = [0] * chats
        self.agent_seq = [0] * (chats // self.target.chats_per_agent)
        self.shown_upto = [0] * chats  # highest customer seq shown at the chat's agent
        self.outstanding: list[dict[int, str]] = [{} for _ in range(chats)]  # seq → key, not yet shown to the agent
        self.released = [asyncio.Event() for _ in range(chats)]
        self.shown: list[tuple[float, int]] = []  # (time, customer messages newly shown at an agent)
        self.status: list[str | None] = [None] * chats
        self.customer_ready = [asyncio.Event() for _ in range(chats)]
        self.agent_ready = [asyncio.Event() for _ in self.agent_seq]

    # Receiving ----------------------------------------------------------------------------------------------

    async def read_customer(self, chat: int, ws) -> None:
        backlog = False
        async for raw in ws:
            now = self.last_frame_at = time.perf_counter()
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "entries":
                backlog = True
                for entry in frame["entries"]:
                    found = MARK.search(entry.get("text") or "")
                    sent = self.sent.get(found.group(0)) if found else None
                    if sent is None:
                        continue
                    if sent.chat != chat:
                        self.misrouted.append(f"{sent.key} reached customer {chat}")
                    elif sent.kind == "c":
                        sent.acked_at = sent.acked_at or now
                    else:
                        sent.customer_at = sent.customer_at or now
            elif kind == "error":
                sent = self.sent.get(frame.get("client_id") or "")
                if sent is None:
                    self.unexpected_errors.append(f"customer {chat}: {frame}")
                else:
                    sent.error = f"{frame.get('code')}: {frame.get('message')}"
                    self.outstanding[chat].pop(sent.seq, None)
                    self.released[chat].set()
            elif kind == "status":
                self.status[chat] = frame.get("state")
            if backlog and self.status[chat] == "active":
                self.customer_ready[chat].set()

    async def read_agent(self, number: int, ws) -> None:
        per_agent = self.target.chats_per_agent
        async for raw in ws:
            now = self.last_frame_at = time.perf_counter()
            self.agent_frames += 1
            self.agent_bytes += len(raw)
            if raw.startswith("{"):
                self.agent_answer(number, raw, now)
                continue
            for found in MARK.finditer(raw):
                sent = self.sent.get(found.group(0))
                if sent is None or sent.agent_at is not None:
                    continue
                if sent.chat // per_agent != number:
                    self.misrouted.append(f"{sent.key} reached agent {number}")
                    continue
                sent.agent_at = now
                if sent.kind == "c" and sent.seq > self.shown_upto[sent.chat]:
                    # Shown in the list or the timeline: every earlier message of this customer is past too.
                    self.shown_upto[sent.chat] = sent.seq
                    waiting = self.outstanding[sent.chat]
                    done = [seq for seq in waiting if seq <= sent.seq]
                    for seq in done:
                        del waiting[seq]
                    self.shown.append((now, len(done)))
                    self.released[sent.chat].set()
            self.agent_ready[number].set()

    # Connecting -----------------------------------------------------------------------------------------------

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        target = self.target
        options = {"origin": target.origin, "compression": None, "ping_interval": None, "max_size": 2**22}
        gate = asyncio.Semaphore(10)
        self.customers = [None] * len(target.tokens)
        self.agents = [None] * len(self.agent_seq)

        async def open_agent(number: int) -> None:
            async with gate:
                headers = {"Cookie": target.cookies[number], "Accept-Language": "en"}
                url = f"ws://127.0.0.1:{target.agent_port(number)}/ws/agent/"
                ws = await connect(url, additional_headers=headers, **options)
                self.agents[number] = ws
                task = asyncio.create_task(self.watch(f"agent {number}", self.read_agent(number, ws)))
                self.readers.append(task)
                self.reader_of["agent", number] = task
                await asyncio.wait_for(self.agent_ready[number].wait(), 30)
                # The desktop shows the agent's first chat: its entries arrive as timeline HTML.
                self.agent_ready[number].clear()
                conversation = target.conversations[number * target.chats_per_agent]
                await ws.send(json.dumps({"action": "resync", "conversation": conversation, "after": 0}))
                await asyncio.wait_for(self.agent_ready[number].wait(), 30)

        async def open_customer(chat: int) -> None:
            async with gate:
                headers = {"Accept-Language": "en"}
                url = f"ws://127.0.0.1:{target.customer_port(chat)}/ws/chat/"
                ws = await connect(url, additional_headers=headers, **options)
                self.customers[chat] = ws
                task = asyncio.create_task(self.watch(f"customer {chat}", self.read_customer(chat, ws)))
                self.readers.append(task)
                self.reader_of["customer", chat] = task
                await ws.send(json.dumps({"type": "resume", "token": target.tokens[chat], "after": 0}))
                await asyncio.wait_for(self.customer_ready[chat].wait(), 30)

        await asyncio.gather(*(open_agent(n) for n in range(len(self.agents))))
        await asyncio.gather(*(open_customer(c) for c in range(len(self.customers))))

    async def watch(self, name: str, reader) -> None:
        """Run a socket's reader; a socket the server closes or breaks is reported, not silently dropped."""
        from websockets.exceptions import ConnectionClosedError

        try:
            await reader
        except ConnectionClosedError as exc:
            self.unexpected_errors.append(f"{name}: socket closed ({exc})")

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in [*self.customers, *self.agents] if ws is not None))
        await asyncio.gather(*self.readers, return_exceptions=True)

    # Sending ---------------------------------------------------------------------------------------------------

    async def customer_send(self, chat: int, phase: str) -> bool:
        """Send the customer's next message; False when the socket has been closed."""
        from websockets.exceptions import ConnectionClosed

        self.customer_seq[chat] += 1
        seq = self.customer_seq[chat]
        sent = Sent(key=f"rtc{chat}n{seq}", kind="c", chat=chat, seq=seq, phase=phase)
        frame = json.dumps({"type": "message", "text": f"{sent.key} {CUSTOMER_TEXT}", "client_id": sent.key})
        self.sent[sent.key] = sent
        self.outstanding[chat][seq] = sent.key
        sent.sent_at = time.perf_counter()
        try:
            await self.customers[chat].send(frame)
        except ConnectionClosed as exc:
            sent.error = f"socket closed: {exc}"
            self.outstanding[chat].pop(seq, None)
            return False
        return True

    async def agent_send(self, number: int, chat: int, phase: str) -> None:
        self.agent_seq[number] += 1
        seq = self.agent_seq[number]
        sent = Sent(key=f"rta{number}n{seq}", kind="a", chat=chat, seq=seq, phase=phase)
        text = f"{sent.key} {AGENT_TEXT}"
        self.sent[sent.key] = sent
        target = self.target
        conversation = target.conversations[chat]
        if target.agent_send in ("bare", "socket"):
            sent.sent_at = time.perf_counter()
            await self.agent_frame(number, sent, conversation, text)
            return
        path = f"/desktop/c/{conversation}/send/"
        body = urlencode({"channel": "chat", "text": text}).encode()
        headers = {
            "Host": f"127.0.0.1:{target.agent_port(number)}",
            "Origin": f"http://127.0.0.1:{target.agent_port(number)}",
            "Referer": f"http://127.0.0.1:{target.agent_port(number)}/desktop/c/{conversation}/",
            "Cookie": target.cookies[number],
            "X-CSRFToken": target.csrf[number],
            "HX-Request": "true",
            "Accept-Language": "en",
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Length": str(len(body)),
            "Connection": "close",
        }
        request = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sent.sent_at = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", target.agent_port(number))
            writer.write(request.encode() + body)
            response = await asyncio.wait_for(reader.read(), 30)
            writer.close()
        except (OSError, TimeoutError) as exc:
            sent.error = f"HTTP {exc!r}"
            return
        status = response.split(b" ", 2)[1] if response.count(b" ") >= 2 else b"?"
        if status != b"200":
            sent.error = f"HTTP {status.decode()}"
        else:
            sent.acked_at = self.last_frame_at = time.perf_counter()

    async def agent_frame(self, number: int, sent: Sent, conversation: str, text: str) -> None:
        from websockets.exceptions import ConnectionClosed

        frame = {"action": "send", "conversation": conversation, "text": text}
        if self.target.agent_send == "socket":
            frame["client_id"] = f"{CLIENT_ID_PREFIX}{sent.key}"
        try:
            await self.agents[number].send(json.dumps(frame))
        except ConnectionClosed as exc:
            sent.error = f"socket closed: {exc}"

    def agent_answer(self, number: int, raw: str, now: float) -> None:
        """Parley's answer to a "send" frame: "sent" (stored), or an error naming the frame's id."""
        frame = json.loads(raw)
        client_id = frame.get("sent") or frame.get("client_id") or ""
        sent = self.sent.get(client_id.removeprefix(CLIENT_ID_PREFIX))
        if sent is None:
            self.unexpected_errors.append(f"agent {number}: {frame}")
        elif frame.get("sent"):
            sent.acked_at = sent.acked_at or now
        elif frame.get("error") == "busy":
            # Told to send again in a moment, as the desktop does: same id, so it is stored once.
            conversation = self.target.conversations[sent.chat]
            text = f"{sent.key} {AGENT_TEXT}"
            self.spawn(self.agent_resend(number, sent, conversation, text))
        else:
            sent.error = f"{frame.get('error')}: {frame.get('message')}"

    async def agent_resend(self, number: int, sent: Sent, conversation: str, text: str) -> None:
        await asyncio.sleep(BUSY_RETRY_SECONDS)
        await self.agent_frame(number, sent, conversation, text)

    def spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # Phases -------------------------------------------------------------------------------------------------------

    async def nominal(
        self, duration: float, period: float, seed: int = 1, phase: str = "nominal", agent_period: float | None = None
    ) -> None:
        """Every party sends one message per ``period`` on a fixed schedule (open loop), phases spread at random.

        Agents every ``agent_period`` if given. Parties in ``skip_agents`` / ``skip_customers`` (sockets
        overload.py stopped reading) send nothing; others still write to them.
        """
        agent_period = agent_period or period
        rng = random.Random(seed)
        start = time.perf_counter() + 0.2
        end = start + duration

        async def party(send, offset: float, every: float = period) -> None:
            n = 0
            while (due := start + offset + n * every) < end:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                await send()
                n += 1

        def agent_sender(number: int):
            chats = [number * self.target.chats_per_agent + k for k in range(self.target.chats_per_agent)]
            turn = iter(range(1 << 30))

            async def send() -> None:
                # The reply goes out in the background: a slow POST must not hold up this agent's schedule.
                self.spawn(self.agent_send(number, chats[next(turn) % len(chats)], phase))

            return send

        jobs = [
            party(lambda c=c: self.customer_send(c, phase), rng.uniform(0, period))
            for c in range(len(self.customers))
            if c not in self.skip_customers
        ]
        jobs += [
            party(agent_sender(n), rng.uniform(0, agent_period), agent_period)
            for n in range(len(self.agents))
            if n not in self.skip_agents
        ]
        await asyncio.gather(*jobs)

    async def saturate(self, duration: float, window: int, warmup: float) -> tuple[float, int]:
        """Customers send as fast as ``window`` messages not yet shown to the agent allow; returns msgs/s shown."""
        self.shown.clear()
        start = time.perf_counter()
        end = start + duration

        async def customer(chat: int) -> None:
            last_key = ""
            while time.perf_counter() < end:
                while len(self.outstanding[chat]) >= window:
                    self.released[chat].clear()
                    try:
                        await asyncio.wait_for(self.released[chat].wait(), max(0.001, end - time.perf_counter()))
                    except TimeoutError:
                        return
                refused = self.sent.get(last_key)
                if refused is not None and refused.error and refused.error.startswith(("busy", "rate_limited")):
                    # Told to send again in a moment (the server sheds load, or this customer sent too fast):
                    # the page puts the text back and the person sends it again, not in a tight loop.
                    await asyncio.sleep(BUSY_RETRY_SECONDS)
                if not await self.customer_send(chat, "saturation"):
                    return
                last_key = f"rtc{chat}n{self.customer_seq[chat]}"

        await asyncio.gather(*(customer(c) for c in range(len(self.customers))))
        counted = sum(n for at, n in self.shown if start + warmup <= at <= end)
        return counted / (duration - warmup), sum(n for _at, n in self.shown)

    def settled(self, phase: str) -> bool:
        """Every message of ``phase`` has reached everyone it should (or was refused)."""
        agent_seen: dict[int, float] = defaultdict(float)
        for sent in self.sent.values():
            if sent.kind == "a" and sent.agent_at is not None:
                agent_seen[sent.chat] = max(agent_seen[sent.chat], sent.sent_at)
        for sent in self.sent.values():
            if sent.phase != phase or sent.error:
                continue
            answered = self.target.agent_send == "bare" or sent.acked_at is not None
            if sent.kind == "a" and (sent.customer_at is None or not answered):
                return False
            if sent.kind == "c":
                shown = sent.agent_at or self.shown_upto[sent.chat] >= sent.seq or agent_seen[sent.chat] > sent.sent_at
                if sent.acked_at is None or not shown:
                    return False
        return True

    async def drain(self, phase: str, quiet: float = 10.0, limit: float = 120.0) -> float:
        """Wait for the stragglers of ``phase`` while they keep coming; returns how long it took.

        Gives up when nothing has arrived for ``quiet`` seconds (what is missing then is lost) or after ``limit``.
        """
        start = time.perf_counter()
        self.last_frame_at = max(self.last_frame_at, start)
        while self.background or not self.settled(phase):
            now = time.perf_counter()
            if now - self.last_frame_at > quiet or now - start > limit:
                break
            await asyncio.sleep(0.05)
        # Frames still on their way (a last list update) land in this grace period.
        await asyncio.sleep(0.3)
        return time.perf_counter() - start


class CpuMeter:
    """CPU seconds used by this process and by the server processes between two readings."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.ticks = os.sysconf("SC_CLK_TCK")

    def read(self) -> tuple[float, float, float]:
        server = 0.0
        for pid in self.pids:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
            server += (int(fields[11]) + int(fields[12])) / self.ticks
        own = os.times()
        return time.perf_counter(), server, own.user + own.system

    @staticmethod
    def share(before, after) -> tuple[float, float]:
        wall = after[0] - before[0]
        return (after[1] - before[1]) / wall, (after[2] - before[2]) / wall


async def drive(target: Target, args, server_pids: list[int], nominal_seconds: float) -> dict:
    load = Load(target)
    meter = CpuMeter(server_pids)
    await load.connect()
    await asyncio.sleep(1.0)
    before = meter.read()
    await load.nominal(nominal_seconds, args.period)
    nominal_cpu = CpuMeter.share(before, meter.read())
    nominal_drain = await load.drain("nominal")
    before = meter.read()
    rate, shown = await load.saturate(args.saturation, args.window, args.warmup)
    after = meter.read()
    saturation_cpu = CpuMeter.share(before, after)
    saturation_drain = await load.drain("saturation")
    await load.close()
    return {
        "load": load,
        "rate": rate,
        "shown": shown,
        "nominal_cpu": nominal_cpu,
        "saturation_cpu": saturation_cpu,
        "saturation_seconds": after[0] - before[0],
        "drains": (nominal_drain, saturation_drain),
    }


# --- results ------------------------------------------------------------------------------------------------


def analyse(load: Load, phase: str, database: dict[int, list[str]] | None) -> dict:
    """Latencies and losses of one phase. ``database``: per chat, the ids of its stored messages in commit order."""
    messages = [sent for sent in load.sent.values() if sent.phase == phase]
    covered: dict[str, float] = {}
    if database is not None:
        # A list preview replaced by a newer message: shown when the newer one (or a later one) reached the agent.
        for keys in database.values():
            earliest = float("inf")
            for key in reversed(keys):
                sent = load.sent.get(key)
                if sent is not None and sent.agent_at is not None:
                    earliest = min(earliest, sent.agent_at)
                covered[key] = earliest
    latency, echo, to_agent, to_customer, posted = [], [], [], [], []
    lost: list[str] = []
    refused = [sent for sent in messages if sent.error]
    superseded = 0
    for sent in messages:
        if sent.error:
            continue
        if sent.kind == "c":
            shown = sent.agent_at
            if shown is None and covered.get(sent.key, float("inf")) < float("inf"):
                shown = covered[sent.key]
                superseded += 1
            if sent.acked_at is None:
                lost.append(f"{sent.key} never echoed to its customer")
            if shown is None:
                lost.append(f"{sent.key} never shown to its agent")
            if sent.acked_at is not None and shown is not None:
                echo.append(sent.acked_at - sent.sent_at)
                to_agent.append(shown - sent.sent_at)
                latency.append(max(sent.acked_at, shown) - sent.sent_at)
        else:
            if sent.acked_at is not None:
                posted.append(sent.acked_at - sent.sent_at)
            if sent.customer_at is None:
                lost.append(f"{sent.key} never reached its customer")
            else:
                to_customer.append(sent.customer_at - sent.sent_at)
                latency.append(sent.customer_at - sent.sent_at)
    stored_problems: list[str] = []
    if database is not None:
        stored: dict[str, int] = defaultdict(int)
        for keys in database.values():
            for key in keys:
                stored[key] += 1
        for sent in messages:
            if not sent.error and stored.get(sent.key, 0) == 0:
                lost.append(f"{sent.key} not in the database")
            if sent.error and stored.get(sent.key, 0):
                stored_problems.append(f"{sent.key} refused ({sent.error}) but stored")
        phase_keys = {sent.key for sent in messages}
        for key, count in stored.items():
            if key in phase_keys and count > 1:
                stored_problems.append(f"{key} stored {count} times")
    return {
        "messages": len(messages),
        "customer": sum(1 for sent in messages if sent.kind == "c"),
        "agent": sum(1 for sent in messages if sent.kind == "a"),
        "latency": latency,
        "echo": echo,
        "to_agent": to_agent,
        "to_customer": to_customer,
        "posted": posted,
        "lost": lost,
        "refused": [f"{sent.key}: {sent.error}" for sent in refused],
        "superseded": superseded,
        "stored_problems": stored_problems,
    }


def stored_messages(chat_of_conversation: dict[int, int]) -> dict[int, list[str]]:
    """Per chat, the ids of the benchmark's messages in the database, in commit order."""
    from conversations.models import Message

    database: dict[int, list[str]] = defaultdict(list)
    rows = Message.objects.filter(conversation_id__in=list(chat_of_conversation)).order_by("id")
    for conversation_id, body in rows.values_list("conversation_id", "body"):
        found = MARK.match(body)
        if found:
            database[chat_of_conversation[conversation_id]].append(found.group(0))
    return database


# --- Parley: setup through the services ---------------------------------------------------------------------


def seed_history(messages: int) -> None:
    """Closed conversations with ``messages`` messages in all, as a deployment has after a while (seed_bulk).

    The planner chooses by the tables' statistics: against tables holding only the benchmark's own rows,
    PostgreSQL read a conversation's newest message by scanning every message (the list row's preview),
    which no database with a history does.
    """
    from django.core.management import call_command

    if messages <= 0:
        return
    started = time.perf_counter()
    conversations = max(1, messages // 50)
    call_command(
        "seed_bulk",
        contacts=max(1, conversations // 2),
        conversations=conversations,
        messages=messages,
        allow_production=True,
        stdout=io.StringIO(),
    )
    print(
        f"  history   {messages} messages in {conversations} closed conversations (seed_bulk), "
        f"seeded in {time.perf_counter() - started:.1f} s"
    )


def build_parley(agents: int, chats_per_agent: int, *, history: int = 0) -> dict:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.middleware.csrf import _get_new_csrf_string

    from agents.models import AgentState
    from agents.services import agent_profile_ensure, agent_state_set
    from channels_app.webchat.services import chat_start, session_token
    from conversations.models import Interaction, Offer, Service
    from conversations.routing import offer_accept

    service = Service.objects.create(
        name="Realtime bench",
        slug="realtime-bench",
        share_chat=25,
        wrapup_seconds=0,
        offer_timeout_seconds=3600,
        chat_inactivity_seconds=24 * 3600,
    )
    user_model = get_user_model()
    users = []
    for number in range(agents):
        user = user_model.objects.create_user(username=f"rt-agent-{number}", first_name="Agent", last_name=str(number))
        profile = agent_profile_ensure(user=user)
        profile.capacity = 100
        profile.save(update_fields=["capacity"])
        profile.services.add(service)
        agent_state_set(agent=profile, state=AgentState.READY)
        users.append(user)
    by_pk = {user.pk: user for user in users}
    sessions = []
    for number in range(agents * chats_per_agent):
        session = chat_start(
            service=service,
            data={"name": f"Customer {number}", "email": f"customer-{number}@bench.test", "question": "Hello?"},
        )
        offer = Offer.objects.filter(interaction_id=session.interaction_id, state=Offer.State.PENDING).first()
        if offer is None:
            raise RuntimeError(f"chat {number} was not offered to any agent")
        offer_accept(offer_id=offer.pk, agent_user=by_pk[offer.agent_id])
        sessions.append(session)
    # Routing spreads the chats (least recently offered first); the benchmark needs exactly N per agent.
    chats_of: dict[int, list] = defaultdict(list)
    for session in sessions:
        interaction = Interaction.objects.select_related("conversation").get(pk=session.interaction_id)
        if interaction.state != Interaction.State.ACTIVE or interaction.conversation.assigned_agent_id is None:
            raise RuntimeError(f"chat {session.pk} is {interaction.state}, not active with an agent")
        chats_of[interaction.conversation.assigned_agent_id].append((session, interaction.conversation))
    uneven = {by_pk[pk].username: len(chats) for pk, chats in chats_of.items() if len(chats) != chats_per_agent}
    if uneven or len(chats_of) != agents:
        raise RuntimeError(f"routing did not give every agent {chats_per_agent} chats: {uneven}")

    tokens, conversations, cookies, csrf, chat_of_conversation = [], [], [], [], {}
    for user in users:
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        secret = _get_new_csrf_string()
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={store.session_key}; {settings.CSRF_COOKIE_NAME}={secret}")
        csrf.append(secret)
        for session, conversation in chats_of[user.pk]:
            chat_of_conversation[conversation.pk] = len(tokens)
            tokens.append(session_token(session))
            conversations.append(str(conversation.uuid))
    seed_history(history)
    _support.analyze()
    return {
        "tokens": tokens,
        "conversations": conversations,
        "cookies": cookies,
        "csrf": csrf,
        "chat_of_conversation": chat_of_conversation,
    }


# --- processes ----------------------------------------------------------------------------------------------


def wait_for_port(port: int, proc: subprocess.Popen, *, path: str | None = None, timeout: float = 60.0) -> None:
    """Until the server accepts connections (and, with ``path``, answers it with 200)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it answered")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if path is None:
                    return
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server on port {port} did not answer within {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def start_bare(port: int, chats_per_agent: int, log_path: Path) -> subprocess.Popen:
    command = [sys.executable, __file__, "--serve-bare", str(port), "--chats-per-agent", str(chats_per_agent)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(port, proc)
    return proc


def web_cpus(process: int, pin: bool) -> dict[str, str]:
    """The ``WEB_CPUS`` of web process number ``process``: one core each, in turn, as README's layout has it."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return {}
    cpus = sorted(os.sched_getaffinity(0))
    return {"WEB_CPUS": str(cpus[process % len(cpus)])}


def start_daphne(
    port: int, log_path: Path, *, extra_args: tuple[str, ...] = (), extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(extra_env or {})
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings_test",
        DATABASE_URL=_support.database_url(),
        PYTHONUNBUFFERED="1",
        # As in production: with the in-memory layer the web process relays Celery workers' events
        # (config/asgi.py); the test settings turn that off for in-process consumer tests only.
        PARLEY_EVENT_RELAY="1",
    )
    command = [str(BIN_DIR / "daphne"), "-b", "127.0.0.1", "-p", str(port), *extra_args, "config.asgi:application"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=_support.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, path="/healthz")
    except Exception:
        stop(proc)
        print(log_path.read_text(errors="replace")[-3000:])
        raise
    return proc


# --- main ---------------------------------------------------------------------------------------------------


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{ms(statistics.median(values))} / {ms(percentile(values, 99))}"


def row(label: str, bare: str, parley: str, note: str = "") -> None:
    print(f"{label:<36}{bare:<22}{parley:<22}{note}".rstrip())


def report(bare: dict, full: dict, database: dict[int, list[str]]) -> list[str]:
    """Print the table; returns the goals missed."""
    results = {
        name: {phase: analyse(run["load"], phase, db) for phase in ("nominal", "saturation")}
        for name, run, db in (("bare", bare, None), ("parley", full, database))
    }
    b, p = results["bare"]["nominal"], results["parley"]["nominal"]
    b50, b99 = statistics.median(b["latency"]), percentile(b["latency"], 99)
    p50, p99 = statistics.median(p["latency"]), percentile(p["latency"], 99)
    ratio = full["rate"] / bare["rate"]
    bs, ps = results["bare"]["saturation"], results["parley"]["saturation"]

    print()
    row("", "bare websockets", "Parley", "Parley / bare")
    row("RT2 nominal: messages sent", str(b["messages"]), str(p["messages"]))
    row("  send -> all recipients p50", ms(b50), ms(p50), f"{p50 / b50:.0f}x   goal <= {ms(RT2_P50)}")
    row("  send -> all recipients p99", ms(b99), ms(p99), f"{p99 / b99:.0f}x   goal <= {ms(RT2_P99)}")
    row("  customer -> own echo p50/p99", summary(b["echo"]), summary(p["echo"]))
    row("  customer -> agent p50/p99", summary(b["to_agent"]), summary(p["to_agent"]))
    row("  agent -> customer p50/p99", summary(b["to_customer"]), summary(p["to_customer"]))
    row("  agent reply -> answer p50/p99", "-", summary(p["posted"]))
    row("  lost / refused", f"{len(b['lost'])} / {len(b['refused'])}", f"{len(p['lost'])} / {len(p['refused'])}")
    row("  superseded list previews", "-", str(p["superseded"]))
    row(
        "RT1 saturation: msgs/s to agents",
        f"{bare['rate']:.0f}",
        f"{full['rate']:.1f}",
        f"{ratio:.4f}  floor {RT1_FLOOR}, target {RT1_TARGET}",
    )
    row("  messages sent", str(bs["messages"]), str(ps["messages"]))
    row("  lost / refused", f"{len(bs['lost'])} / {len(bs['refused'])}", f"{len(ps['lost'])} / {len(ps['refused'])}")
    row("  superseded list previews", "-", str(ps["superseded"]))
    for label, key in (("nominal", "nominal_cpu"), ("saturation", "saturation_cpu")):
        (bare_server, bare_generator), (parley_server, parley_generator) = bare[key], full[key]
        row(
            f"CPU {label} (server/generator)",
            f"{bare_server:.0%} / {bare_generator:.0%}",
            f"{parley_server:.0%} / {parley_generator:.0%}",
            "100 % = one core",
        )
    per_message = [run["saturation_cpu"][0] * run["saturation_seconds"] / max(1, run["shown"]) for run in (bare, full)]
    row("  server CPU per message shown", f"{per_message[0] * 1000:.3f} ms", f"{per_message[1] * 1000:.2f} ms")
    load = full["load"]
    row(
        "agent frames received",
        "",
        f"{load.agent_frames}, {load.agent_bytes / max(1, load.agent_frames) / 1024:.1f} KiB avg",
    )
    row(
        "drain after nominal / saturation",
        f"{bare['drains'][0]:.1f} / {bare['drains'][1]:.1f} s",
        f"{full['drains'][0]:.1f} / {full['drains'][1]:.1f} s",
    )

    failures = []
    if ratio < RT1_FLOOR:
        failures.append(f"RT1 ratio {ratio:.4f} below the floor {RT1_FLOOR}")
    elif ratio < RT1_TARGET:
        print(f"\nRT1: floor met, target {RT1_TARGET} not reached")
    if p50 > RT2_P50:
        failures.append(f"RT2 p50 {ms(p50)} above {ms(RT2_P50)}")
    if p99 > RT2_P99:
        failures.append(f"RT2 p99 {ms(p99)} above {ms(RT2_P99)}")
    for name, run in (("bare", bare), ("parley", full)):
        for phase in ("nominal", "saturation"):
            result = results[name][phase]
            if result["lost"]:
                failures.append(f"{name} {phase}: {len(result['lost'])} lost, e.g. {result['lost'][:3]}")
            if result["stored_problems"]:
                failures.append(f"{name} {phase}: {result['stored_problems'][:3]}")
        if results[name]["nominal"]["refused"]:
            failures.append(f"{name} nominal: refused {results[name]['nominal']['refused'][:3]}")
        if run["load"].misrouted:
            failures.append(f"{name}: misrouted {run['load'].misrouted[:3]}")
        if run["load"].unexpected_errors:
            failures.append(f"{name}: errors {run['load'].unexpected_errors[:3]}")
    unknown = [key for keys in database.values() for key in keys if key not in full["load"].sent]
    if unknown:
        failures.append(f"stored but never sent: {unknown[:3]}")
    return failures


def describe(args, bare_seconds: float) -> None:
    import channels
    import daphne
    import django
    import websockets
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    versions = (
        f"Python {platform.python_version()}, Django {django.get_version()}, Channels {channels.__version__}, "
        f"daphne {daphne.__version__}, websockets {websockets.__version__}, {_support.database_version()}"
    )
    layer = settings.CHANNEL_LAYERS["default"]
    if settings.REDIS_URL:
        import channels_redis

        versions += f", channels-redis {channels_redis.__version__}, {_support.redis_version()}"
        kind = (
            "Redis pub/sub (channels_redis RedisPubSubChannelLayer)"
            if "PubSub" in layer["BACKEND"]
            else "Redis (channels_redis RedisChannelLayer: lists, not pub/sub)"
        )
    else:
        kind = "in-memory (InMemoryChannelLayer, inside the one daphne process)"
    config = {key: value for key, value in layer.get("CONFIG", {}).items() if key != "hosts"}
    chats = args.agents * args.chats_per_agent
    rate = (chats + args.agents) / args.period
    print("RT1/RT2 realtime benchmark")
    print(
        f"  date      {timezone.now():%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}, host speed {_support.host_speed_ms():.0f} ms (2 M-step Python loop; "
        "lower is faster)"
    )
    print(f"  versions  {versions}")
    round_trip, commit = _support.database_latency_ms()
    print(f"  database  round trip (SELECT 1) p50 {round_trip:.2f} ms, one-row insert + commit p50 {commit:.2f} ms")
    print(f"  layer     {kind} {config or ''}".rstrip())
    print(
        f"  settings  config.settings_test, DEBUG={settings.DEBUG}, "
        f"CONN_MAX_AGE={connection.settings_dict.get('CONN_MAX_AGE')}, "
        f"CHAT_RATE_LIMIT_PER_10S={settings.CHAT_RATE_LIMIT_PER_10S}, WEBSOCKET_DB_THREADS="
        f"{settings.WEBSOCKET_DB_THREADS}, daphne processes {args.processes}, "
        + (
            "WEB_CPUS " + " / ".join(web_cpus(n, True).get("WEB_CPUS", "-") for n in range(args.processes))
            if args.pin
            else "not pinned"
        )
        + (
            f", prepare threshold {connection.settings_dict['OPTIONS'].get('prepare_threshold')}"
            if connection.vendor == "postgresql"
            else ""
        )
    )
    print(
        f"  load      {args.agents} agents x {args.chats_per_agent} chats = {chats} customer + {args.agents} agent "
        f"sockets, one message per party per {args.period:g} s ({rate:.0f} msg/s) for {args.duration:g} s "
        f"(bare {bare_seconds:.0f} s); saturation {args.saturation:g} s, window {args.window} per customer; "
        f"agents reply {'by HTTP POST' if args.agent_http else 'over their socket'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=50, help="agents (default 50)")
    parser.add_argument("--chats-per-agent", type=int, default=3, help="live chats per agent (default 3)")
    parser.add_argument("--period", type=float, default=10.0, help="seconds between one party's messages (default 10)")
    parser.add_argument("--duration", type=float, default=30.0, help="nominal phase against Parley, s (default 30)")
    parser.add_argument(
        "--bare-duration", type=float, help="nominal phase against the bare server, s (default duration/3, >= 10)"
    )
    parser.add_argument("--saturation", type=float, default=10.0, help="saturation phase, s (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="first seconds of saturation not counted (default 1)")
    parser.add_argument("--window", type=int, default=1, help="messages per customer not yet shown to its agent (1)")
    parser.add_argument(
        "--processes", type=int, default=1, help="daphne processes, sockets spread over them (needs REDIS_URL)"
    )
    parser.add_argument(
        "--agent-http", action="store_true", help="agents reply by HTTP POST instead of over their socket"
    )
    parser.add_argument(
        "--history",
        type=int,
        default=100_000,
        help="messages of closed conversations seeded before the run, as a deployment has (default 100000)",
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="leave the daphne processes to the OS instead of one core each (WEB_CPUS)",
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.processes > 1 and not os.environ.get("REDIS_URL"):
        parser.error("--processes above 1 needs REDIS_URL: the in-memory layer does not span processes")

    if args.serve_bare:
        asyncio.run(serve_bare(args.serve_bare, args.chats_per_agent))
        return 0
    bare_seconds = args.bare_duration or max(10.0, args.duration / 3)

    _support.setup_django("realtime")
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    _support.create_database()
    procs: list[subprocess.Popen] = []
    try:
        started_cpu = _support.cpu_times()
        describe(args, bare_seconds)
        started = time.perf_counter()
        parley = build_parley(args.agents, args.chats_per_agent, history=args.history)
        chats = args.agents * args.chats_per_agent
        print(f"  setup     {chats} chats routed and accepted in {time.perf_counter() - started:.1f} s")
        connection.close()
        run_dir = Path(settings.VAR_DIR)
        run_dir.mkdir(parents=True, exist_ok=True)

        bare_port = _support.free_port()
        procs.append(start_bare(bare_port, args.chats_per_agent, run_dir / "bare.log"))
        bare_target = Target(
            name="bare",
            port=bare_port,
            chats_per_agent=args.chats_per_agent,
            tokens=[f"bare-{chat}" for chat in range(chats)],
            conversations=[str(chat) for chat in range(chats)],
            cookies=[f"sessionid=bare-{number}" for number in range(args.agents)],
            csrf=[""] * args.agents,
            agent_send="bare",
        )
        bare = asyncio.run(drive(bare_target, args, [procs[-1].pid], bare_seconds))
        stop(procs[-1])

        ports = [_support.free_port() for _ in range(args.processes)]
        servers = [
            start_daphne(port, run_dir / f"daphne-{n}.log", extra_env=web_cpus(n, args.pin))
            for n, port in enumerate(ports)
        ]
        procs.extend(servers)
        parley_target = Target(
            name="parley",
            port=ports[0],
            ports=ports if args.processes > 1 else [],
            chats_per_agent=args.chats_per_agent,
            tokens=parley["tokens"],
            conversations=parley["conversations"],
            cookies=parley["cookies"],
            csrf=parley["csrf"],
            agent_send="http" if args.agent_http else "socket",
        )
        full = asyncio.run(drive(parley_target, args, [server.pid for server in servers], args.duration))
        for server in servers:
            stop(server)
        failures = report(bare, full, stored_messages(parley["chat_of_conversation"]))
        round_trip, commit = _support.database_latency_ms()
        print(
            f"\n  load average at the end {os.getloadavg()[0]:.2f}, host speed {_support.host_speed_ms():.0f} ms, "
            f"database round trip {round_trip:.2f} ms, insert + commit {commit:.2f} ms, "
            f"CPU stolen by the hypervisor during the run {_support.stolen_share(started_cpu)}"
        )
    finally:
        for proc in procs:
            stop(proc)
        _support.destroy_database(old_name)
        teardown_test_environment()
        _support.cleanup_run("bench-realtime-")

    if failures:
        print("\nRT1/RT2 MISSED:\n  " + "\n  ".join(failures))
        return 1
    print("\nRT1 and RT2 met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
