"""What a use case can refuse; the HTTP layer turns each into a status and a structured body."""

from __future__ import annotations


class RegistryError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(RegistryError):
    status = 404
    code = "not_found"


class Conflict(RegistryError):
    status = 409
    code = "conflict"


class Forbidden(RegistryError):
    status = 403
    code = "forbidden"


class Unauthenticated(RegistryError):
    status = 401
    code = "unauthenticated"


class Invalid(RegistryError):
    status = 422
    code = "invalid"


class UnknownFlow(RegistryError):
    status = 422
    code = "unknown_flow"


class Unavailable(RegistryError):
    """A service the use case depends on cannot answer now; the client may retry."""

    status = 503
    code = "unavailable"
