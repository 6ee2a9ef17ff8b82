from django.http import HttpRequest

from cases.access import ADMIN, CLINICIAN, REVIEWER, user_roles


def navigation(request: HttpRequest) -> dict:
    """Role flags for the navigation bar (cases.access decides who holds which role)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    roles = user_roles(user)
    return {
        "is_reviewer": REVIEWER in roles,
        "is_clinician": CLINICIAN in roles,
        "is_lab_admin": ADMIN in roles,
    }
