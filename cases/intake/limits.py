"""The size rule for upload requests, applied before anything reads the body.

`upload_request_refusal(request)` is the one rule (any endpoint may call it before touching
`request.POST`, `request.FILES` or DRF's `request.data`); `UploadSizeLimitMiddleware` applies it
to every request, ahead of the CSRF middleware (which would otherwise parse a multipart body to
look for its token) and of DRF's authentication. Under WSGI the body cannot outgrow its
Content-Length (Django reads at most that many bytes), so refusing by the header bounds what the
process ever reads; below the limit, files over FILE_UPLOAD_MAX_MEMORY_SIZE are streamed to
temporary files on disk, never held in memory.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

MB = 1024 * 1024


def upload_request_refusal(request: HttpRequest) -> str | None:
    """Why the request's declared body is too large to be read (None: it may be read)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return "the request's Content-Length is not a number"
    limit = settings.UPLOAD_MAX_REQUEST_MB * MB
    if length > limit:
        return (
            f"the upload is {length / MB:,.0f} MB; one request may carry at most "
            f"{settings.UPLOAD_MAX_REQUEST_MB:,} MB (send the files in several batches)"
        )
    return None


def refusal_response(request: HttpRequest, reason: str) -> HttpResponse:
    """413 with the reason: problem details under /api/, JSON for the page's script (which
    reads "error"), plain text otherwise."""
    if request.path.startswith("/api/"):
        body = {"title": "Content Too Large", "status": 413, "detail": reason}
        return JsonResponse(body, status=413, content_type="application/problem+json")
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"error": reason}, status=413)
    return HttpResponse(reason, status=413, content_type="text/plain; charset=utf-8")


class UploadSizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        reason = upload_request_refusal(request)
        if reason is not None:
            return refusal_response(request, reason)
        return self.get_response(request)
