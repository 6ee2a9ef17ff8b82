"""Log-in with an audit trail: who logged in, and which user names were tried and refused."""

from django.contrib.auth.views import LoginView
from django.db import transaction
from django.http import HttpResponse

from cases.audit import audit_record


class AuditedLoginView(LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form) -> HttpResponse:
        # One transaction: a session is never opened without its audit event.
        with transaction.atomic():
            response = super().form_valid(form)
            user = form.get_user()
            audit_record(actor=user, action="user.login", obj=user)
        return response

    def form_invalid(self, form) -> HttpResponse:
        # Repeated failures for one name are how a password-guessing attempt shows up in the trail.
        username = str(form.data.get("username", ""))[:150]
        with transaction.atomic():
            audit_record(actor=None, action="user.login_failed", after={"username": username})
        return super().form_invalid(form)
