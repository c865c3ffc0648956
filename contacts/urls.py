"""The contacts screens, mounted under /contacts/."""

from __future__ import annotations

from django.urls import path

from contacts import views

app_name = "contacts"

urlpatterns = [
    path("", views.contact_search, name="search"),
    path("new/", views.contact_new, name="new"),
    path("address-check/", views.address_check, name="address-check"),
    path("duplicates/", views.duplicates, name="duplicates"),
    path("merge/<int:target_id>/<int:source_id>/", views.merge, name="merge"),
    path("merges/<int:merge_id>/undo/", views.merge_undo, name="merge-undo"),
    path("<int:contact_id>/", views.contact_page, name="page"),
    path("<int:contact_id>/edit/", views.contact_edit, name="edit"),
    path("<int:contact_id>/points/", views.point_add, name="point-add"),
    path("<int:contact_id>/points/<int:point_id>/remove/", views.point_remove, name="point-remove"),
    path("<int:contact_id>/export/", views.contact_export, name="export"),
    path("<int:contact_id>/erase/", views.contact_erase, name="erase"),
    path("<int:contact_id>/follow-up/", views.follow_up, name="follow-up"),
]
