"""Index merged_into for merged contacts only (contacts.models explains why).

The column's own index is dropped by name rather than through AlterField: on SQLite AlterField rebuilds
contacts_contact, and the rebuild fails while the contact point triggers of the search index name the
table (contacts.search_index); dropping an index needs no rebuild on either database.
"""

import django.db.models.deletion
from django.db import migrations, models

FK_INDEX = "contacts_contact_merged_into_id_940ac4a0"


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0003_contact_search_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {FK_INDEX}",
                    f'CREATE INDEX {FK_INDEX} ON "contacts_contact" ("merged_into_id")',
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="contact",
                    name="merged_into",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="merged_contacts",
                        to="contacts.contact",
                        verbose_name="merged into",
                    ),
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="contact",
            index=models.Index(
                condition=models.Q(("merged_into__isnull", False)),
                fields=["merged_into"],
                name="contact_merged_into_idx",
            ),
        ),
    ]
