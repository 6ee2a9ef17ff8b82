import django.db.models
from django.db import migrations

import cases.validators


class Migration(migrations.Migration):
    """Patient identifiers: no line breaks or other control characters (validation only)."""

    dependencies = [("cases", "0009_sign_offs")]

    operations = [
        migrations.AlterField(
            model_name="patient",
            name="identifier",
            field=django.db.models.CharField(
                help_text="The lab's patient identifier.",
                max_length=64,
                validators=[cases.validators.validate_single_line],
            ),
        ),
    ]
