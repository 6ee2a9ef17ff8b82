from django.http import HttpRequest


def navigation(request: HttpRequest) -> dict:
    """Role flags for the navigation bar."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    groups = set(user.groups.values_list("name", flat=True))
    return {
        "is_reviewer": "reviewer" in groups or user.is_superuser,
        "is_clinician": "clinician" in groups or user.is_superuser,
        "is_lab_admin": "admin" in groups or user.is_superuser,
    }
