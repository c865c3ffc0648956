from __future__ import annotations

from django.urls import path

from channels_app.email import views

app_name = "email"

urlpatterns = [
    path("frame/<int:message_id>/", views.html_frame, name="frame"),
    path("c/<uuid:conversation_uuid>/end/", views.email_end, name="end"),
    path("c/<uuid:conversation_uuid>/fields/", views.composer_fields, name="composer-fields"),
    path("offers/<int:offer_id>/postpone/", views.offer_postpone, name="offer-postpone"),
    path("queue/", views.queue_page, name="queue"),
    path("queue/<int:parked_id>/take/", views.parked_take, name="parked-take"),
    path("signature/", views.signature_page, name="signature"),
    path("transcript/", views.transcript_request, name="transcript"),
    # Signature-verified by anymail (MAILGUN_WEBHOOK_SIGNING_KEY) before our signal handler runs.
    path("inbound/mailgun/", views.mailgun_inbound, name="mailgun-inbound"),
]
