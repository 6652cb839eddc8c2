"""What can go wrong between the edge and the local server, as exceptions."""

from __future__ import annotations

from tunnels.messages import ErrorKind, StreamError


class TunnelError(Exception):
    """Base of everything that can go wrong between the view and the local server.

    TunnelError
     +-- TunnelNotFound     no live tunnel for the subdomain               -> 502
     +-- TunnelBusy         the tunnel's queue is full                     -> 503
     +-- Unavailable        Redis (registry or channel layer) unreachable  -> 503
     +-- TunnelTimeout      no response head in time                       -> 504
     +-- LocalServerError   the client could not complete it with the app  -> 502
     |    +-- LocalServerRefused  nothing answered at the local address    -> 502
     +-- InvalidResponse    the answer breaks the protocol or HTTP framing -> 502
     +-- TunnelClosed       the tunnel (or its server process) went away   -> 502
          +-- BodyLost      body bytes were lost between server processes  -> 502

    After the response has started, any of them resets the public connection.
    """

    kind = ErrorKind.TUNNEL_CLOSED


class TunnelNotFound(TunnelError):
    pass


class TunnelBusy(TunnelError):
    kind = ErrorKind.BUSY


class Unavailable(TunnelError):
    kind = ErrorKind.UNAVAILABLE


class TunnelTimeout(TunnelError):
    pass


class LocalServerError(TunnelError):
    kind = ErrorKind.LOCAL


class LocalServerRefused(LocalServerError):
    kind = ErrorKind.LOCAL_REFUSED


class InvalidResponse(TunnelError):
    kind = ErrorKind.INVALID


class TunnelClosed(TunnelError):
    pass


class BodyLost(TunnelClosed):
    kind = ErrorKind.LOST


_ERROR_FOR_KIND: dict[ErrorKind, type[TunnelError]] = {
    ErrorKind.LOCAL: LocalServerError,
    ErrorKind.LOCAL_REFUSED: LocalServerRefused,
    ErrorKind.TUNNEL_CLOSED: TunnelClosed,
    ErrorKind.BUSY: TunnelBusy,
    ErrorKind.LOST: BodyLost,
    ErrorKind.INVALID: InvalidResponse,
    ErrorKind.UNAVAILABLE: Unavailable,
}


def error_for(message: StreamError) -> TunnelError:
    """The exception a failed stream raises at the view."""
    return _ERROR_FOR_KIND[message.kind](message.message)
