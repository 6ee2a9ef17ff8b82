"""Log-in and log-out with an audit trail: who logged in and out, which user names were tried and
refused, and which were locked after repeated failures (cases.login_guard)."""

from django.contrib.auth.views import LoginView, LogoutView
from django.db import transaction
from django.http import HttpResponse

from cases import login_guard
from cases.audit import audit_record


class AuditedLoginView(LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs) -> HttpResponse:
        minutes = login_guard.minutes_locked(self._username())
        if minutes:
            # Refused before the password is checked: a locked name cannot be guessed at.
            context = self.get_context_data(locked=login_guard.locked_message(minutes))
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form) -> HttpResponse:
        # One transaction: a session is never opened without its audit event.
        with transaction.atomic():
            response = super().form_valid(form)
            user = form.get_user()
            audit_record(actor=user, action="user.login", obj=user)
        return response

    def form_invalid(self, form) -> HttpResponse:
        # Repeated failures for one name are how a password-guessing attempt shows up in the trail.
        username = self._username()
        with transaction.atomic():
            audit_record(actor=None, action="user.login_failed", after={"username": username})
        minutes = login_guard.minutes_locked(username)
        if minutes:
            with transaction.atomic():
                audit_record(actor=None, action="user.login_locked", after={"username": username})
            context = self.get_context_data(form=form, locked=login_guard.locked_message(minutes))
            return self.render_to_response(context, status=429)
        return super().form_invalid(form)

    def _username(self) -> str:
        return str(self.request.POST.get("username", ""))[:150]


class AuditedLogoutView(LogoutView):
    def post(self, request, *args, **kwargs) -> HttpResponse:
        user = request.user
        with transaction.atomic():
            if user.is_authenticated:
                audit_record(actor=user, action="user.logout", obj=user)
            return super().post(request, *args, **kwargs)
