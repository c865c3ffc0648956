"""The SMS provider interface and its Twilio implementation (the official ``twilio`` library).

Everything Twilio-specific lives here: building the client, sending, mapping
Twilio's statuses and errors onto ours, verifying webhook signatures. Another
provider would be another module offering the same four functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests
from django.conf import settings
from django.utils.translation import gettext as _
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from channels_app.sms.models import SmsAccount
from conversations.models import Message
from conversations.outbox import PermanentSendError, TransientSendError

logger = logging.getLogger(__name__)

TWILIO_API = "https://api.twilio.com"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"

# Twilio's message statuses onto ours; "accepted"/"sending" are still in Twilio's hands.
STATUS_MAP = {
    "accepted": Message.Status.QUEUED,
    "scheduled": Message.Status.QUEUED,
    "queued": Message.Status.QUEUED,
    "sending": Message.Status.QUEUED,
    "sent": Message.Status.SENT,
    "delivered": Message.Status.DELIVERED,
    "read": Message.Status.READ,
    "undelivered": Message.Status.UNDELIVERED,
    "failed": Message.Status.FAILED,
    "canceled": Message.Status.FAILED,
}

# Twilio error codes that mean the recipient opted out (21610) or cannot get SMS; not worth retrying.
OPTED_OUT_CODES = {21610}


@dataclass(frozen=True)
class Sent:
    sid: str
    status: str


class ParleyTwilioHttpClient(TwilioHttpClient):
    """Twilio's HTTP client, pointed at ``base_url`` and carrying our idempotency key.

    Twilio's own client only knows https://api.twilio.com; rewriting the host here
    is what lets tests (and a regional edge) use the real library unchanged.
    """

    def __init__(self, *, base_url: str = "", idempotency_key: str = "", timeout: float | None = None) -> None:
        super().__init__(timeout=timeout, pool_connections=False)
        self.base_url = (base_url or "").rstrip("/")
        self.idempotency_key = idempotency_key

    def request(
        self, method, url, params=None, data=None, headers=None, auth=None, timeout=None, allow_redirects=False
    ):
        if self.base_url and url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API) :]
        headers = dict(headers or {})
        if self.idempotency_key:
            headers[IDEMPOTENCY_HEADER] = self.idempotency_key
        return super().request(method, url, params, data, headers, auth, timeout, allow_redirects)


def twilio_client(*, account: SmsAccount, idempotency_key: str = "") -> Client:
    http_client = ParleyTwilioHttpClient(
        base_url=account.api_base_url, idempotency_key=idempotency_key, timeout=settings.SMS_PROVIDER_TIMEOUT_SECONDS
    )
    return Client(account.account_sid, account.auth_token, http_client=http_client)


def provider_send(
    *, account: SmsAccount, from_number: str, to: str, body: str, status_callback: str, idempotency_key: str
) -> Sent:
    """Hand one SMS to Twilio; raises Transient/PermanentSendError with the agent-facing reason."""
    client = twilio_client(account=account, idempotency_key=idempotency_key)
    try:
        message = client.messages.create(to=to, from_=from_number, body=body, status_callback=status_callback)
    except TwilioRestException as exc:
        if exc.status == 429 or exc.status >= 500:
            raise TransientSendError(_("SMS provider unavailable (HTTP %(status)s)") % {"status": exc.status}) from exc
        if exc.code in OPTED_OUT_CODES:
            raise PermanentSendError(_("The customer has opted out of SMS.")) from exc
        detail = exc.msg or ""
        raise PermanentSendError(
            _("The SMS provider refused the message (error %(code)s): %(detail)s")
            % {"code": exc.code or exc.status, "detail": detail[:150]}
        ) from exc
    except (requests.Timeout, requests.ConnectionError) as exc:
        # A timeout may hide an accepted message: the idempotency key keeps the repeat from sending twice.
        raise TransientSendError(_("SMS provider did not answer")) from exc
    return Sent(sid=message.sid, status=STATUS_MAP.get(message.status or "", Message.Status.SENT))


def media_download(*, account: SmsAccount, url: str, max_bytes: int) -> tuple[bytes, str]:
    """Fetch an MMS media file (Twilio serves it behind the account's basic auth)."""
    if account.api_base_url and url.startswith(TWILIO_API):
        url = account.api_base_url.rstrip("/") + url[len(TWILIO_API) :]
    response = requests.get(
        url,
        auth=(account.account_sid, account.auth_token),
        timeout=settings.SMS_PROVIDER_TIMEOUT_SECONDS,
        stream=True,
        allow_redirects=True,
    )
    response.raise_for_status()
    content = b""
    for chunk in response.iter_content(64 * 1024):
        content += chunk
        if len(content) > max_bytes:
            raise ValueError("media too large")
    return content, response.headers.get("Content-Type", "application/octet-stream")


def signature_valid(*, account: SmsAccount, url: str, params, signature: str) -> bool:
    if not signature:
        return False
    return RequestValidator(account.auth_token).validate(url, params, signature)
