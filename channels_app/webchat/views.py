"""The customer's side of web chat over HTTP: the chat page, the embed script, files.

The customer is anonymous. The chat page and the embed script are public;
file uploads carry the signed session token in a header (not ambient
authority, so no CSRF token is needed) and downloads use short-lived signed
links bound to one session.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.request import validate_host
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from channels_app.webchat import selectors, services
from conversations.models import PRECHAT_FIELDS, Direction, Message, Service
from core.middleware import APP_POLICY
from core.ratelimit import rate_limited

TOKEN_HEADER = "X-Parley-Chat-Token"  # noqa: S105 (a header name)
EMBED_SCRIPT = Path(__file__).resolve().parent / "static" / "webchat" / "embed.js"
# An origin a website may embed the chat from: scheme, host (optionally "*." for subdomains), port.
ORIGIN_RE = re.compile(r"^https?://(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?$")
DOWNLOAD_POLICY = "default-src 'none'; sandbox"

FIELD_LABELS = {
    "name": gettext_lazy("Your name"),
    "email": gettext_lazy("Email address"),
    "phone": gettext_lazy("Phone number"),
    "question": gettext_lazy("How can we help?"),
}
FIELD_INPUTS = {
    "name": {"type": "text", "autocomplete": "name", "maxlength": 150},
    "email": {"type": "email", "autocomplete": "email", "maxlength": 254},
    "phone": {"type": "tel", "autocomplete": "tel", "maxlength": 40},
    "question": {"type": "textarea", "autocomplete": "off", "maxlength": None},
}


def _service_or_404(slug: str) -> Service:
    service = selectors.service_for_chat(slug=slug)
    if service is None:
        raise Http404(_("Chat is not available for this service."))
    return service


def frame_ancestors(service: Service) -> str:
    """'self' plus the service's well-formed allowed origins (anything else could break out of the header)."""
    origins = [
        origin.rstrip("/")
        for origin in (service.chat_allowed_origins or [])
        if isinstance(origin, str) and ORIGIN_RE.match(origin.rstrip("/"))
    ]
    return " ".join(["'self'", *dict.fromkeys(origins)])


def _page_policy(service: Service) -> str:
    return APP_POLICY.replace("frame-ancestors 'none'", f"frame-ancestors {frame_ancestors(service)}")


def _prechat_fields(service: Service) -> list[dict]:
    modes = {**dict.fromkeys(PRECHAT_FIELDS, "off"), **(service.prechat_fields or {})}
    return [
        {"name": name, "mode": modes[name], "label": FIELD_LABELS[name], **FIELD_INPUTS[name]}
        for name in PRECHAT_FIELDS
        if modes[name] in ("required", "optional")
    ]


def _chat_strings() -> dict[str, str]:
    """Every string the chat page's script shows, in the page's language."""
    return {
        "queued": _("Waiting for an agent…"),
        "queuedPosition": _("Waiting for an agent… You are number %(position)s in the queue."),
        "offered": _("Connecting you to an agent…"),
        "active": _("You are chatting with %(agent)s."),
        "activeNoName": _("You are chatting with an agent."),
        "ended": _("The chat has ended."),
        "typing": _("The agent is typing…"),
        "inactivity": _("You have been inactive. The chat ends in %(time)s unless you write."),
        "you": _("You"),
        "agent": _("Agent"),
        "delivered": _("Delivered"),
        "read": _("Read"),
        "newMessage": _("New message: %(text)s"),
        "connecting": _("Connecting…"),
        "offline": _("Connection lost. Reconnecting…"),
        "uploading": _("Sending %(name)s…"),
        "uploadFailed": _("The file could not be sent."),
        "fileTooLarge": _("The file is too large (at most %(mb)s MB).")
        % {"mb": settings.CHAT_MAX_ATTACHMENT_BYTES // (1024 * 1024)},
        "fileType": _("This kind of file cannot be sent. Images, PDF and text files can."),
        "tooLong": _("The message is too long (at most %(limit)s characters).")
        % {"limit": settings.CHAT_MAX_MESSAGE_CHARS},
        "required": _("This field is required."),
        "sessionLost": _("Your chat could not be found. Please start a new one."),
        "error": _("Something went wrong. Please try again."),
    }


@xframe_options_exempt
@require_safe
@rate_limited("chat-page", "RATE_LIMIT_CHAT_PAGE", methods=("GET", "HEAD"))
def chat_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The customer's chat: pre-chat form, then the conversation. Embeddable by the service's websites."""
    service = _service_or_404(slug)
    language = _page_language(request)
    with translation.override(language):
        config = {
            "service": service.slug,
            "wsPath": "/ws/chat/",
            "uploadUrl": reverse("webchat:attachment-upload"),
            "lang": language,
            "maxChars": settings.CHAT_MAX_MESSAGE_CHARS,
            "maxBytes": settings.CHAT_MAX_ATTACHMENT_BYTES,
            "fileTypes": sorted(services.ALLOWED_ATTACHMENT_TYPES),
            "embed": request.GET.get("embed") == "1",
            "strings": _chat_strings(),
        }
        response = render(
            request,
            "webchat/page.html",
            {
                "service": service,
                "fields": _prechat_fields(service),
                "config": config,
                "embed": config["embed"],
                "language": language,
                "file_accept": ",".join(config["fileTypes"]),
            },
        )
    response["Content-Security-Policy"] = _page_policy(service)
    response["Content-Language"] = language
    return response


def _page_language(request: HttpRequest) -> str:
    """``?lang=`` (the embedding website's language) when supported, else what LocaleMiddleware chose."""
    requested = request.GET.get("lang", "")
    if requested and len(requested) <= 20:
        try:
            return translation.get_supported_language_variant(requested)
        except LookupError:
            pass
    return translation.get_language() or settings.LANGUAGE_CODE


@lru_cache(maxsize=1)
def _embed_source() -> str:
    return EMBED_SCRIPT.read_text(encoding="utf-8")


def _js_literal(value) -> str:
    """JSON that is also safe inside any JavaScript or HTML context."""
    return (
        json.dumps(value)
        .replace("<", "\\u003C")
        .replace(">", "\\u003E")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


@require_safe
def embed_script(request: HttpRequest, slug: str) -> HttpResponse:
    """The one-tag snippet: a launcher button that opens the chat page in a frame."""
    service = _service_or_404(slug)
    page_url = request.build_absolute_uri(reverse("webchat:page", args=[service.slug]))
    config = {
        "frameUrl": f"{page_url}?{urlencode({'embed': '1'})}",
        "origin": f"{request.scheme}://{request.get_host()}",
        "service": service.slug,
        "title": _("Chat with %(service)s") % {"service": service.name},
        "open": _("Chat with us"),
        "close": _("Close the chat"),
    }
    source = _embed_source().replace("__PARLEY_CHAT_CONFIG__", _js_literal(config))
    response = HttpResponse(source, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    # Loaded by <script> tags on other websites.
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


@require_safe
def demo_page(request: HttpRequest, slug: str) -> HttpResponse:
    """A tiny stand-in for a customer's website that includes the embed snippet."""
    service = _service_or_404(slug)
    return render(request, "webchat/demo.html", {"service": service})


# --- attachments ------------------------------------------------------------------------------------------------


def _json_error(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _same_site(request: HttpRequest) -> bool:
    """The request comes from a page of ours (Origin, else Referer, names an allowed host)."""
    source = request.headers.get("Origin") or request.headers.get("Referer") or ""
    if not source or source == "null":
        return False
    host = urlsplit(source).hostname or ""
    return bool(host) and validate_host(host, settings.ALLOWED_HOSTS)


@csrf_exempt
@require_POST
def attachment_upload(request: HttpRequest) -> JsonResponse:
    """The customer sends a file into their chat (multipart field "file", token in a header)."""
    if not _same_site(request):
        return _json_error(_("This request is not allowed."), status=403)
    session = services.session_from_token(request.headers.get(TOKEN_HEADER, ""))
    if session is None:
        return _json_error(_("Your chat could not be found. Please start a new one."), status=403)
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    # Refused before reading the body: multipart overhead is small next to the file itself.
    if declared > settings.CHAT_MAX_ATTACHMENT_BYTES + 64 * 1024:
        return _json_error(
            _("The file is too large (at most %(mb)s MB).")
            % {"mb": settings.CHAT_MAX_ATTACHMENT_BYTES // (1024 * 1024)},
            status=413,
        )
    upload = request.FILES.get("file")
    if upload is None:
        return _json_error(_("Choose a file to send."))
    try:
        message = services.chat_attachment_send(
            interaction=session.interaction,
            upload=upload,
            direction=Direction.INBOUND,
            author_kind=Message.Author.CUSTOMER,
        )
    except ValidationError as exc:
        return _json_error(" ".join(exc.messages))
    return JsonResponse({"entry_id": message.entry.pk}, status=201)


@require_safe
def attachment_download(request: HttpRequest, signed: str) -> FileResponse:
    """A file of the customer's chat, by a link the chat socket handed out."""
    attachment = selectors.attachment_for_url_token(signed)
    if attachment is None:
        raise Http404(_("This link is invalid or has expired."))
    inline = attachment.content_type.startswith("image/")
    response = FileResponse(
        attachment.file.open("rb"),
        as_attachment=not inline,
        filename=attachment.filename,
        content_type=attachment.content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = DOWNLOAD_POLICY
    response["Cache-Control"] = "private, max-age=3600"
    response["Referrer-Policy"] = "no-referrer"
    return response
