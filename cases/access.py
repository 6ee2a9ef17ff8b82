"""Role rules for the web layer and the API.

Site scoping (which objects a user may see at all) lives in cases.intake.selectors and answers 404.
Roles decide what a user may do with what they can see, and answer 403.
"""

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied

CLINICIAN, REVIEWER, ADMIN = "clinician", "reviewer", "admin"
ROLES = (CLINICIAN, REVIEWER, ADMIN)
# Who may create patients and cases and upload images. Reviewers read (and review elsewhere).
WRITER_ROLES = (CLINICIAN, ADMIN)


def can_write(user: AbstractBaseUser) -> bool:
    if not user.is_authenticated:
        return False
    return user.is_superuser or user.groups.filter(name__in=WRITER_ROLES).exists()


def require_writer(user: AbstractBaseUser) -> None:
    if not can_write(user):
        raise PermissionDenied("Only clinicians and lab admins can create or upload.")
