"""Twilio's webhooks (inbound SMS, delivery status) and the agent's "End SMS" button.

Webhooks are csrf-exempt because Twilio cannot send a CSRF token; they are
authenticated instead by ``X-Twilio-Signature``, checked against
PUBLIC_BASE_URL + path + query (Twilio signs the URL it called, which behind a
proxy is not the one Django sees) before anything is written: 403 otherwise.
They do the least work needed and answer at once: an inbound SMS is stored raw and acknowledged, and a task
files it into a conversation (docs/SMS.md, "Inbound"); MMS media are fetched by a task.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from channels_app.sms import provider, services
from channels_app.sms.models import SmsAccount
from core.ratelimit import rate_limited

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _verified_account(request: HttpRequest) -> SmsAccount | None:
    account = SmsAccount.objects.filter(account_sid=request.POST.get("AccountSid", ""), is_active=True).first()
    if account is None:
        return None
    url = settings.PUBLIC_BASE_URL + request.get_full_path()
    signature = request.headers.get("X-Twilio-Signature", "")
    if not provider.signature_valid(account=account, url=url, params=request.POST, signature=signature):
        return None
    return account


def _twiml() -> HttpResponse:
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


@csrf_exempt
@rate_limited("webhook", "RATE_LIMIT_WEBHOOK", methods=("POST", "GET"))
@require_POST
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    """Store the verified payload and acknowledge; the ``sms_inbound_process`` task does the rest (IW1)."""
    account = _verified_account(request)
    if account is None:
        return HttpResponseForbidden("invalid signature")
    data = request.POST
    if not (data.get("MessageSid") or data.get("SmsSid")) or not data.get("From"):
        return HttpResponse("missing MessageSid or From", status=400)
    # A repeat of a message we have (None) is acknowledged like the first delivery, so Twilio stops retrying.
    services.sms_inbound_store(account=account, params=data)
    return _twiml()


@csrf_exempt
@rate_limited("webhook", "RATE_LIMIT_WEBHOOK", methods=("POST", "GET"))
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    if _verified_account(request) is None:
        return HttpResponseForbidden("invalid signature")
    data = request.POST
    services.sms_status_update(
        idempotency_key=request.GET.get("k", ""),
        message_sid=data.get("MessageSid", ""),
        status=data.get("MessageStatus") or data.get("SmsStatus", ""),
        error_code=data.get("ErrorCode", ""),
    )
    return HttpResponse(status=204)


@login_required
@require_POST
def thread_end(request: HttpRequest, conversation_uuid) -> HttpResponse:
    """The agent ends the SMS thread so the conversation can be wrapped up."""
    from conversations import views as conversation_views

    user, conversation = conversation_views._conversation_or_404(request, conversation_uuid)
    try:
        services.sms_thread_end(conversation=conversation, agent_user=user)
    except ValidationError as exc:
        return conversation_views._composer_error(request, conversation, " ".join(exc.messages))
    conversation.refresh_from_db()
    return conversation_views._page_or_partials(
        request,
        conversation,
        *conversation_views._controls(user, conversation),
        (conversation_views.ACL, conversation_views.acl_context(user=user, selected=conversation.uuid)),
    )
