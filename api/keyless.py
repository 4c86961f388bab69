"""Without API keys the API serves anything that reaches its port, so a web page in the
operator's browser must not reach it: the checks each request passes then."""

from __future__ import annotations

from aiohttp import web

# Content types a browser cannot send cross-site without asking first (CORS preflight).
KEYLESS_CONTENT_TYPES = frozenset({"application/json", "application/x-ndjson"})
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
# Open and click links and the unsubscribe page are followed from mail clients anywhere
# (one-click unsubscribe posts a form); a signed token is their check.
_UNFENCED_PREFIX = "/t/"


def keyless_refusal(request: web.Request, bound_host: str) -> tuple[int, str] | None:
    """Why a request to the keyless API is refused (status, reason), or None.

    - ``Host`` must name the address the API listens on (127.0.0.1, localhost or
      [::1], or the configured host, with the port the request came in on): a page
      that rebinds its own DNS name to 127.0.0.1 still sends its own name.
    - ``Origin``, when present, must be one of those as an http origin.
    - POST, PUT and PATCH need ``application/json`` or NDJSON: a page can send
      text/plain or a form across sites unasked, never JSON.
    """
    if request.path.startswith(_UNFENCED_PREFIX):
        return None
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    port = sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None
    names = {*_LOOPBACK_NAMES, _bracketed(bound_host)}
    if isinstance(sockname, tuple) and sockname:
        names.add(_bracketed(str(sockname[0])))
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        hosts |= names
    host = request.headers.get("Host", "").lower()
    if host not in hosts:
        return 403, (
            f"Host {host[:100]!r} is not this API's address: without API keys only "
            f"{', '.join(sorted(hosts))} are served"
        )
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower() not in {f"http://{name}" for name in hosts}:
        return 403, (
            f"Origin {origin[:100]!r} is not this API's: without API keys, "
            "cross-site requests are refused"
        )
    if request.method in ("POST", "PUT", "PATCH") and request.content_type not in (
        KEYLESS_CONTENT_TYPES
    ):
        return 415, (
            f"Content-Type {request.content_type!r} is refused without API keys: "
            "send application/json or application/x-ndjson"
        )
    return None


def _bracketed(host: str) -> str:
    host = host.lower()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
