from __future__ import annotations

from django.db import migrations


def create_system_reasons(apps, schema_editor):
    NotReadyReason = apps.get_model("agents", "NotReadyReason")
    # Routing sets this reason when an offer goes unanswered (DOMAIN.md: "missed").
    NotReadyReason.objects.update_or_create(
        code="missed", defaults={"name": "Missed offer", "is_system": True, "is_active": True, "position": 999}
    )


class Migration(migrations.Migration):
    dependencies = [("agents", "0001_initial")]

    operations = [migrations.RunPython(create_system_reasons, migrations.RunPython.noop)]
