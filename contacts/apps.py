from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _search_index_ensure(sender, using, **kwargs) -> None:
    """Re-create the contact search index's triggers after any migration (SQLite drops them when it
    rebuilds a table) and refill the index (a flush truncates tables without firing triggers)."""
    from django.db import connections
    from django.db.migrations.recorder import MigrationRecorder

    from contacts import search_index

    connection = connections[using]
    if not search_index.supported(connection):
        return
    applied = MigrationRecorder(connection).applied_migrations()
    if ("contacts", "0003_contact_search_index") in applied:
        search_index.install(connection)


class ContactsConfig(AppConfig):
    name = "contacts"
    verbose_name = _("Contacts")

    def ready(self) -> None:
        post_migrate.connect(_search_index_ensure, sender=self, dispatch_uid="contacts-search-index")
