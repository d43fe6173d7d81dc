"""HTTP errors of the API and the handlers that turn every error into a JSON answer.

Every error body is ``{"error": {"code": ..., "message": ...}}``; request validation
errors also keep FastAPI's ``detail`` list, whose ``loc`` names the offending field.
Errors of the closed tree (:mod:`core.errors`) map onto status codes here and nowhere
else, so a route simply lets them propagate.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import AutoforgeError, InvalidData, NotFound, PermanentError, TransientError
from db.errors import ConstraintViolation, DatabaseBusy, DatabaseUnavailable
from jobs.outbox import IdempotencyConflict

log = logging.getLogger("autoforge.api")

RETRY_AFTER_S = 5


class ApiError(PermanentError):
    """The request cannot be served."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.headers = headers
        #: Additional members of the error object (e.g. the known job kinds).
        self.extra = extra or {}


class NotAuthenticated(ApiError):
    """Authentication required: send 'Authorization: Bearer <key>'."""

    status_code = 401
    code = "not_authenticated"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    """The API key is not valid."""

    status_code = 403
    code = "forbidden"


class AuthNotConfigured(ApiError):
    """No API keys are configured: set AUTOFORGE_API_KEYS (or run 'autoforge up' locally)."""

    status_code = 503
    code = "auth_not_configured"


class UnknownJobKind(ApiError):
    """There is no such job kind."""

    status_code = 404
    code = "unknown_job_kind"


class JobStateConflict(ApiError):
    """The job is not in a state that allows this action."""

    status_code = 409
    code = "job_state_conflict"


class PayloadTooLarge(ApiError):
    """The request body is too large."""

    status_code = 413
    code = "payload_too_large"


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    detail: Sequence[Any] | None = None,
) -> JSONResponse:
    """The JSON answer for an error, in the API's one error shape."""
    body: dict[str, Any] = {"error": {"code": code, "message": message, **(extra or {})}}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status_code, headers=headers)


# Errors of the closed tree, most specific first: (type, status, code, message or None).
# A None message passes the error's own message on; outages get a generic one, so the
# client never sees paths or server addresses.
_MAPPED: tuple[tuple[type[AutoforgeError], int, str, str | None], ...] = (
    (NotFound, 404, "not_found", None),
    (InvalidData, 422, "invalid_data", None),
    (IdempotencyConflict, 409, "idempotency_conflict", None),
    (ConstraintViolation, 409, "constraint_violation", None),
    (DatabaseBusy, 503, "database_busy", "The database is busy; retry later."),
    (DatabaseUnavailable, 503, "database_unavailable", "The database is unavailable; retry later."),
    (TransientError, 503, "temporarily_unavailable", "Temporarily unavailable; retry later."),
)


def _autoforge_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AutoforgeError)
    if isinstance(exc, ApiError):
        return error_response(
            exc.status_code, exc.code, exc.message, headers=exc.headers, extra=exc.extra
        )
    for error_type, status, code, message in _MAPPED:
        if isinstance(exc, error_type):
            headers = None
            if status == 503:
                headers = {"Retry-After": str(RETRY_AFTER_S)}
                log.warning("%s %s: %s: %s", request.method, request.url.path, code, exc)
            return error_response(status, code, message or exc.message, headers=headers)
    # A bug or a broken deployment (e.g. an unmigrated schema), not client input.
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "Internal server error.")


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    summary = "; ".join(_describe(error) for error in errors)
    return error_response(
        422,
        "validation_error",
        summary or "Invalid request.",
        detail=_json_safe(jsonable_encoder(errors)),
    )


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities (echoed inputs) spelled as strings: JSON has no
    such numbers, and the answer must still render."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf"
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def _describe(error: Any) -> str:
    loc = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "json_invalid":
        # FastAPI puts the character offset in ``loc``; say what it is instead.
        reason = (error.get("ctx") or {}).get("error", "")
        return f"body: invalid JSON at character {loc[-1] if len(loc) > 1 else 0}: {reason}"
    return f"{'.'.join(loc)}: {error.get('msg', 'invalid')}"


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it could not read (bytes that are not UTF-8, JSON
        # nested past Python's recursion limit): a 422, like JSON that does not parse.
        return _unreadable_body(exc.__cause__)
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error_response(
        exc.status_code,
        codes.get(exc.status_code, "http_error"),
        str(exc.detail),
        headers=headers or None,
    )


def _unreadable_body(cause: BaseException | None) -> JSONResponse:
    if isinstance(cause, UnicodeDecodeError):
        reason = "the body is not UTF-8 text"
    elif isinstance(cause, RecursionError):
        reason = "the body is nested too deeply"
    else:
        reason = "the body cannot be read as JSON"
    detail = [{"type": "json_invalid", "loc": ["body"], "msg": reason}]
    return error_response(422, "validation_error", f"body: {reason}", detail=detail)


def _allowed_methods(request: Request) -> str | None:
    """The methods of the documented path that names this URL, as the OpenAPI schema says.

    Starlette's ``Allow`` lists one route's methods only (``POST`` for ``/v1/prompts``,
    which also has ``GET``). As in OpenAPI, a concrete path (``/v1/jobs/canary``) names
    a URL before a templated one (``/v1/jobs/{job_id}``).
    """
    path = request.scope["path"]
    documented: dict[str, Any] = request.app.openapi().get("paths", {})
    matching = [template for template in documented if _path_pattern(template).fullmatch(path)]
    if not matching:
        return None
    most_specific = min(matching, key=lambda template: template.count("{"))
    return ", ".join(
        sorted(method.upper() for method in documented[most_specific] if method in _METHODS)
    )


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


@functools.cache
def _path_pattern(template: str) -> re.Pattern[str]:
    """``/v1/jobs/{job_id}`` as a regular expression: each parameter is one path segment."""
    pieces = re.split(r"(\{[^/{}]+\})", template)
    return re.compile(
        "".join("[^/]+" if piece.startswith("{") else re.escape(piece) for piece in pieces)
    )


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "Internal server error.")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with the API's JSON error shape."""
    app.add_exception_handler(AutoforgeError, _autoforge_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
