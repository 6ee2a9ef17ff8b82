"""setup_platform: roles always; demo site and accounts only with DEBUG; idempotent."""

from io import StringIO

from django.contrib.auth import authenticate
from django.contrib.auth.models import Group, User
from django.core.management import call_command

from cases.models import Site


def run() -> str:
    out = StringIO()
    call_command("setup_platform", stdout=out)
    return out.getvalue()


def test_with_debug_it_creates_a_demo_site_and_accounts_once(db, settings):
    settings.DEBUG = True
    output = run()
    run()  # a second run changes nothing
    assert set(Group.objects.values_list("name", flat=True)) >= {"clinician", "reviewer", "admin"}
    site = Site.objects.get(code="demo-lab")
    assert site.name == "Demo Lab" and Site.objects.count() == 1
    for username in ("clinician", "reviewer", "admin"):
        user = authenticate(username=username, password="malaria-demo")
        assert user is not None and user.groups.filter(name=username).exists()
        assert site.members.filter(pk=user.pk).exists()
    assert User.objects.count() == 3
    assert "malaria-demo" in output and "/login/" in output


def test_a_second_run_keeps_a_changed_demo_password(db, settings):
    settings.DEBUG = True
    run()
    user = User.objects.get(username="clinician")
    user.set_password("changed-by-the-user-1")
    user.save()
    run()
    assert authenticate(username="clinician", password="changed-by-the-user-1") is not None


def test_without_debug_it_creates_only_the_roles(db, settings):
    settings.DEBUG = False
    Group.objects.all().delete()
    output = run()
    assert set(Group.objects.values_list("name", flat=True)) == {"clinician", "reviewer", "admin"}
    assert not User.objects.exists() and not Site.objects.exists()
    assert "malaria-demo" not in output
