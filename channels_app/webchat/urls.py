from __future__ import annotations

from django.urls import path

from channels_app.webchat import views

app_name = "webchat"
urlpatterns = [
    path("api/attachments/", views.attachment_upload, name="attachment-upload"),
    path("api/attachments/<str:signed>/", views.attachment_download, name="attachment-download"),
    path("<slug:slug>/", views.chat_page, name="page"),
    path("<slug:slug>/embed.js", views.embed_script, name="embed"),
    path("<slug:slug>/demo/", views.demo_page, name="demo"),
]
