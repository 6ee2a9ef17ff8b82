from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0006_domain_guard"),
    ]

    operations = [
        migrations.AddField(
            model_name="image",
            name="enqueued_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="image",
            name="claimed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="image",
            name="attempts",
            field=models.PositiveSmallIntegerField(default=0),
        ),
    ]
