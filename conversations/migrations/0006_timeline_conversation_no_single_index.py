"""Timeline entries: no index on conversation_id alone (conversations.models explains why).

Dropped by name rather than through AlterField, which on SQLite would copy the whole timeline table.
"""

import django.db.models.deletion
from django.db import migrations, models

FK_INDEX = "conversations_timelineentry_conversation_id_742ab2f7"


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0005_service_supervision"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {FK_INDEX}",
                    f'CREATE INDEX {FK_INDEX} ON "conversations_timelineentry" ("conversation_id")',
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="timelineentry",
                    name="conversation",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="timeline",
                        to="conversations.conversation",
                        verbose_name="conversation",
                    ),
                ),
            ],
        ),
    ]
