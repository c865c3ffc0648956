"""Timeline entries say whether they count as unread for the agent (a customer's chat message).

The Active Conversations List counts them after the agent's read marker from the entries alone, instead of
joining each unread entry to its message. Existing entries are marked from their messages.
"""

from django.db import migrations, models


def mark_customer_chat_messages(apps, schema_editor):
    TimelineEntry = apps.get_model("conversations", "TimelineEntry")
    TimelineEntry.objects.filter(kind="message", message__author_kind="customer", message__medium="chat").update(
        unread_for_agent=True
    )


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0006_timeline_conversation_no_single_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="timelineentry",
            name="unread_for_agent",
            field=models.BooleanField(default=False, editable=False, verbose_name="counts as unread for the agent"),
        ),
        migrations.RunPython(mark_customer_chat_messages, migrations.RunPython.noop),
    ]
