"""Prepare a fresh installation: roles always; a demo site and demo accounts only when DEBUG."""

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from django.db import transaction

from cases.access import ROLES
from cases.models import Site

# Documented in README for the embedded development default only; never created without DEBUG.
DEMO_PASSWORD = "malaria-demo"
DEMO_SITE = ("Demo Lab", "demo-lab")
DEMO_USERS = (("clinician", "clinician"), ("reviewer", "reviewer"), ("admin", "admin"))


class Command(BaseCommand):
    help = "Create the roles (always) and, when DEBUG is on, a demo site with demo accounts."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        for role in ROLES:
            Group.objects.get_or_create(name=role)
        self.stdout.write(f"Roles ready: {', '.join(ROLES)}.")
        if not settings.DEBUG:
            self.stdout.write(
                "DEBUG is off: no demo data created. Create sites and users in /admin/ "
                "(python manage.py createsuperuser first)."
            )
            return
        self._demo()

    def _demo(self) -> None:
        name, code = DEMO_SITE
        site, _ = Site.objects.get_or_create(code=code, defaults={"name": name})
        for username, role in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                # Set once: a password changed after setup is not reset by a second run.
                user.set_password(DEMO_PASSWORD)
            user.is_staff = user.is_superuser = role == "admin"
            user.save()
            user.groups.add(Group.objects.get(name=role))
            site.members.add(user)
        self.stdout.write(
            self.style.WARNING("DEBUG is on: demo site and accounts (never in production).")
        )
        self.stdout.write(f"Site: {site.name}")
        for username, role in DEMO_USERS:
            self.stdout.write(f"  {username:<10} role {role:<10} password {DEMO_PASSWORD}")
        self.stdout.write("Log in at http://127.0.0.1:8000/login/ (python manage.py runserver).")
