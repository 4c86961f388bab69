"""Whether the HTTP API's port is free, checked before anything starts, so a port in
use is one line naming it and its setting instead of a traceback from a running
worker."""

from __future__ import annotations

import errno
import socket


class PortUnavailable(RuntimeError):
    """The port cannot be listened on; the message says why in one line."""


def check_free(host: str, port: int, setting: str) -> None:
    """Bind ``host:port`` as the server will (address reuse on, so a port in TIME_WAIT
    passes as it does for the server) and let go at once. Port 0 is always free."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise PortUnavailable(f"cannot listen on {host}:{port}: {error.strerror}") from None
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise PortUnavailable(
                        f"port {port} ({setting}) is already in use on {host}: "
                        f"stop what listens there, or set {setting} to another port "
                        "(0: any free one)"
                    ) from None
                raise PortUnavailable(
                    f"cannot listen on {host}:{port} ({setting}): {error.strerror}"
                ) from None
