"""Roles and site membership: the one place that says who belongs where and may do what.

Site scoping (which objects a user may see at all) answers 404: the site-scoped selectors
(cases.intake.selectors) build on `user_sites`. Roles decide what a user may do with what they
can see, and answer 403. A superuser holds every role and belongs to every site.
"""

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet

from cases.models import Site

CLINICIAN, REVIEWER, ADMIN = "clinician", "reviewer", "admin"
ROLES = (CLINICIAN, REVIEWER, ADMIN)
# Who may create patients and cases and upload images. Reviewers read (and review elsewhere).
WRITER_ROLES = (CLINICIAN, ADMIN)


def user_roles(user: AbstractBaseUser) -> set[str]:
    """The roles the user holds (every role for a superuser, none when logged out)."""
    if not user.is_authenticated:
        return set()
    if user.is_superuser:
        return set(ROLES)
    return set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))


def user_has_role(user: AbstractBaseUser, role: str) -> bool:
    if not user.is_authenticated:
        return False
    return user.is_superuser or user.groups.filter(name=role).exists()


def is_reviewer(user: AbstractBaseUser) -> bool:
    return user_has_role(user, REVIEWER)


def is_admin(user: AbstractBaseUser) -> bool:
    """A lab admin (the `admin` role), not Django's staff flag."""
    return user_has_role(user, ADMIN)


def can_write(user: AbstractBaseUser) -> bool:
    if not user.is_authenticated:
        return False
    return user.is_superuser or user.groups.filter(name__in=WRITER_ROLES).exists()


def require_writer(user: AbstractBaseUser) -> None:
    if not can_write(user):
        raise PermissionDenied("Only clinicians and lab admins can create or upload.")


def user_sites(user: AbstractBaseUser) -> QuerySet[Site]:
    if not user.is_authenticated:
        return Site.objects.none()
    if user.is_superuser:
        return Site.objects.all()
    return Site.objects.filter(members=user)


def require_site_member(user: AbstractBaseUser, site: Site) -> None:
    if not (user.is_superuser or site.members.filter(pk=user.pk).exists()):
        raise PermissionDenied("You are not a member of this site.")
