"""HTTP side of voice: the ICE servers an agent's browser uses (the sockets hand them out too)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from agents.selectors import agent_for_request
from channels_app.voice import services


@never_cache
@login_required
@require_safe
def ice_servers(request: HttpRequest) -> JsonResponse:
    """``{"iceServers": [...]}`` for ``new RTCPeerConnection(...)``; TURN credentials are short-lived."""
    if agent_for_request(request=request) is None:
        return JsonResponse({"error": "forbidden"}, status=403)
    return JsonResponse({"iceServers": services.ice_servers()})
