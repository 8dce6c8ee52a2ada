"""The small error vocabulary every layer speaks.

Handlers raise these; the runtime decides what happens to the message:

* :class:`InvalidMessage` - the input can never be processed (bad encoding, wrong shape,
  stale). It is recorded (log, metric, dead-letter stream) and acknowledged so it is never
  redelivered; the loop goes on.
* :class:`RetryLater` - a transient failure (a dependency is down). The message is
  negatively acknowledged with a delay and comes back.

API-level errors (:class:`NotFound`, :class:`Conflict`, :class:`AlreadyExists`,
:class:`Invalid`, :class:`Unavailable`) carry what the apiserver needs to answer with a
Kubernetes ``Status`` body.
"""

from __future__ import annotations

from typing import Any


class EdgebusError(Exception):
    """Base of every edgebus error."""


class InvalidMessage(EdgebusError):
    """The message can never be processed; record it and move on."""


class RetryLater(EdgebusError):
    """A transient failure; deliver the message again later."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class ApiError(EdgebusError):
    """An error with a Kubernetes ``Status`` shape."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(ApiError):
    code = 400
    reason = "BadRequest"


class Unauthorized(ApiError):
    """No valid credentials (Kubernetes answers ``Unauthorized`` as the message too)."""

    code = 401
    reason = "Unauthorized"


class Forbidden(ApiError):
    code = 403
    reason = "Forbidden"


class NotFound(ApiError):
    code = 404
    reason = "NotFound"


class AlreadyExists(ApiError):
    code = 409
    reason = "AlreadyExists"


class Conflict(ApiError):
    code = 409
    reason = "Conflict"


class Invalid(ApiError):
    code = 422
    reason = "Invalid"


class TooManyRequests(ApiError):
    """429: e.g. an eviction a PodDisruptionBudget does not allow now (retry later)."""

    code = 429
    reason = "TooManyRequests"


class Unavailable(ApiError):
    code = 503
    reason = "ServiceUnavailable"


class Timeout(ApiError):
    code = 504
    reason = "Timeout"
