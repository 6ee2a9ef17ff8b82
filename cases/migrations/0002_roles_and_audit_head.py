from django.db import migrations

ROLES = ("clinician", "reviewer", "admin")


def create_roles_and_head(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)
    AuditHead = apps.get_model("cases", "AuditHead")
    AuditHead.objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_roles_and_head, migrations.RunPython.noop)]
