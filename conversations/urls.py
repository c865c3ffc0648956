"""The agent desktop's conversation URLs, mounted under /desktop/."""

from __future__ import annotations

from django.urls import path

from conversations import views

app_name = "conversations"

urlpatterns = [
    path("c/<uuid:conversation_uuid>/", views.conversation_page, name="page"),
    path("c/<uuid:conversation_uuid>/timeline/", views.timeline_earlier, name="timeline"),
    path("c/<uuid:conversation_uuid>/send/", views.message_send, name="send"),
    path("c/<uuid:conversation_uuid>/messages/<int:message_id>/retry/", views.message_retry, name="retry"),
    path("c/<uuid:conversation_uuid>/note/", views.note_create, name="note"),
    path("c/<uuid:conversation_uuid>/attach/", views.attachment_upload, name="attach"),
    path("c/<uuid:conversation_uuid>/end/", views.chat_end_view, name="end"),
    path("c/<uuid:conversation_uuid>/wrapup/", views.wrapup_submit, name="wrapup"),
    path("c/<uuid:conversation_uuid>/transfer/", views.transfer, name="transfer"),
    path("offers/<int:offer_id>/accept/", views.offer_accept, name="offer-accept"),
    path("offers/<int:offer_id>/reject/", views.offer_reject, name="offer-reject"),
    path("history/<uuid:conversation_uuid>/", views.history_page, name="history"),
    path("canned/", views.canned_search, name="canned"),
    path("canned/mine/", views.canned_mine, name="canned-mine"),
    path("canned/mine/<int:response_id>/delete/", views.canned_mine_delete, name="canned-mine-delete"),
    path("attachments/<int:attachment_id>/", views.attachment_download, name="attachment"),
]
