"""Who may use the supervisor tools: staff users (supervisors). Agents are never staff."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext as _


def is_supervisor(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def supervisor_required(view):
    """Anonymous users go to the login page; logged-in users who are not supervisors get 403."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_supervisor(request.user):
            raise PermissionDenied(_("This page is for supervisors."))
        return view(request, *args, **kwargs)

    return wrapped
