"""A request that finds the database unreachable gets a clear 503, not a server error."""

from __future__ import annotations

from django.db import OperationalError
from django.test import RequestFactory

from core.middleware import DatabaseUnavailableMiddleware


def _middleware():
    return DatabaseUnavailableMiddleware(lambda request: None)


def test_database_errors_answer_503_with_a_message_and_retry_after():
    request = RequestFactory().post("/desktop/c/x/send/")
    request.htmx = False
    response = _middleware().process_exception(request, OperationalError("connection refused"))
    assert response.status_code == 503
    assert response["Retry-After"] == "10"
    assert "cannot reach its database" in response.content.decode()
    assert "Nothing was saved" in response.content.decode()


def test_htmx_requests_get_the_message_as_text():
    request = RequestFactory().post("/desktop/c/x/send/")
    request.htmx = True
    response = _middleware().process_exception(request, OperationalError("connection refused"))
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/plain")


def test_other_errors_are_left_to_django():
    request = RequestFactory().get("/")
    assert _middleware().process_exception(request, ValueError("bug")) is None
