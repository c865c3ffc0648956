"""The substring index for contact search: see contacts/search_index.py."""

from __future__ import annotations

from django.db import migrations

from contacts import search_index


def forward(apps, schema_editor):
    search_index.install(schema_editor.connection)


def backward(apps, schema_editor):
    search_index.uninstall(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("contacts", "0002_merge_erase_tags")]

    operations = [migrations.RunPython(forward, backward)]
