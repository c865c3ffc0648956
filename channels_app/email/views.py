"""The email channel's views: the HTML frame, queues, signature, chat transcripts, the anymail hookup."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents.selectors import agent_for_user
from channels_app.email import selectors, services
from channels_app.email.models import ParkedEmail
from conversations.models import Offer
from core.ratelimit import rate_limited

logger = logging.getLogger(__name__)

# The frame runs nothing: no script at all, styles only inline, images only embedded (data:) until the agent asks
# for remote ones. ``sandbox`` in the policy makes the document an opaque origin even if opened outside the iframe.
FRAME_POLICY = (
    "default-src 'none'; img-src data:{remote}; style-src 'unsafe-inline'; font-src data:; "
    "sandbox allow-popups allow-popups-to-escape-sandbox; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)


def _agent_or_403(request: HttpRequest):
    agent = agent_for_user(user=request.user)
    if agent is None:
        raise Http404(_("Only agents can see this page."))
    return agent


@login_required
@require_GET
@xframe_options_sameorigin
def html_frame(request: HttpRequest, message_id: int) -> HttpResponse:
    """The sanitised HTML of one received mail, for the sandboxed iframe of the timeline."""
    meta = selectors.email_meta_for_user(user=request.user, message_id=message_id)
    if meta is None or not meta.html:
        raise Http404(_("No such email."))
    remote = request.GET.get("images") == "1"
    response = render(request, "email/frame.html", {"meta": meta})
    response["Content-Security-Policy"] = FRAME_POLICY.format(remote=" https: http:" if remote else "")
    response["Cache-Control"] = "private, no-store"
    response["Referrer-Policy"] = "no-referrer"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_GET
def composer_fields(request: HttpRequest, conversation_uuid) -> HttpResponse:
    """The email fields of the workspace composer, loaded when the agent first chooses email."""
    from conversations import views as conversation_views

    user, conversation = conversation_views._conversation_or_404(request, conversation_uuid)
    return render(request, "email/composer_fields_loaded.html", {"conversation": conversation, "me": user})


@login_required
@require_POST
def email_end(request: HttpRequest, conversation_uuid) -> HttpResponse:
    """The agent is done with email in this conversation."""
    from conversations import views as conversation_views

    user, conversation = conversation_views._conversation_or_404(request, conversation_uuid)
    services.email_interaction_end(conversation=conversation, agent_user=user)
    conversation.refresh_from_db()
    return conversation_views._page_or_partials(
        request,
        conversation,
        *conversation_views._controls(user, conversation),
        (conversation_views.ACL, conversation_views.acl_context(user=user, selected=conversation.uuid)),
    )


@login_required
@require_POST
def offer_postpone(request: HttpRequest, offer_id: int) -> HttpResponse:
    """An email offer goes into the agent's personal queue instead of being answered now."""
    from conversations import views as conversation_views

    _agent_or_403(request)
    if not Offer.objects.filter(pk=offer_id, agent=request.user).exists():
        raise Http404(_("No such offer."))
    try:
        services.email_offer_postpone(offer_id=offer_id, agent_user=request.user)
        error = ""
    except ValidationError as exc:
        error = " ".join(exc.messages)
    return conversation_views._partials(
        (conversation_views.OFFERS, conversation_views.offers_context(user=request.user, error=error)),
        request=request,
    )


@login_required
@require_GET
def queue_page(request: HttpRequest) -> HttpResponse:
    """The agent's postponed emails and the team's unassigned ones, longest waiting first."""
    agent = _agent_or_403(request)
    context = {
        "parked": selectors.parked_for_agent(agent=request.user),
        "team": selectors.team_email_queue(agent=agent),
    }
    return render(request, "email/queue.html", context)


@login_required
@require_POST
def parked_take(request: HttpRequest, parked_id: int) -> HttpResponse:
    _agent_or_403(request)
    if not ParkedEmail.objects.filter(pk=parked_id, agent=request.user).exists():
        raise Http404(_("No such email in your queue."))
    try:
        interaction = services.email_parked_take(parked_id=parked_id, agent_user=request.user)
    except ValidationError:
        return redirect("email:queue")
    return redirect("conversations:page", conversation_uuid=interaction.conversation.uuid)


@login_required
@require_http_methods(["GET", "POST"])
def signature_page(request: HttpRequest) -> HttpResponse:
    _agent_or_403(request)
    saved = False
    if request.method == "POST":
        services.signature_save(user=request.user, body=request.POST.get("body", ""))
        saved = True
    signature = selectors.signature_for(user=request.user)
    return render(request, "email/signature.html", {"signature": signature, "saved": saved})


# --- the customer's chat: a transcript by email ------------------------------------------------------------------


@csrf_exempt
@require_POST
def transcript_request(request: HttpRequest) -> JsonResponse:
    """The chat page asks for a transcript; authorised by the chat's signed session token, not a cookie."""
    from channels_app.webchat.services import session_from_token
    from channels_app.webchat.views import TOKEN_HEADER, _same_site

    if not _same_site(request):
        return JsonResponse({"error": _("This request is not allowed.")}, status=403)
    session = session_from_token(request.headers.get(TOKEN_HEADER, ""))
    if session is None:
        return JsonResponse({"error": _("Your chat could not be found.")}, status=403)
    try:
        services.transcript_request(session=session, address=request.POST.get("email", ""))
    except ValidationError as exc:
        return JsonResponse({"error": " ".join(exc.messages)}, status=400)
    return JsonResponse({"ok": True, "message": _("The transcript is on its way.")}, status=202)


# --- anymail inbound webhooks --------------------------------------------------------------------------------------


_mailgun_view = None


@csrf_exempt
@rate_limited("webhook", "RATE_LIMIT_WEBHOOK", methods=("POST", "GET"))
def mailgun_inbound(request: HttpRequest) -> HttpResponse:
    """Mailgun's inbound route (forward, raw MIME or parsed); refused outright while no signing key is set.

    An empty key would make every signature computable by anyone, so anymail's
    view is not even reached without one.
    """
    global _mailgun_view
    from anymail.webhooks.mailgun import MailgunInboundWebhookView

    if not settings.ANYMAIL.get("MAILGUN_WEBHOOK_SIGNING_KEY"):
        return HttpResponse(status=404)
    if _mailgun_view is None:
        _mailgun_view = MailgunInboundWebhookView.as_view()
    return _mailgun_view(request)


def anymail_inbound_received(sender, event, esp_name, **kwargs) -> None:
    """anymail's ``inbound`` signal: the webhook view has verified the signature before this runs."""
    raw = event.message.as_bytes() if event.message is not None else b""
    if not raw:
        return
    result = services.email_receive(raw=raw)
    logger.info("inbound email via %s: %s", esp_name, result.outcome)
