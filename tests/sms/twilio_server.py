"""A local HTTP server speaking the subset of Twilio's REST API Parley uses (a provider double).

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``: checks basic auth and the parameters,
  answers 201 with a Message resource like Twilio. Honours ``I-Twilio-Idempotency-Token``: the same
  token gets the same SID and sends nothing new (real Twilio does not promise this; see docs/SMS.md).
- ``GET .../Messages/{MessageSid}/Media/{MediaSid}``: an MMS picture, behind the same basic auth.
- Failure on demand: ``fail_next("500"|"429"|"400"|"21610"|"timeout")`` for the next create calls,
  ``delay`` seconds before answering every create (so a worker can be killed mid-request).

Runs in a thread of the test process; Celery workers and daphne in subprocesses reach it over HTTP.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)


class FakeTwilio:
    def __init__(self, *, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.lock = threading.Lock()
        self.messages: list[dict] = []  # every message "sent" to a handset, once per SID
        self.by_key: dict[str, dict] = {}
        self.requests = Counter()  # create requests per idempotency key (repeats included)
        self.failures: list[str] = []
        self.always_fail_keys: set[str] = set()  # idempotency keys answered 500 every time
        self.delay = 0.0
        self.timeout_sleep = 5.0
        self.server: ThreadingHTTPServer | None = None
        self.base_url = ""

    # --- control -----------------------------------------------------------------------------------
    def fail_next(self, *kinds: str) -> None:
        with self.lock:
            self.failures.extend(kinds)

    def bodies(self) -> Counter:
        with self.lock:
            return Counter(message["Body"] for message in self.messages)

    def start(self) -> FakeTwilio:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, payload, content_type: str = "application/json") -> None:
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self, sid: str) -> bool:
                expected = base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
                return sid == fake.account_sid and self.headers.get("Authorization") == f"Basic {expected}"

            def _error(self, status: int, code: int, message: str) -> None:
                self._send(status, {"code": code, "message": message, "more_info": "", "status": status})

            def do_GET(self) -> None:
                parts = urlparse(self.path).path.strip("/").split("/")
                if len(parts) == 7 and parts[:2] == ["2010-04-01", "Accounts"] and parts[5] == "Media":
                    if not self._authorised(parts[2]):
                        return self._error(401, 20003, "Authenticate")
                    return self._send(200, PNG, "image/png")
                return self._error(404, 20404, "Not found")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                parts = urlparse(self.path).path.strip("/").split("/")
                if not (len(parts) == 4 and parts[:2] == ["2010-04-01", "Accounts"] and parts[3] == "Messages.json"):
                    return self._error(404, 20404, "Not found")
                if not self._authorised(parts[2]):
                    return self._error(401, 20003, "Authenticate")
                key = self.headers.get("I-Twilio-Idempotency-Token", "")
                with fake.lock:
                    fake.requests[key] += 1
                    failure = fake.failures.pop(0) if fake.failures else ""
                    if key in fake.always_fail_keys:
                        failure = "500"
                    delay = fake.delay
                if delay:
                    time.sleep(delay)
                if failure == "timeout":
                    time.sleep(fake.timeout_sleep)
                    return self._error(504, 20500, "late")
                if failure in ("500", "503", "429"):
                    return self._error(int(failure), 20500 if failure != "429" else 20429, "Try again")
                if failure == "21610":
                    return self._error(400, 21610, "Attempt to send to unsubscribed recipient")
                if failure == "400":
                    return self._error(400, 21211, "The 'To' number is not a valid phone number.")
                for required in ("To", "Body"):
                    if not form.get(required):
                        return self._error(400, 21604 if required == "To" else 21602, f"'{required}' is required")
                if not form.get("From") and not form.get("MessagingServiceSid"):
                    return self._error(400, 21603, "'From' is required")
                if not form["To"].startswith("+"):
                    return self._error(400, 21211, "The 'To' number is not a valid phone number.")
                with fake.lock:
                    if key and key in fake.by_key:
                        return self._send(201, fake.by_key[key])
                    sid = "SM" + uuid.uuid4().hex
                    resource = {
                        "sid": sid,
                        "account_sid": fake.account_sid,
                        "to": form["To"],
                        "from": form.get("From"),
                        "body": form["Body"],
                        "status": "queued",
                        "num_segments": "1",
                        "direction": "outbound-api",
                        "api_version": "2010-04-01",
                        "date_created": "Wed, 25 Nov 2026 05:00:00 +0000",
                        "uri": f"/2010-04-01/Accounts/{fake.account_sid}/Messages/{sid}.json",
                    }
                    fake.messages.append({**form, "sid": sid, "key": key})
                    if key:
                        fake.by_key[key] = resource
                return self._send(201, resource)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                # A client killed mid-request (OB2's SIGKILLed worker) is expected here, not a failure.
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def twilio_signature(*, auth_token: str, url: str, params: dict) -> str:
    from twilio.request_validator import RequestValidator

    return RequestValidator(auth_token).compute_signature(url, params)
