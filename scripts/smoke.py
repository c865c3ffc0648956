"""Smoke test a running Parley: the login page answers, a demo agent logs in and its websocket connects.

Usage: python scripts/smoke.py http://127.0.0.1:8000 [--timeout 120]
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import websockets


def wait_for_login_page(base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/login/", timeout=5) as response:  # noqa: S310
                if response.status == 200 and b"csrfmiddlewaretoken" in response.read():
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"login page at {base}/login/ did not answer within {timeout:.0f} s")
        time.sleep(1)


def log_in(base: str, username: str, password: str) -> str:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token}).encode()
    request = urllib.request.Request(f"{base}/login/", data=data, headers={"Referer": f"{base}/login/"})  # noqa: S310
    final = opener.open(request)
    if not final.geturl().endswith("/desktop/"):
        raise SystemExit(f"login as {username} failed (ended at {final.geturl()})")
    return "; ".join(f"{c.name}={c.value}" for c in jar)


async def open_agent_socket(base: str, cookie: str) -> str:
    ws_url = base.replace("http://", "ws://") + "/ws/agent/"
    async with websockets.connect(ws_url, origin=base, additional_headers={"Cookie": cookie}) as socket:
        return await asyncio.wait_for(socket.recv(), timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--username", default="agent1")
    parser.add_argument("--password", default="parley-demo")
    args = parser.parse_args()
    base = args.base_url.rstrip("/")

    wait_for_login_page(base, args.timeout)
    print(f"ok: {base}/login/ answers")
    cookie = log_in(base, args.username, args.password)
    print(f"ok: {args.username} logged in")
    first_frame = asyncio.run(open_agent_socket(base, cookie))
    if 'id="agent-state"' not in first_frame:
        raise SystemExit(f"unexpected first websocket frame: {first_frame[:200]}")
    print("ok: the agent websocket connected and sent the agent's state")


if __name__ == "__main__":
    sys.exit(main())
