"""Serving errors, with the HTTP status TF Serving's REST API gives for the same gRPC code.

TF Serving answers every error as `{"error": "<message>"}`; INVALID_ARGUMENT and
FAILED_PRECONDITION become HTTP 400, NOT_FOUND 404, anything else 500.
"""

from __future__ import annotations


class ServingError(Exception):
    """An error answered as `{"error": message}` with HTTP `status`."""

    status = 500
    code = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(ServingError):
    """A bad request: malformed JSON, an unknown signature, a wrong dtype or shape (HTTP 400)."""

    status = 400
    code = "INVALID_ARGUMENT"


class NotFound(ServingError):
    """An unknown model, version or servable not (yet) loaded (HTTP 404)."""

    status = 404
    code = "NOT_FOUND"
