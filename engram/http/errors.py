"""Failures as OpenAI-style error objects: `{"error": {"message", "type", "code"}}`, with the
HTTP status a gRPC status stands for. No stack trace ever reaches a client."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from engram.gateway.errors import GatewayError, from_temporal

log = logging.getLogger(__name__)

# gRPC status -> (HTTP status, OpenAI error type).
STATUSES: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "conflict_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "conflict_error"),
    grpc.StatusCode.ABORTED: (409, "conflict_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "server_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "server_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "server_error"),
}


class ApiError(Exception):
    """A request refused with an HTTP status and an OpenAI-style error object."""

    def __init__(self, status: int, message: str, kind: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "code": self.code}}

    def response(self) -> JSONResponse:
        # OpenAI's clients retry 409 and 5xx by default; a retried chat would be a second turn,
        # so only what a retry can cure (a rate limit, Temporal away) is marked retryable.
        retry = self.status in (429, 503)
        headers = {"x-should-retry": "true" if retry else "false"}
        if self.status == 429:
            headers["Retry-After"] = "1"
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def invalid(message: str, code: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", code)


def too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"the request body is over {limit} bytes", "invalid_request_error", "body_too_large"
    )


def from_status(code: grpc.StatusCode, message: str) -> ApiError:
    status, kind = STATUSES.get(code, (500, "server_error"))
    return ApiError(status, message, kind, code.name.lower())


def from_exception(err: BaseException) -> ApiError:
    """Any failure of a call into the gateway, as the gRPC API would have reported it."""
    if isinstance(err, ApiError):
        return err
    failure = err if isinstance(err, GatewayError) else from_temporal(err, "")
    if failure.code == grpc.StatusCode.INTERNAL:
        log.error("HTTP request failed", exc_info=err)
    return from_status(failure.code, failure.message)


def install(app: Any) -> None:
    """Answer every failure (FastAPI's own included) with an error object."""

    async def api_error(request: Request, err: Exception) -> Response:
        return from_exception(err).response()

    async def malformed(request: Request, err: Exception) -> Response:
        assert isinstance(err, RequestValidationError)
        return invalid(_describe(err)).response()

    async def http_error(request: Request, err: Exception) -> Response:
        assert isinstance(err, HTTPException)
        kind = "not_found_error" if err.status_code == 404 else "invalid_request_error"
        code = "body_too_large" if err.status_code == 413 else None
        return ApiError(err.status_code, str(err.detail), kind, code).response()

    app.add_exception_handler(RequestValidationError, malformed)
    app.add_exception_handler(HTTPException, http_error)
    # By class, so these are answered where they are raised; `Exception` is the last resort.
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(GatewayError, api_error)
    app.add_exception_handler(Exception, api_error)


def _describe(err: RequestValidationError) -> str:
    """FastAPI's validation errors as one line a person can act on."""
    parts = []
    for problem in err.errors()[:5]:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
        what = problem.get("msg", "invalid")
        if problem.get("type") == "json_invalid":
            return "the request body is not valid JSON"
        if tuple(problem.get("loc", ())) == ("body",):
            return "the request body must be a JSON object"
        parts.append(f"{where}: {what}" if where else what)
    return "; ".join(parts) or "invalid request"
