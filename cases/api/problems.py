"""One error shape for the whole API: RFC 9457 problem details (application/problem+json).

    {"type": "urn:malaria:problem:conflict", "title": "Conflict", "status": 409,
     "detail": "A signed-off case is locked; reopen it before adding images.",
     "errors": {"field": ["message", ...]}}        # per-field errors: 400 only

Services raise Django's ValidationError and PermissionDenied; this module decides their HTTP
status once, so no view re-decides it: a ValidationError naming fields is a bad request (400), a
ValidationError about the object's state (locked, not claimed, claimed by someone else, still
analysing) is a conflict (409), PermissionDenied is 403 and Http404 is 404. A request body over
the upload limits is 413; throttling is 429 with Retry-After; a missing or wrong credential is
401 with WWW-Authenticate.
"""

from http import HTTPStatus

from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:malaria:problem:"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the object."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than this server accepts."
    default_code = "payload_too_large"


def problem(
    status_code: int, detail: str, *, code: str | None = None, errors=None, **extra
) -> dict:
    """A problem-details body. `extra` members (e.g. an upload's per-file outcome) are allowed by
    RFC 9457 as extension members."""
    phrase = HTTPStatus(status_code).phrase
    body = {
        "type": TYPE_PREFIX + (code or phrase.lower().replace(" ", "_").replace("-", "_")),
        "title": phrase,
        "status": status_code,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    return body


def problem_response(status_code: int, detail: str, **kwargs) -> Response:
    return Response(
        problem(status_code, detail, **kwargs),
        status=status_code,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def _from_django(exc: Exception) -> Exception:
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return exceptions.ValidationError(exc.message_dict)
        return Conflict(" ".join(exc.messages))
    if isinstance(exc, RequestDataTooBig | TooManyFilesSent | TooManyFieldsSent):
        return PayloadTooLarge(str(exc) or PayloadTooLarge.default_detail)
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or exceptions.NotFound.default_detail)
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied(str(exc) or exceptions.PermissionDenied.default_detail)
    return exc


def _first_message(errors) -> str:
    if isinstance(errors, dict):
        for value in errors.values():
            return _first_message(value)
    if isinstance(errors, list) and errors:
        return _first_message(errors[0])
    return str(errors)


def _field_errors(data) -> dict:
    if isinstance(data, dict):
        return {str(k): v if isinstance(v, list | dict) else [str(v)] for k, v in data.items()}
    return {"non_field_errors": data if isinstance(data, list) else [str(data)]}


def problem_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error the API raises leaves as problem details."""
    exc = _from_django(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None  # a programming error: Django's handler500 (malariaweb.urls) answers it
    if isinstance(exc, exceptions.ValidationError):
        errors = _field_errors(response.data)
        body = problem(
            response.status_code,
            _first_message(errors),
            code="validation_error",
            errors=errors,
        )
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
        code = getattr(getattr(exc, "detail", None), "code", None)
        body = problem(response.status_code, str(detail), code=code)
    response.data = body
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def json_problem(request: HttpRequest, status_code: int, detail: str) -> JsonResponse:
    """A problem answer outside DRF (unknown API URL, unhandled error)."""
    return JsonResponse(
        problem(status_code, detail), status=status_code, content_type=PROBLEM_CONTENT_TYPE
    )
