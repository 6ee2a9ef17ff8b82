"""Log-in and log-out with an audit trail: who logged in and out, which user names were tried and
refused, and which were locked after repeated failures (cases.audit.login_guard)."""

from django.contrib.auth.views import LoginView, LogoutView
from django.db import transaction
from django.http import HttpResponse
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response

from cases.audit import login_guard
from cases.audit.trail import audit_record


class AuditedLoginView(LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs) -> HttpResponse:
        username, address = self._attempt()
        refused = login_guard.refusal(username, address)
        if refused:
            # Refused before the password is checked: a locked name cannot be guessed at. The
            # form shown is unbound, so rendering it validates (authenticates) nothing either.
            form = self.get_form_class()(request, initial={"username": username})
            context = self.get_context_data(form=form, locked=refused.message)
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
        refused = login_guard.record_failure(*self._attempt())
        if refused:
            context = self.get_context_data(form=form, locked=refused.message)
            return self.render_to_response(context, status=429)
        return super().form_invalid(form)

    def _attempt(self) -> tuple[str, str]:
        """The canonical user name tried (as authentication matches it) and the client address."""
        username = login_guard.canonical_username(self.request.POST.get("username", ""))
        return username, login_guard.client_address(self.request)


class AuditedLogoutView(LogoutView):
    def post(self, request, *args, **kwargs) -> HttpResponse:
        user = request.user
        with transaction.atomic():
            if user.is_authenticated:
                audit_record(actor=user, action="user.logout", obj=user)
            return super().post(request, *args, **kwargs)


class GuardedObtainAuthToken(ObtainAuthToken):
    """The API's token endpoint, under the same lockout and audit as the log-in page."""

    def post(self, request, *args, **kwargs) -> Response:
        data = request.data if hasattr(request.data, "get") else {}
        username = login_guard.canonical_username(data.get("username", ""))
        address = login_guard.client_address(request)
        refused = login_guard.refusal(username, address)
        if refused:
            return Response({"detail": refused.message}, status=429)
        serializer = self.get_serializer(data=request.data)
        if not serializer.is_valid():
            refused = login_guard.record_failure(username, address)
            if refused:
                return Response({"detail": refused.message}, status=429)
            return Response(serializer.errors, status=400)
        user = serializer.validated_data["user"]
        with transaction.atomic():
            token, _ = Token.objects.get_or_create(user=user)
            audit_record(actor=user, action="user.login", obj=user, after={"via": "api token"})
        return Response({"token": token.key})
