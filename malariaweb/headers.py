"""Content-Security-Policy on every response (settings.CONTENT_SECURITY_POLICY).

The pages need no inline script or style: every script and stylesheet is a file under static/
(the API docs' Swagger UI too, from drf-spectacular-sidecar), so 'self' is enough, and an
injected <script> or on*= attribute is not run.
"""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.policy = settings.CONTENT_SECURITY_POLICY

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        return response
