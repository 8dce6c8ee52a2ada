"""Bus errors, catchable by role (see :mod:`edgebus.errors`) or by subsystem."""

from __future__ import annotations

from edgebus.errors import EdgebusError, RetryLater


class BusError(EdgebusError):
    """Anything that went wrong talking to NATS."""


class NotConnected(BusError, RetryLater):
    """No connection to the server right now (reconnecting)."""

    def __init__(self, message: str = "not connected to NATS") -> None:
        RetryLater.__init__(self, message, delay=0.5)


class RequestTimeout(BusError, RetryLater):
    """A request or publish got no answer in time."""

    def __init__(self, message: str) -> None:
        RetryLater.__init__(self, message, delay=0.5)


class NoResponders(BusError, RetryLater):
    """Nobody listens on the subject (for a node: its link is down)."""

    def __init__(self, message: str) -> None:
        RetryLater.__init__(self, message, delay=0.5)


class StreamNotFound(BusError):
    """The stream or consumer does not exist (yet)."""


class WrongRevision(BusError):
    """A compare-and-set write found another revision than expected."""

    def __init__(self, message: str, *, current: int | None = None) -> None:
        super().__init__(message)
        self.current = current


class RemoteError(BusError):
    """The responder answered a request with an error."""

    def __init__(self, message: str, *, code: int = 500, reason: str = "InternalError") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class Rejected(BusError):
    """JetStream refused a publish (a stream setting, a duplicate in a batch, ...); ``code``
    is the server's error code (e.g. 10174: atomic publishes disabled on the stream)."""

    def __init__(self, message: str, *, code: int = 0) -> None:
        super().__init__(message)
        self.code = code
